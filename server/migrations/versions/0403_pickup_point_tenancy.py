"""pickup points: who added each, and one default per community (where new orders go)

Revision ID: 0403
Revises: 0401 (and needs 0100)
"""

import sqlalchemy as sa
from alembic import op

revision = '0403'
down_revision = '0402'
branch_labels = None
# pickup_points is made on the commerce branch.
depends_on = ('0100',)


def upgrade() -> None:
    with op.batch_alter_table('pickup_points', schema=None) as batch_op:
        batch_op.add_column(sa.Column('is_default', sa.Boolean(), server_default=sa.false(),
                                      nullable=False))
        batch_op.add_column(sa.Column('created_by', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_pickup_points_created_by_users'), 'users',
                                    ['created_by'], ['id'])

    # Orders used to go to a community's lowest-id point: it stays where they go, now by name,
    # so an existing deployment routes as before until the community's manager moves it.
    points = sa.table('pickup_points', sa.column('id', sa.Integer()),
                      sa.column('community_id', sa.Integer()), sa.column('is_default', sa.Boolean()))
    bind = op.get_bind()
    firsts = bind.execute(sa.select(sa.func.min(points.c.id)).group_by(points.c.community_id))
    first_ids = [row[0] for row in firsts]
    if first_ids:
        bind.execute(points.update().where(points.c.id.in_(first_ids)).values(is_default=True))

    op.create_index('uq_pickup_points_default', 'pickup_points', ['community_id'], unique=True,
                    sqlite_where=sa.text('is_default'), postgresql_where=sa.text('is_default'))


def downgrade() -> None:
    op.drop_index('uq_pickup_points_default', table_name='pickup_points')
    with op.batch_alter_table('pickup_points', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_pickup_points_created_by_users'), type_='foreignkey')
        batch_op.drop_column('created_by')
        batch_op.drop_column('is_default')
