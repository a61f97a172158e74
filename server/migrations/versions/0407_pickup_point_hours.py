"""pickup points: opening hours, shown to buyers with the point's name and address

Revision ID: 0407
Revises: 0405
"""

import sqlalchemy as sa
from alembic import op

revision = '0407'
down_revision = '0405'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('pickup_points', schema=None) as batch_op:
        batch_op.add_column(sa.Column('hours', sa.String(length=80), server_default='',
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('pickup_points', schema=None) as batch_op:
        batch_op.drop_column('hours')
