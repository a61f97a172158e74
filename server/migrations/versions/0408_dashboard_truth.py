"""dashboard truth: interaction counts per session, and the pickup time a sale promises

Revision ID: 0408
Revises: 0409
"""

import sqlalchemy as sa
from alembic import op

revision = '0408'
down_revision = '0409'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('session_audience', schema=None) as batch_op:
        for name in ('comments', 'questions', 'likes'):
            batch_op.add_column(sa.Column(name, sa.Integer(), server_default='0', nullable=False))
    with op.batch_alter_table('sales', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pickup_by', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sales', schema=None) as batch_op:
        batch_op.drop_column('pickup_by')
    with op.batch_alter_table('session_audience', schema=None) as batch_op:
        for name in ('likes', 'questions', 'comments'):
            batch_op.drop_column(name)
