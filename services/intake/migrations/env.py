"""Alembic environment for intake."""

from sqlmodel import SQLModel

from intake.accounts import models as account_models  # noqa: F401  (registers the tables)
from intake.leads import models  # noqa: F401  (registers the tables)
from intake.sources import models as source_models  # noqa: F401  (registers the tables)
from intake.webhooks import models as webhook_models  # noqa: F401  (registers the tables)
from leadrelay import apikeys, audit, idempotency, idempotency_keys, outbox  # noqa: F401  (registers the platform tables)
from leadrelay.migrations import run_env

run_env(SQLModel.metadata)
