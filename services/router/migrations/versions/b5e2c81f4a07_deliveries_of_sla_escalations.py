"""deliveries of sla escalations

Revision ID: b5e2c81f4a07
Revises: e260b1b3ce18
Create Date: 2026-11-27 22:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = 'b5e2c81f4a07'
down_revision: str | None = 'e260b1b3ce18'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A delivery is now one per assignment, kind, obligation and channel: the unique webhook_id says
    # so, and the old (assignment, channel) key would refuse an assignment's reminder.
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=20), server_default='assignment', nullable=False)
        )
        batch_op.add_column(sa.Column('obligation', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True))
        batch_op.drop_constraint('uq_delivery_assignment_channel', type_='unique')


def downgrade() -> None:
    op.execute("DELETE FROM delivery WHERE kind <> 'assignment'")
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.create_unique_constraint('uq_delivery_assignment_channel', ['assignment_id', 'channel_index'])
        batch_op.drop_column('obligation')
        batch_op.drop_column('kind')
