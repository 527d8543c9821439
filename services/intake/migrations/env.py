"""Alembic environment for intake."""

from intake.leads import models  # noqa: F401  (registers the tables)
from leadrelay import apikeys, idempotency, outbox  # noqa: F401
from leadrelay.migrations import run_env
from sqlmodel import SQLModel

run_env(SQLModel.metadata)
