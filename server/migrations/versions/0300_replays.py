"""replays

Revision ID: 0300
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = '0300'
down_revision = '0002'
branch_labels = ('media',)
depends_on = None


def upgrade() -> None:
    op.create_table('replays',
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('percent', sa.Integer(), nullable=False),
    sa.Column('duration_s', sa.Float(), nullable=False),
    sa.Column('segments_used', sa.Integer(), nullable=False),
    sa.Column('builds', sa.Integer(), nullable=False),
    sa.Column('chapters', sa.JSON(), nullable=False),
    sa.Column('thumbnails', sa.JSON(), nullable=False),
    sa.Column('has_poster', sa.Boolean(), nullable=False),
    sa.Column('error', sa.String(length=500), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['session_id'], ['live_sessions.id'],
                            name=op.f('fk_replays_session_id_live_sessions')),
    sa.PrimaryKeyConstraint('session_id', name=op.f('pk_replays'))
    )
    with op.batch_alter_table('replays', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_replays_status'), ['status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('replays', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_replays_status'))
    op.drop_table('replays')
