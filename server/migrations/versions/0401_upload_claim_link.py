"""uploads record the claim they are attached to (claim photos readable by that claim's parties)

Revision ID: 0401
Revises: 0400
"""

import sqlalchemy as sa
from alembic import op

revision = '0401'
down_revision = '0400'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('trust_uploads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claim_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_trust_uploads_claim_id'), ['claim_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_trust_uploads_claim_id_claims'), 'claims',
                                    ['claim_id'], ['id'])

    # Claims filed before this revision list their photos only in claims.photos: link them, or
    # their host and assistants would lose sight of them.
    claims = sa.table('claims', sa.column('id', sa.Integer()), sa.column('photos', sa.JSON()))
    uploads = sa.table('trust_uploads', sa.column('id', sa.Integer()),
                       sa.column('claim_id', sa.Integer()))
    bind = op.get_bind()
    for claim_id, photos in bind.execute(sa.select(claims.c.id, claims.c.photos)).all():
        if photos:
            bind.execute(uploads.update().where(uploads.c.id.in_(photos), uploads.c.claim_id.is_(None))
                         .values(claim_id=claim_id))


def downgrade() -> None:
    with op.batch_alter_table('trust_uploads', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_trust_uploads_claim_id_claims'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_trust_uploads_claim_id'))
        batch_op.drop_column('claim_id')
