"""money out per provider: each refund and transfer names the provider that took the money, and
a transfer no account can receive yet waits as awaiting_payee with its reason

Revision ID: 0415
Revises: 0412
"""

import sqlalchemy as sa
from alembic import op

revision = '0415'
down_revision = '0412'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('provider', sa.String(length=20), server_default='',
                                      nullable=False))
        batch_op.add_column(sa.Column('waiting_reason', sa.String(length=40), server_default='',
                                      nullable=False))
        batch_op.alter_column('status', existing_type=sa.String(length=12),
                              type_=sa.String(length=16), existing_nullable=False)
    # Rows written before: the provider of the payment they give money back on.
    op.execute(
        "UPDATE refunds SET provider = (SELECT p.provider FROM payments p "
        "WHERE p.provider_ref = refunds.payment_ref ORDER BY p.id LIMIT 1) "
        "WHERE EXISTS (SELECT 1 FROM payments p WHERE p.provider_ref = refunds.payment_ref)")


def downgrade() -> None:
    # A waiting transfer becomes what it was before: pending, retried by the refund worker.
    op.execute("UPDATE refunds SET status = 'pending' WHERE status = 'awaiting_payee'")
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.alter_column('status', existing_type=sa.String(length=16),
                              type_=sa.String(length=12), existing_nullable=False)
        batch_op.drop_column('waiting_reason')
        batch_op.drop_column('provider')
