"""standard lead fields, one lead per person and idempotency keys

Revision ID: b0cfb4fe3c6f
Revises: a78db7c46979
Create Date: 2026-11-27 14:13:40.557364
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = 'b0cfb4fe3c6f'
down_revision: str | None = 'a78db7c46979'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('idempotency_record',
    sa.Column('owner', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('fingerprint', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=False),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('owner', 'key')
    )
    with op.batch_alter_table('idempotency_record', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_idempotency_record_created_at'), ['created_at'], unique=False)

    with op.batch_alter_table('lead', schema=None) as batch_op:
        batch_op.add_column(sa.Column('industry', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch_op.add_column(sa.Column('employees', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('annual_revenue', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('website', sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=True))
        batch_op.add_column(sa.Column('utm_source', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch_op.add_column(sa.Column('utm_medium', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch_op.add_column(sa.Column('utm_campaign', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch_op.add_column(sa.Column('crm_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True))
        batch_op.add_column(sa.Column('marketing_opt_in', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('email_domain', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True))
        batch_op.add_column(sa.Column('email_free_mail', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('email_disposable', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('email_lookalike', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('merged_into_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True))
        batch_op.add_column(sa.Column('reengaged_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('reengagement_count', sa.Integer(), nullable=False, server_default='0'))

    # Leads from before one lead per person may share an address: the oldest stays the person's
    # lead, the others point at it (and keep their own history) and stay out of the unique index.
    op.execute(
        """
        UPDATE lead SET merged_into_id = (
            SELECT keeper.id FROM lead AS keeper
            WHERE keeper.email = lead.email
            ORDER BY keeper.received_at, keeper.id
            LIMIT 1
        )
        WHERE EXISTS (
            SELECT 1 FROM lead AS older
            WHERE older.email = lead.email
            AND (older.received_at < lead.received_at OR (older.received_at = lead.received_at AND older.id < lead.id))
        )
        """
    )

    with op.batch_alter_table('lead', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lead_email_domain'), ['email_domain'], unique=False)
        batch_op.create_index(batch_op.f('ix_lead_updated_at'), ['updated_at'], unique=False)
        batch_op.create_index('uq_lead_crm_id', ['crm_id'], unique=True)
        batch_op.create_index('uq_lead_person_email', ['email'], unique=True, sqlite_where=sa.text('merged_into_id IS NULL'), postgresql_where=sa.text('merged_into_id IS NULL'))


def downgrade() -> None:
    with op.batch_alter_table('lead', schema=None) as batch_op:
        batch_op.drop_index('uq_lead_person_email', sqlite_where=sa.text('merged_into_id IS NULL'), postgresql_where=sa.text('merged_into_id IS NULL'))
        batch_op.drop_index('uq_lead_crm_id')
        batch_op.drop_index(batch_op.f('ix_lead_updated_at'))
        batch_op.drop_index(batch_op.f('ix_lead_email_domain'))
        batch_op.drop_column('reengagement_count')
        batch_op.drop_column('reengaged_at')
        batch_op.drop_column('merged_into_id')
        batch_op.drop_column('email_lookalike')
        batch_op.drop_column('email_disposable')
        batch_op.drop_column('email_free_mail')
        batch_op.drop_column('email_domain')
        batch_op.drop_column('marketing_opt_in')
        batch_op.drop_column('crm_id')
        batch_op.drop_column('utm_campaign')
        batch_op.drop_column('utm_medium')
        batch_op.drop_column('utm_source')
        batch_op.drop_column('website')
        batch_op.drop_column('annual_revenue')
        batch_op.drop_column('employees')
        batch_op.drop_column('industry')

    with op.batch_alter_table('idempotency_record', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_idempotency_record_created_at'))

    op.drop_table('idempotency_record')
