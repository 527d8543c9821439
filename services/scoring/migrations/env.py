"""Alembic environment for scoring."""

from sqlmodel import SQLModel

from leadrelay import apikeys, audit, idempotency, outbox  # noqa: F401  (registers the platform tables)
from leadrelay.agreements import models as agreements  # noqa: F401
from leadrelay.migrations import run_env
from scoring.accounts import models as accounts  # noqa: F401
from scoring.scores import models  # noqa: F401

run_env(SQLModel.metadata)
