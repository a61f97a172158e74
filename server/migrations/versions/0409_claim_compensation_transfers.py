"""money out: transfers beside refunds (claim compensation paid to the buyer)

Revision ID: 0409
Revises: 0406
"""

import sqlalchemy as sa
from alembic import op

revision = '0409'
down_revision = '0406'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=12), server_default='refund',
                                      nullable=False))
        batch_op.add_column(sa.Column('payee', sa.String(length=80), server_default='',
                                      nullable=False))
    with op.batch_alter_table('claims', schema=None) as batch_op:
        batch_op.add_column(sa.Column('compensation_ref', sa.String(length=80), server_default='',
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('claims', schema=None) as batch_op:
        batch_op.drop_column('compensation_ref')
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_column('payee')
        batch_op.drop_column('kind')
