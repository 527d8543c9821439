"""Alembic environment for router."""

from sqlmodel import SQLModel

from leadrelay import apikeys, audit, idempotency, idempotency_keys, outbox  # noqa: F401  (registers the platform tables)
from leadrelay.agreements import models as agreements  # noqa: F401
from leadrelay.migrations import run_env
from router.assignments import models  # noqa: F401
from router.fairness import models as fairness  # noqa: F401
from router.notifications import models as notifications  # noqa: F401
from router.reps import models as reps  # noqa: F401
from router.teams import models as teams  # noqa: F401

run_env(SQLModel.metadata)
