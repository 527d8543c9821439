"""Alembic environment for sla-monitor."""

from sqlmodel import SQLModel

from leadrelay import apikeys, audit, idempotency, outbox  # noqa: F401  (registers the platform tables)
from leadrelay.agreements import models as agreements  # noqa: F401
from leadrelay.migrations import run_env
from sla_monitor.clocks import models as clocks  # noqa: F401
from sla_monitor.timers import models as timers  # noqa: F401

run_env(SQLModel.metadata)
