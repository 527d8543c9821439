"""SLA deliveries: a heads-up on sla.warning, and the remind and notify_manager steps of a breach's escalation.

Each is a Delivery of its own kind, sent by the same job with the same retries as an assignment's
notification. Its `webhook_id` is stable per (assignment, obligation, kind, channel), and a row
with a taken `webhook_id` is not inserted again: a redelivered event sends nothing twice. A warning
or breach of an assignment that is no longer the lead's current one sends nothing (the caller
checks, once, before the ladder's first step).
"""

import hashlib
import logging
import re
from collections.abc import Sequence
from datetime import UTC
from typing import Any

from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.db import upsert_insert
from leadrelay.events import SlaBreached, SlaEventData, SlaWarning, utcnow
from router.assignments import service as assignments
from router.assignments.models import Assignment
from router.notifications import service
from router.notifications.models import Delivery, DeliveryKind, DeliveryStatus
from router.reps.models import Rep
from router.teams.models import Team

logger = logging.getLogger(__name__)

PAYLOAD_TYPES = {
    DeliveryKind.WARNING: "sla.warning",
    DeliveryKind.REMINDER: "sla.reminder",
    DeliveryKind.ESCALATION: "sla.escalation",
}
SLA_PAYLOAD_TYPES = frozenset(PAYLOAD_TYPES.values())
NO_CHANNEL = -1
"""The `channel_index` of a skipped delivery: there was no channel to send it to."""
_READABLE_OBLIGATION = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


def webhook_id(assignment_id: str, *, obligation: str, kind: DeliveryKind, channel_index: int) -> str:
    """The stable `webhook-id` of an SLA delivery: one per assignment, obligation, kind and channel."""
    # The obligation as written when short and plain (readable in a receiver's log), else a digest,
    # so the id always fits its 100 characters.
    label = obligation
    if not _READABLE_OBLIGATION.match(obligation):
        label = hashlib.sha256(obligation.encode()).hexdigest()[:16]
    channel = "none" if channel_index == NO_CHANNEL else str(channel_index)
    return f"msg_{assignment_id}_{kind.value}_{label}_{channel}"


def sla_of(event: SlaEventData) -> dict[str, Any]:
    """The payload's `sla`: the obligation the delivery is about, its deadline, and where it stands."""
    sla: dict[str, Any] = {
        "obligation": event.obligation,
        "due_at": event.due_at.astimezone(UTC).isoformat(),  # Slack shows it as UTC
        "clock": event.clock.value,
        "policy_version": event.policy_version,
        "elapsed_seconds": event.elapsed_seconds,
        "elapsed_business_seconds": event.elapsed_business_seconds,
    }
    if isinstance(event, SlaWarning):
        sla["remaining_seconds"] = event.remaining_seconds
        sla["warned_at"] = None if event.warned_at is None else event.warned_at.astimezone(UTC).isoformat()
    if isinstance(event, SlaBreached):
        sla["breached_at"] = event.breached_at.astimezone(UTC).isoformat()
        sla["escalation"] = [step.value for step in event.escalation]
    return sla


async def payload_of(
    session: AsyncSession, *, kind: DeliveryKind, event: SlaEventData, assignment: Assignment, recipient: str | None
) -> dict[str, Any]:
    """The body: the assignment's notification (lead, grade, explanation) typed by kind, the obligation as `sla`."""
    scored = await assignments.get_routed(session=session, lead_id=assignment.lead_id)
    if scored is not None:
        previous = None
        if assignment.previous_assignment_id is not None:
            previous = await session.get(Assignment, assignment.previous_assignment_id)
        base = service.payload_of(assignment, scored, previous=previous)
    else:  # never scored here: the ids are all the context there is
        base = {"lead_id": assignment.lead_id, "assignment_id": assignment.id, "rep_id": assignment.rep_id,
                "team_id": assignment.team_id, "lead": {"id": assignment.lead_id}}  # fmt: skip
    return {**base, "type": PAYLOAD_TYPES[kind], "recipient_rep_id": recipient, "sla": sla_of(event)}


async def _add(session: AsyncSession, delivery: Delivery) -> bool:
    """Insert the delivery unless its webhook_id is taken (a redelivered event); True when inserted."""
    statement = upsert_insert(session, Delivery).values(**delivery.model_dump())
    result = await session.exec(statement.on_conflict_do_nothing(index_elements=[col(Delivery.webhook_id)]))
    return bool(result.rowcount)


async def enqueue(
    *,
    session: AsyncSession,
    kind: DeliveryKind,
    event: SlaEventData,
    assignment: Assignment,
    recipient: str | None,
    role: str,
    missing: str,
) -> int:
    """A pending delivery per enabled channel of `recipient` (a `role`), else a skipped row saying why; count due.

    `missing` says why when there is no recipient at all.
    """
    rep = None if recipient is None else await session.get(Rep, recipient)
    channels = [
        (index, channel) for index, channel in enumerate(rep.channels if rep else []) if not channel.get("disabled")
    ]
    now = utcnow()
    common: dict[str, Any] = {
        "assignment_id": assignment.id,
        "lead_id": assignment.lead_id,
        "rep_id": recipient or "",
        "kind": kind,
        "obligation": event.obligation,
        "created_at": now,
        "updated_at": now,
        "next_attempt_at": now,
    }
    if not channels:
        why = missing if recipient is None else f"{role} {recipient} has no enabled channel"
        skipped = Delivery(
            webhook_id=webhook_id(assignment.id, obligation=event.obligation, kind=kind, channel_index=NO_CHANNEL),
            channel_index=NO_CHANNEL,
            channel_kind="none",
            status=DeliveryStatus.SKIPPED,
            last_error=why,
            payload={},
            **common,
        )
        if await _add(session, skipped):
            # Ids only: the recipient's channels and the lead's person stay out of the log.
            logger.info("sla delivery has nothing to send", extra={"lead_id": assignment.lead_id,
                        "assignment_id": assignment.id, "kind": kind.value, "why": why})  # fmt: skip
        return 0
    payload = await payload_of(session, kind=kind, event=event, assignment=assignment, recipient=recipient)
    created = 0
    for index, channel in channels:
        row = Delivery(
            webhook_id=webhook_id(assignment.id, obligation=event.obligation, kind=kind, channel_index=index),
            channel_index=index,
            channel_kind=channel["kind"],
            payload=payload,
            **common,
        )
        created += await _add(session, row)
    return created


async def warn(*, session: AsyncSession, warning: SlaWarning, assignment: Assignment) -> int:
    """A heads-up to the assignment's rep that an obligation is close to its deadline."""
    return await enqueue(session=session, kind=DeliveryKind.WARNING, event=warning, assignment=assignment,
                         recipient=assignment.rep_id, role="rep", missing="the assignment has no rep")  # fmt: skip


async def remind(*, session: AsyncSession, breach: SlaBreached, assignment: Assignment) -> int:
    """The escalation's remind step: the rep who breached is told again, on each channel."""
    return await enqueue(session=session, kind=DeliveryKind.REMINDER, event=breach, assignment=assignment,
                         recipient=assignment.rep_id, role="rep", missing="the assignment has no rep")  # fmt: skip


async def notify_manager(*, session: AsyncSession, breach: SlaBreached, assignment: Assignment) -> int:
    """The escalation's notify_manager step: the manager of the breached assignment's team, on each channel."""
    team = None if assignment.team_id is None else await session.get(Team, assignment.team_id)
    manager = None if team is None else team.manager_rep_id
    missing = "the assignment is in no team" if team is None else f"team {team.id} has no manager"
    return await enqueue(session=session, kind=DeliveryKind.ESCALATION, event=breach, assignment=assignment,
                         recipient=manager, role="manager", missing=missing)  # fmt: skip


async def current_of(*, session: AsyncSession, events: Sequence[SlaEventData]) -> dict[str, Assignment]:
    """The events' assignments that are still their lead's current one, by assignment id."""
    current = await assignments.current_of(session=session, lead_ids=list({event.lead_id for event in events}))
    return {assignment.id: assignment for assignment in current.values()}
