"""refunds ledger (one row per provider refund, keyed by its business fact); money columns BIGINT

Revision ID: 0402
Revises: 0401
"""

import sqlalchemy as sa
from alembic import op

revision = '0402'
down_revision = '0401'
branch_labels = None
# The ledger points at orders and the widened columns live in commerce's tables.
depends_on = ('0100',)

# Every money column: price (up to 10^8 fen) × qty (up to 1000) × claim multiplier (up to 10)
# passes the 2^31 of PostgreSQL's INTEGER.
MONEY_COLUMNS = (
    ('products', 'price_fen', False),
    ('sales', 'price_fen', False),
    ('sales', 'community_price_fen', True),
    ('orders', 'unit_price_fen', False),
    ('orders', 'amount_fen', False),
    ('orders', 'refunded_fen', False),
    ('group_buys', 'group_price_fen', False),
    ('claims', 'payout_fen', False),
    ('claims', 'refund_fen', False),
    ('claims', 'compensation_fen', False),
    ('claim_policies', 'auto_approve_max_fen', False),
)


def upgrade() -> None:
    op.create_table(
        'refunds',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('key', sa.String(length=120), nullable=False),
        sa.Column('order_id', sa.Integer(), nullable=True),
        sa.Column('payment_ref', sa.String(length=80), nullable=False),
        sa.Column('amount_fen', sa.BigInteger(), nullable=False),
        sa.Column('reason', sa.String(length=200), nullable=False),
        sa.Column('status', sa.String(length=12), nullable=False),
        sa.Column('provider_ref', sa.String(length=80), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_refunds_order_id_orders')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_refunds')),
        sa.UniqueConstraint('key', name=op.f('uq_refunds_key')),
    )
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_refunds_order_id'), ['order_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_refunds_status'), ['status'], unique=False)
    # SQLite stores every INTEGER in up to 64 bits whatever its declared type: nothing to widen.
    if op.get_bind().dialect.name != 'sqlite':
        for table, column, nullable in MONEY_COLUMNS:
            op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer(),
                            existing_nullable=nullable)


def downgrade() -> None:
    if op.get_bind().dialect.name != 'sqlite':
        for table, column, nullable in MONEY_COLUMNS:
            op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger(),
                            existing_nullable=nullable)
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_refunds_status'))
        batch_op.drop_index(batch_op.f('ix_refunds_order_id'))
    op.drop_table('refunds')
