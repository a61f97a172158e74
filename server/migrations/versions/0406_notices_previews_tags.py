"""notifications, 预约 subscriptions, interest tags; a session's preview cover and products

Revision ID: 0406
Revises: 0404
"""

import sqlalchemy as sa
from alembic import op

revision = '0406'
down_revision = '0404'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('live_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cover_upload_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('cover_url', sa.String(length=120), server_default='',
                                      nullable=False))
        batch_op.add_column(sa.Column('preview_product_ids', sa.JSON(),
                                      server_default=sa.text("'[]'"), nullable=False))
        batch_op.create_foreign_key(batch_op.f('fk_live_sessions_cover_upload_id_trust_uploads'),
                                    'trust_uploads', ['cover_upload_id'], ['id'])

    op.create_table(
        'notifications',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('params', sa.JSON(), nullable=False),
        sa.Column('link', sa.String(length=300), nullable=False),
        sa.Column('dedupe', sa.String(length=80), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('read_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_notifications_user_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_notifications')),
        sa.UniqueConstraint('user_id', 'dedupe', name='uq_notifications_user_dedupe'),
    )
    op.create_index('ix_notifications_user_id_id', 'notifications', ['user_id', 'id'])

    op.create_table(
        'session_subscriptions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('session_id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['session_id'], ['live_sessions.id'],
                                name=op.f('fk_session_subscriptions_session_id_live_sessions')),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                                name=op.f('fk_session_subscriptions_user_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_session_subscriptions')),
        sa.UniqueConstraint('session_id', 'user_id', name='uq_session_subscriptions_pair'),
    )
    op.create_index(op.f('ix_session_subscriptions_user_id'), 'session_subscriptions', ['user_id'])

    op.create_table(
        'user_tags',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('tag', sa.String(length=24), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_tags_user_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_user_tags')),
        sa.UniqueConstraint('user_id', 'tag', name='uq_user_tags_pair'),
    )
    op.create_index(op.f('ix_user_tags_user_id'), 'user_tags', ['user_id'])


def downgrade() -> None:
    op.drop_index(op.f('ix_user_tags_user_id'), table_name='user_tags')
    op.drop_table('user_tags')
    op.drop_index(op.f('ix_session_subscriptions_user_id'), table_name='session_subscriptions')
    op.drop_table('session_subscriptions')
    op.drop_index('ix_notifications_user_id_id', table_name='notifications')
    op.drop_table('notifications')
    with op.batch_alter_table('live_sessions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_live_sessions_cover_upload_id_trust_uploads'),
                                 type_='foreignkey')
        batch_op.drop_column('preview_product_ids')
        batch_op.drop_column('cover_url')
        batch_op.drop_column('cover_upload_id')
