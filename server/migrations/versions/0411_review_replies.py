"""the host's public reply to a review (one per review)

Revision ID: 0411
Revises: 0407
"""

import sqlalchemy as sa
from alembic import op

revision = '0411'
down_revision = '0407'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'review_replies',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('review_id', sa.Integer(), nullable=False),
        sa.Column('author_id', sa.Integer(), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['review_id'], ['reviews.id'],
                                name=op.f('fk_review_replies_review_id_reviews')),
        sa.ForeignKeyConstraint(['author_id'], ['users.id'],
                                name=op.f('fk_review_replies_author_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_review_replies')),
        sa.UniqueConstraint('review_id', name=op.f('uq_review_replies_review_id')),
    )


def downgrade() -> None:
    op.drop_table('review_replies')
