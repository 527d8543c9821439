"""Scheduled jobs of reps: forget expired Idempotency-Keys of `POST /v1/reps:batch`."""

from leadrelay import idempotency_keys
from leadrelay.runtime import ServiceRuntime
from router.config import RouterSettings


async def prune_idempotency_keys(runtime: ServiceRuntime[RouterSettings]) -> None:
    """Forget Idempotency-Key records older than 24 hours, once an hour."""
    await idempotency_keys.prune_periodically(runtime.sessions)
