"""invite links, a community's join policy, WeChat identities

Revision ID: 0405
Revises: 0408
"""

import sqlalchemy as sa
from alembic import op

revision = '0405'
down_revision = '0408'
branch_labels = None
# live_sessions and sales (read when an invitee lands) come from the commerce branch.
depends_on = ('0100',)


def upgrade() -> None:
    # Plain ADD COLUMN (with its default, SQLite fills existing rows), not batch mode: batch
    # would copy and drop `communities`, which memberships and pickup points refer to.
    op.add_column('communities', sa.Column('join_policy', sa.String(length=16),
                                           server_default=sa.text("'open'"), nullable=False))

    op.create_table('invites',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('community_id', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=False),
    sa.Column('max_uses', sa.Integer(), nullable=True),
    sa.Column('uses', sa.Integer(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['community_id'], ['communities.id'],
                            name=op.f('fk_invites_community_id_communities')),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_invites_created_by_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invites')),
    sa.UniqueConstraint('code', name=op.f('uq_invites_code'))
    )
    with op.batch_alter_table('invites', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invites_community_id'), ['community_id'], unique=False)

    op.create_table('wechat_identities',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('app_id', sa.String(length=64), nullable=False),
    sa.Column('openid', sa.String(length=128), nullable=False),
    sa.Column('unionid', sa.String(length=128), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                            name=op.f('fk_wechat_identities_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_wechat_identities')),
    sa.UniqueConstraint('app_id', 'openid', name=op.f('uq_wechat_identities_app_id')),
    sa.UniqueConstraint('unionid', name=op.f('uq_wechat_identities_unionid')),
    sa.UniqueConstraint('user_id', name=op.f('uq_wechat_identities_user_id'))
    )


def downgrade() -> None:
    op.drop_table('wechat_identities')
    with op.batch_alter_table('invites', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invites_community_id'))
    op.drop_table('invites')
    # A plain DROP COLUMN (SQLite 3.35+), for the same reason.
    op.drop_column('communities', 'join_policy')
