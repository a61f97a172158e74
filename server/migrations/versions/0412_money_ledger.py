"""money ledger: payments that came in, and the daily reconciliations against provider bills

Revision ID: 0412
Revises: 0410
"""

import sqlalchemy as sa
from alembic import op

revision = '0412'
down_revision = '0410'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'payments',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('provider', sa.String(length=20), nullable=False),
        sa.Column('provider_ref', sa.String(length=80), nullable=False),
        sa.Column('hold_id', sa.String(length=40), nullable=False),
        sa.Column('amount_fen', sa.BigInteger(), nullable=False),
        sa.Column('paid_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('provider', 'provider_ref', name='uq_payments_provider_ref'),
    )
    op.create_index('ix_payments_hold_id', 'payments', ['hold_id'])
    op.create_index('ix_payments_paid_at', 'payments', ['paid_at'])
    op.create_table(
        'payment_reconciliations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('provider', sa.String(length=20), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('ledger_lines', sa.Integer(), nullable=False),
        sa.Column('bill_lines', sa.Integer(), nullable=False),
        sa.Column('issue_count', sa.Integer(), nullable=False),
        sa.Column('issues_json', sa.Text(), nullable=False),
        sa.Column('ran_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_payment_reconciliations_provider', 'payment_reconciliations',
                    ['provider'])
    op.create_index('ix_payment_reconciliations_day', 'payment_reconciliations', ['day'])


def downgrade() -> None:
    op.drop_index('ix_payment_reconciliations_day', table_name='payment_reconciliations')
    op.drop_index('ix_payment_reconciliations_provider', table_name='payment_reconciliations')
    op.drop_table('payment_reconciliations')
    op.drop_index('ix_payments_paid_at', table_name='payments')
    op.drop_index('ix_payments_hold_id', table_name='payments')
    op.drop_table('payments')
