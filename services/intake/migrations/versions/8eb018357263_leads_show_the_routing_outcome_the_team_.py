"""leads show the routing outcome, the team queue and the assignment sequence

Revision ID: 8eb018357263
Revises: 87e028665136
Create Date: 2026-11-27 19:39:28.031473
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '8eb018357263'
down_revision: str | None = '87e028665136'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('lead', schema=None) as batch_op:
        batch_op.add_column(sa.Column('assignment_sequence', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('routing_outcome', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True))
        batch_op.add_column(sa.Column('queue_team_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True))
        batch_op.create_index(batch_op.f('ix_lead_queue_team_id'), ['queue_team_id'], unique=False)
    # Leads routed before: their one assignment was the first, and it went to a rep.
    op.execute("UPDATE lead SET assignment_sequence = 1, routing_outcome = 'assigned' WHERE assignment_id IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table('lead', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lead_queue_team_id'))
        batch_op.drop_column('queue_team_id')
        batch_op.drop_column('routing_outcome')
        batch_op.drop_column('assignment_sequence')

