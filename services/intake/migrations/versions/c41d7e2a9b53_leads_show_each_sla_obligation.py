"""leads show each sla obligation

Revision ID: c41d7e2a9b53
Revises: 8eb018357263
Create Date: 2026-11-27 22:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'c41d7e2a9b53'
down_revision: str | None = '8eb018357263'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Leads with an SLA from before keep their one summary; their per-obligation view starts empty
    # and fills with the next sla.* event.
    with op.batch_alter_table('lead', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sla_obligations', sa.JSON(), server_default=sa.text("'{}'"), nullable=False))
        batch_op.create_index(batch_op.f('ix_lead_sla_state'), ['sla_state'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('lead', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lead_sla_state'))
        batch_op.drop_column('sla_obligations')
