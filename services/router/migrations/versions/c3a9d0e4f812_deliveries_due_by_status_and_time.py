"""deliveries due, by status and time

Revision ID: c3a9d0e4f812
Revises: b5e2c81f4a07
Create Date: 2026-11-28 09:30:00.000000
"""

from collections.abc import Sequence

from alembic import op


revision: str = 'c3a9d0e4f812'
down_revision: str | None = 'b5e2c81f4a07'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The delivery job claims the earliest due pending rows: with this index it reads as many rows as
    # it claims, instead of sorting every pending row (a backlog of 10,000 made each claim 15 ms).
    op.create_index('ix_delivery_status_next_attempt_at', 'delivery', ['status', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_delivery_status_next_attempt_at', table_name='delivery')
