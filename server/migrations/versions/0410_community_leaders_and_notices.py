"""communities: 团长 (community leaders) and the notices a community's managers send its members

Revision ID: 0410
Revises: 0411
"""

import sqlalchemy as sa
from alembic import op

revision = '0410'
down_revision = '0411'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'community_leaders',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('community_id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('appointed_by', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['community_id'], ['communities.id'],
                                name=op.f('fk_community_leaders_community_id_communities')),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                                name=op.f('fk_community_leaders_user_id_users')),
        sa.ForeignKeyConstraint(['appointed_by'], ['users.id'],
                                name=op.f('fk_community_leaders_appointed_by_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_community_leaders')),
        sa.UniqueConstraint('community_id', 'user_id', name='uq_community_leaders_pair'),
    )
    op.create_index(op.f('ix_community_leaders_community_id'), 'community_leaders',
                    ['community_id'])
    op.create_index(op.f('ix_community_leaders_user_id'), 'community_leaders', ['user_id'])

    op.create_table(
        'community_notices',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('community_id', sa.Integer(), nullable=False),
        sa.Column('sender_id', sa.Integer(), nullable=False),
        sa.Column('text', sa.String(length=200), nullable=False),
        sa.Column('tag', sa.String(length=24), nullable=True),
        sa.Column('idem_key', sa.String(length=100), nullable=False),
        sa.Column('recipients', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['community_id'], ['communities.id'],
                                name=op.f('fk_community_notices_community_id_communities')),
        sa.ForeignKeyConstraint(['sender_id'], ['users.id'],
                                name=op.f('fk_community_notices_sender_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_community_notices')),
        sa.UniqueConstraint('community_id', 'idem_key', name='uq_community_notices_key'),
    )
    op.create_index('ix_community_notices_community_created', 'community_notices',
                    ['community_id', 'created_at'])


def downgrade() -> None:
    op.drop_index('ix_community_notices_community_created', table_name='community_notices')
    op.drop_table('community_notices')
    op.drop_index(op.f('ix_community_leaders_user_id'), table_name='community_leaders')
    op.drop_index(op.f('ix_community_leaders_community_id'), table_name='community_leaders')
    op.drop_table('community_leaders')
