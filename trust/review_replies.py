"""The host's public reply to a review: one per review, editable by the product's host.

The review itself stays as the buyer wrote it; the reply sits beside it on every public list.
One row per review (unique `review_id`); the first reply and every edit run under a lock on the
review row, so N replies at once leave one reply holding one of their texts."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from commerce.accounts import Principal, Role
from commerce.base import utcnow
from commerce.catalog import Product
from commerce.errors import Forbidden, InvalidInput, NotFound
from commerce.locks import lock_row
from trust.reviews import MAX_REPLY, Review, ReviewReply


async def reply(db: AsyncSession, actor: Principal, review_id: int, text: str) -> ReviewReply:
    """The product's host (or an admin) writes or rewrites the one public reply."""
    text = text.strip()
    if not 1 <= len(text) <= MAX_REPLY:
        raise InvalidInput(f"回复须为 1–{MAX_REPLY} 字 / A reply is 1–{MAX_REPLY} characters",
                           field="text")
    review = await db.get(Review, review_id)
    if review is None:
        raise NotFound("评价不存在 / No such review")
    product = await db.get(Product, review.product_id)
    owner = product.owner_id if product is not None else None
    if not actor.is_admin and (actor.role is not Role.HOST or owner != actor.user_id):
        raise Forbidden("只有商品的主播可以回复 / Only the product's host may reply")
    await lock_row(db, Review, review_id)
    found = (await db.execute(select(ReviewReply).where(ReviewReply.review_id == review_id)
                              .execution_options(populate_existing=True))).scalar_one_or_none()
    now = utcnow()
    if found is None:
        found = ReviewReply(review_id=review_id, author_id=actor.user_id, text=text,
                            created_at=now, updated_at=now)
        db.add(found)
    else:
        found.text, found.author_id, found.updated_at = text, actor.user_id, now
    await db.flush()
    return found
