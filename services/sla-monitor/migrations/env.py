"""Alembic environment for sla-monitor."""

from leadrelay import idempotency, outbox  # noqa: F401  (registers the platform tables)
from leadrelay.migrations import run_env
from sla_monitor.timers import models  # noqa: F401
from sqlmodel import SQLModel

run_env(SQLModel.metadata)
