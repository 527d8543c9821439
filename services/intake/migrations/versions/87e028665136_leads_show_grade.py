"""leads show grade, fit, engagement, the MQL decision and the matched account

Revision ID: 87e028665136
Revises: adfc7fa24c7c
Create Date: 2026-11-27 16:36:08.567219
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '87e028665136'
down_revision: str | None = 'adfc7fa24c7c'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('lead', schema=None) as batch_op:
        batch_op.add_column(sa.Column('grade', sqlmodel.sql.sqltypes.AutoString(length=2), nullable=True))
        batch_op.add_column(sa.Column('fit', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('engagement', sa.Integer(), nullable=True))
        # sa.false(), not '0': PostgreSQL refuses an integer default on a boolean column.
        batch_op.add_column(sa.Column('mql', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('account_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True))
        batch_op.create_index(batch_op.f('ix_lead_grade'), ['grade'], unique=False)
        batch_op.create_index(batch_op.f('ix_lead_mql'), ['mql'], unique=False)
    # Leads the placeholder scored as MQLs and nobody moved on since: the only MQL decisions on record.
    op.execute("UPDATE lead SET mql = true WHERE stage = 'mql'")


def downgrade() -> None:
    with op.batch_alter_table('lead', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lead_mql'))
        batch_op.drop_index(batch_op.f('ix_lead_grade'))
        batch_op.drop_column('account_id')
        batch_op.drop_column('mql')
        batch_op.drop_column('engagement')
        batch_op.drop_column('fit')
        batch_op.drop_column('grade')
