"""品鉴官 programmes and samples, 晒单 posts and campaigns, the trust-point ledger

Revision ID: 0413
Revises: 0414
"""

import sqlalchemy as sa
from alembic import op

revision = '0413'
down_revision = '0414'
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f'{target}.id'],
                                   name=op.f(f'fk_{table}_{column}_{target}'))


def _index(table: str, *columns: str) -> None:
    for column in columns:
        op.create_index(op.f(f'ix_{table}_{column}'), table, [column])


def upgrade() -> None:
    op.create_table(
        'koc_programmes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('host_id', sa.Integer(), nullable=False),
        sa.Column('community_id', sa.Integer(), nullable=True),
        sa.Column('title', sa.String(length=80), nullable=False),
        sa.Column('rules', sa.Text(), nullable=False),
        sa.Column('badge', sa.String(length=12), nullable=False),
        sa.Column('quota', sa.Integer(), nullable=False),
        sa.Column('selected', sa.Integer(), nullable=False),
        sa.Column('min_orders', sa.Integer(), nullable=False),
        sa.Column('min_reviews', sa.Integer(), nullable=False),
        sa.Column('exit_days', sa.Integer(), nullable=False),
        sa.Column('open', sa.Boolean(), nullable=False),
        sa.Column('created_at', TS, nullable=False),
        _fk('koc_programmes', 'host_id', 'users'),
        _fk('koc_programmes', 'community_id', 'communities'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_koc_programmes')),
    )
    _index('koc_programmes', 'host_id')
    op.create_table(
        'koc_applications',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('programme_id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('note', sa.String(length=300), nullable=False),
        sa.Column('applied_at', TS, nullable=False),
        sa.Column('selected_at', TS, nullable=True),
        sa.Column('last_post_at', TS, nullable=True),
        _fk('koc_applications', 'programme_id', 'koc_programmes'),
        _fk('koc_applications', 'user_id', 'users'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_koc_applications')),
        sa.UniqueConstraint('programme_id', 'user_id', name='uq_koc_applications_user'),
    )
    _index('koc_applications', 'programme_id', 'user_id')
    op.create_table(
        'koc_sample_stock',
        sa.Column('batch_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('units', sa.Integer(), nullable=False),
        sa.Column('sent', sa.Integer(), nullable=False),
        _fk('koc_sample_stock', 'batch_id', 'batches'),
        sa.PrimaryKeyConstraint('batch_id', name=op.f('pk_koc_sample_stock')),
    )
    op.create_table(
        'koc_samples',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('batch_id', sa.Integer(), nullable=False),
        sa.Column('product_id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('sent_by', sa.Integer(), nullable=False),
        sa.Column('price_fen', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('due_at', TS, nullable=False),
        sa.Column('created_at', TS, nullable=False),
        _fk('koc_samples', 'batch_id', 'batches'),
        _fk('koc_samples', 'product_id', 'products'),
        _fk('koc_samples', 'user_id', 'users'),
        _fk('koc_samples', 'sent_by', 'users'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_koc_samples')),
        sa.UniqueConstraint('batch_id', 'user_id', name='uq_koc_samples_batch_user'),
    )
    _index('koc_samples', 'batch_id', 'user_id')
    op.create_table(
        'ugc_campaigns',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('host_id', sa.Integer(), nullable=False),
        sa.Column('title', sa.String(length=80), nullable=False),
        sa.Column('hashtag', sa.String(length=32), nullable=False),
        sa.Column('reward_points', sa.Integer(), nullable=False),
        sa.Column('reward_text', sa.String(length=200), nullable=False),
        sa.Column('starts_at', TS, nullable=False),
        sa.Column('ends_at', TS, nullable=False),
        sa.Column('created_at', TS, nullable=False),
        _fk('ugc_campaigns', 'host_id', 'users'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_ugc_campaigns')),
    )
    _index('ugc_campaigns', 'host_id')
    op.create_table(
        'ugc_posts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('batch_id', sa.Integer(), nullable=False),
        sa.Column('product_id', sa.Integer(), nullable=False),
        sa.Column('order_id', sa.Integer(), nullable=True),
        sa.Column('sample_id', sa.Integer(), nullable=True),
        sa.Column('campaign_id', sa.Integer(), nullable=True),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('filtered', sa.Boolean(), nullable=False),
        sa.Column('photos', sa.JSON(), nullable=False),
        sa.Column('video_id', sa.Integer(), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('decided_by', sa.Integer(), nullable=True),
        sa.Column('decided_at', TS, nullable=True),
        sa.Column('created_at', TS, nullable=False),
        _fk('ugc_posts', 'user_id', 'users'),
        _fk('ugc_posts', 'batch_id', 'batches'),
        _fk('ugc_posts', 'product_id', 'products'),
        _fk('ugc_posts', 'order_id', 'orders'),
        _fk('ugc_posts', 'sample_id', 'koc_samples'),
        _fk('ugc_posts', 'campaign_id', 'ugc_campaigns'),
        _fk('ugc_posts', 'decided_by', 'users'),
        _fk('ugc_posts', 'video_id', 'trust_uploads'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_ugc_posts')),
        sa.UniqueConstraint('order_id', name=op.f('uq_ugc_posts_order_id')),
        sa.UniqueConstraint('sample_id', name=op.f('uq_ugc_posts_sample_id')),
    )
    _index('ugc_posts', 'user_id', 'batch_id', 'product_id', 'status')
    op.create_table(
        'trust_point_ledger',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('fact_key', sa.String(length=120), nullable=False),
        sa.Column('points', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.String(length=200), nullable=False),
        sa.Column('order_id', sa.Integer(), nullable=True),
        sa.Column('expires_at', TS, nullable=True),
        sa.Column('created_at', TS, nullable=False),
        _fk('trust_point_ledger', 'user_id', 'users'),
        _fk('trust_point_ledger', 'order_id', 'orders'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_trust_point_ledger')),
        sa.UniqueConstraint('fact_key', name=op.f('uq_trust_point_ledger_fact_key')),
    )
    _index('trust_point_ledger', 'user_id', 'order_id')
    op.create_table(
        'trust_point_balances',
        sa.Column('user_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('balance', sa.BigInteger(), nullable=False),
        sa.Column('earned', sa.BigInteger(), nullable=False),
        _fk('trust_point_balances', 'user_id', 'users'),
        sa.PrimaryKeyConstraint('user_id', name=op.f('pk_trust_point_balances')),
    )
    op.create_table(
        'point_perks',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('host_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=80), nullable=False),
        sa.Column('cost', sa.Integer(), nullable=False),
        sa.Column('stock', sa.Integer(), nullable=False),
        sa.Column('redeemed', sa.Integer(), nullable=False),
        sa.Column('created_at', TS, nullable=False),
        _fk('point_perks', 'host_id', 'users'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_point_perks')),
    )
    _index('point_perks', 'host_id')


def downgrade() -> None:
    for table in ('point_perks', 'trust_point_balances', 'trust_point_ledger', 'ugc_posts', 'ugc_campaigns',
                  'koc_samples', 'koc_sample_stock', 'koc_applications', 'koc_programmes'):
        op.drop_table(table)
