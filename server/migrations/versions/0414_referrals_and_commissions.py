"""referrals and commissions: share codes, arrivals, attributions, rates, the ledger, payouts

Revision ID: 0414
Revises: 0415
"""

import sqlalchemy as sa
from alembic import op

revision = '0414'
down_revision = '0415'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'referral_codes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('code', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name='fk_referral_codes_user_id_users'),
        sa.PrimaryKeyConstraint('id', name='pk_referral_codes'),
        sa.UniqueConstraint('user_id', name='uq_referral_codes_user_id'),
        sa.UniqueConstraint('code', name='uq_referral_codes_code'),
    )
    op.create_table(
        'referral_arrivals',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('buyer_id', sa.Integer(), nullable=False),
        sa.Column('referrer_id', sa.Integer(), nullable=False),
        sa.Column('via', sa.String(length=12), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['buyer_id'], ['users.id'], name='fk_referral_arrivals_buyer_id_users'),
        sa.ForeignKeyConstraint(['referrer_id'], ['users.id'],
                                name='fk_referral_arrivals_referrer_id_users'),
        sa.PrimaryKeyConstraint('id', name='pk_referral_arrivals'),
        sa.UniqueConstraint('buyer_id', name='uq_referral_arrivals_buyer_id'),
    )
    op.create_index('ix_referral_arrivals_referrer_id', 'referral_arrivals', ['referrer_id'])
    op.create_table(
        'referral_attributions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('buyer_id', sa.Integer(), nullable=False),
        sa.Column('order_id', sa.Integer(), nullable=False),
        sa.Column('referrer_id', sa.Integer(), nullable=False),
        sa.Column('attributed_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('picked_up_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['buyer_id'], ['users.id'],
                                name='fk_referral_attributions_buyer_id_users'),
        sa.ForeignKeyConstraint(['order_id'], ['orders.id'],
                                name='fk_referral_attributions_order_id_orders'),
        sa.ForeignKeyConstraint(['referrer_id'], ['users.id'],
                                name='fk_referral_attributions_referrer_id_users'),
        sa.PrimaryKeyConstraint('id', name='pk_referral_attributions'),
        sa.UniqueConstraint('buyer_id', name='uq_referral_attributions_buyer_id'),
        sa.UniqueConstraint('order_id', name='uq_referral_attributions_order_id'),
    )
    op.create_index('ix_referral_attributions_referrer_id', 'referral_attributions',
                    ['referrer_id'])
    op.create_table(
        'commission_rates',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('scope', sa.String(length=12), nullable=False),
        sa.Column('target_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=12), nullable=False),
        sa.Column('rate_bp', sa.Integer(), nullable=False),
        sa.Column('set_by', sa.Integer(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['set_by'], ['users.id'], name='fk_commission_rates_set_by_users'),
        sa.PrimaryKeyConstraint('id', name='pk_commission_rates'),
        sa.UniqueConstraint('scope', 'target_id', 'kind', name='uq_commission_rates_target'),
    )
    op.create_table(
        'commission_payouts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('beneficiary_id', sa.Integer(), nullable=False),
        sa.Column('period', sa.String(length=10), nullable=False),
        sa.Column('payer_host_id', sa.Integer(), nullable=False),
        sa.Column('method', sa.String(length=12), nullable=False),
        sa.Column('note', sa.String(length=200), nullable=False),
        sa.Column('amount_fen', sa.BigInteger(), nullable=False),
        sa.Column('rows', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=12), nullable=False),
        sa.Column('transfer_key', sa.String(length=120), nullable=False),
        sa.Column('provider_ref', sa.String(length=80), nullable=False),
        sa.Column('created_by', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('paid_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['beneficiary_id'], ['users.id'],
                                name='fk_commission_payouts_beneficiary_id_users'),
        sa.ForeignKeyConstraint(['created_by'], ['users.id'],
                                name='fk_commission_payouts_created_by_users'),
        sa.PrimaryKeyConstraint('id', name='pk_commission_payouts'),
        sa.UniqueConstraint('beneficiary_id', 'period', 'payer_host_id',
                            name='uq_commission_payouts_fact'),
    )
    op.create_index('ix_commission_payouts_beneficiary_id', 'commission_payouts',
                    ['beneficiary_id'])
    op.create_table(
        'commissions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('order_id', sa.Integer(), nullable=False),
        sa.Column('beneficiary_id', sa.Integer(), nullable=False),
        sa.Column('role', sa.String(length=12), nullable=False),
        sa.Column('host_id', sa.Integer(), nullable=False),
        sa.Column('rate_bp', sa.Integer(), nullable=False),
        sa.Column('base_fen', sa.BigInteger(), nullable=False),
        sa.Column('amount_fen', sa.BigInteger(), nullable=False),
        sa.Column('reversed_fen', sa.BigInteger(), nullable=False),
        sa.Column('status', sa.String(length=12), nullable=False),
        sa.Column('payout_id', sa.Integer(), nullable=True),
        sa.Column('paid_fen', sa.BigInteger(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('due_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('reversed_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name='fk_commissions_order_id_orders'),
        sa.ForeignKeyConstraint(['beneficiary_id'], ['users.id'],
                                name='fk_commissions_beneficiary_id_users'),
        sa.ForeignKeyConstraint(['host_id'], ['users.id'], name='fk_commissions_host_id_users'),
        sa.ForeignKeyConstraint(['payout_id'], ['commission_payouts.id'],
                                name='fk_commissions_payout_id_commission_payouts'),
        sa.PrimaryKeyConstraint('id', name='pk_commissions'),
        sa.UniqueConstraint('order_id', 'beneficiary_id', name='uq_commissions_order_beneficiary'),
    )
    for column in ('order_id', 'beneficiary_id', 'host_id', 'status', 'payout_id'):
        op.create_index(f'ix_commissions_{column}', 'commissions', [column])


def downgrade() -> None:
    for column in ('order_id', 'beneficiary_id', 'host_id', 'status', 'payout_id'):
        op.drop_index(f'ix_commissions_{column}', table_name='commissions')
    op.drop_table('commissions')
    op.drop_index('ix_commission_payouts_beneficiary_id', table_name='commission_payouts')
    op.drop_table('commission_payouts')
    op.drop_table('commission_rates')
    op.drop_index('ix_referral_attributions_referrer_id', table_name='referral_attributions')
    op.drop_table('referral_attributions')
    op.drop_index('ix_referral_arrivals_referrer_id', table_name='referral_arrivals')
    op.drop_table('referral_arrivals')
    op.drop_table('referral_codes')
