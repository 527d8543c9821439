"""where each lead's lead.received was stored in the broker

Revision ID: 5b1e0c7d2a90
Revises: 3c8f184a4723
Create Date: 2026-11-27 11:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '5b1e0c7d2a90'
down_revision: str | None = '3c8f184a4723'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('lead', schema=None) as batch_op:
        batch_op.add_column(sa.Column('received_event_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('published_partition', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('published_offset', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('published_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('lead', schema=None) as batch_op:
        batch_op.drop_column('published_at')
        batch_op.drop_column('published_offset')
        batch_op.drop_column('published_partition')
        batch_op.drop_column('received_event_id')
