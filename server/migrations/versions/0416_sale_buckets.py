"""sales.buckets: over how many Redis buckets a sale's stock is split

Revision ID: 0416
Revises: 0413
"""

import sqlalchemy as sa
from alembic import op

revision = '0416'
down_revision = '0413'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sales', schema=None) as batch_op:
        batch_op.add_column(sa.Column('buckets', sa.Integer(), server_default='1', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('sales', schema=None) as batch_op:
        batch_op.drop_column('buckets')
