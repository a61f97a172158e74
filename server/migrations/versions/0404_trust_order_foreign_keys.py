"""trust rows name real orders: foreign keys from claims, reviews, nps_responses and
order_evidence to orders.id

Revision ID: 0404
Revises: 0403

The trust tables were made on their own branch before orders existed there, so their order_id
columns had no foreign key. Rows naming an order that does not exist are not deleted here: a
claim carries a refund and a review or survey answer is a buyer's word, so such rows are
damage for an operator to look at (restore the orders from a backup, or remove the rows by
hand). The upgrade lists them and stops before changing anything.
"""

import sqlalchemy as sa
from alembic import op

revision = '0404'
down_revision = '0403'
branch_labels = None
# orders is made on the commerce branch.
depends_on = ('0100',)

TABLES = ('claims', 'reviews', 'nps_responses', 'order_evidence')
UPLOAD_CLAIM_FK = 'fk_trust_uploads_claim_id_claims'
SHOWN = 20


def _fk(table: str) -> str:
    return f'fk_{table}_order_id_orders'


def _refuse_orphans() -> None:
    bind = op.get_bind()
    orders = sa.table('orders', sa.column('id', sa.Integer()))
    found = []
    for name in TABLES:
        table = sa.table(name, sa.column('order_id', sa.Integer()))
        orphan = table.c.order_id.not_in(sa.select(orders.c.id))
        count = bind.execute(sa.select(sa.func.count()).select_from(table).where(orphan)).scalar_one()
        if count:
            ids = bind.execute(sa.select(table.c.order_id).where(orphan)
                               .order_by(table.c.order_id).limit(SHOWN)).scalars().all()
            found.append(f"{name}: {count} row(s), order ids {', '.join(map(str, ids))}"
                         + (" ..." if count > SHOWN else ""))
    if found:
        raise RuntimeError(
            "migration 0404 adds foreign keys to orders.id, but these rows name orders that do "
            "not exist: " + "; ".join(found) + ". Restore those orders from a backup or remove the "
            "rows, then migrate again; nothing was changed.")


def _rebuild(add: bool) -> None:
    # SQLite adds or drops a constraint by rebuilding the table (copy, drop, rename). With foreign
    # keys on (server/database.py turns them on for every connection, and the pragma cannot be
    # changed inside the migration's transaction), dropping `claims` while trust_uploads rows
    # point at it fails; so the uploads' link to claims comes off for the rebuild and goes back on
    # after, when the new `claims` holds the same ids. PostgreSQL alters in place.
    sqlite = op.get_bind().dialect.name == 'sqlite'
    if sqlite:
        with op.batch_alter_table('trust_uploads', schema=None) as batch_op:
            batch_op.drop_constraint(UPLOAD_CLAIM_FK, type_='foreignkey')
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            if add:
                batch_op.create_foreign_key(_fk(table), 'orders', ['order_id'], ['id'])
            else:
                batch_op.drop_constraint(_fk(table), type_='foreignkey')
    if sqlite:
        with op.batch_alter_table('trust_uploads', schema=None) as batch_op:
            batch_op.create_foreign_key(UPLOAD_CLAIM_FK, 'claims', ['claim_id'], ['id'])


def upgrade() -> None:
    _refuse_orphans()
    _rebuild(add=True)


def downgrade() -> None:
    _rebuild(add=False)
