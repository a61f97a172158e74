"""The trust archive (信任档案): verified reviews, only from buyers who picked the goods up.

One review per order, written by the order's buyer once it is picked up (or delivered/completed).
Reviews are immutable: there is no update function at all, so a seller cannot edit or hide one
(the host answers in public instead, one reply per review beside it);
staff moderation of abusive text is out of scope here. Archives are per batch and per product.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Text, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.accounts import Principal, User
from commerce.base import Base, utcnow
from commerce.catalog import Product
from commerce.errors import Conflict, InvalidInput
from trust import points
from trust.evidence import fulfilled_order
from trust.programmes import badges_for
from trust.trace_signing import iso
from trust.uploads import Upload, claim_uploads

MAX_TEXT = 1000
MAX_PHOTOS = 6
MAX_REPLY = 500
FIRST_REVIEW_POINTS = 10


class Review(Base):
    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"), nullable=True, index=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("live_sessions.id"), index=True)
    stars: Mapped[int] = mapped_column()
    text: Mapped[str] = mapped_column(Text, default="")
    photos: Mapped[list[int]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReviewReply(Base):
    __tablename__ = "review_replies"

    id: Mapped[int] = mapped_column(primary_key=True)
    review_id: Mapped[int] = mapped_column(ForeignKey("reviews.id"), unique=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    def public_dict(self) -> dict[str, Any]:
        return {"text": self.text, "created_at": iso(self.created_at),
                "updated_at": iso(self.updated_at), "edited": self.updated_at != self.created_at}


async def replies_for(db: AsyncSession, review_ids: list[int]) -> dict[int, ReviewReply]:
    if not review_ids:
        return {}
    rows = await db.execute(select(ReviewReply).where(ReviewReply.review_id.in_(review_ids)))
    return {r.review_id: r for r in rows.scalars()}


async def create_review(
    db: AsyncSession, actor: Principal, order_id: int, stars: int, text: str, photo_ids: list[int]
) -> Review:
    """A verified buyer reviews their picked-up order; a second review of the same order is refused."""
    if not 1 <= stars <= 5:
        raise InvalidInput("星级须为 1–5 / stars must be 1–5", field="stars")
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"最多 {MAX_TEXT} 字 / At most {MAX_TEXT} characters", field="text")
    if len(photo_ids) > MAX_PHOTOS:
        raise InvalidInput(f"最多 {MAX_PHOTOS} 张照片 / At most {MAX_PHOTOS} photos", field="photos")
    facts = await fulfilled_order(db, order_id, actor)
    if (await db.execute(select(Review.id).where(Review.order_id == order_id))).first() is not None:
        raise Conflict("该订单已评价 / This order is already reviewed", reason="already_reviewed")
    photos = await claim_uploads(db, actor, photo_ids, ("review",), make_public=True)
    review = Review(
        order_id=order_id, user_id=actor.user_id, product_id=facts.evidence.product_id,
        batch_id=facts.evidence.batch_id, session_id=facts.evidence.session_id, stars=stars,
        text=text.strip(), photos=[p.id for p in photos],
    )
    db.add(review)
    try:
        await db.flush()
    except IntegrityError:
        raise Conflict("该订单已评价 / This order is already reviewed",
                       reason="already_reviewed") from None
    if review.batch_id is not None:
        # The first review of a batch by this neighbour earns points, once however many orders.
        await points.award(db, actor.user_id, f"first_review:{review.batch_id}:{actor.user_id}",
                           FIRST_REVIEW_POINTS, "首次评价该批次 / first review of a batch",
                           order_id=order_id)
    return review


async def archive(
    db: AsyncSession, *, batch_id: int | None = None, product_id: int | None = None,
    session_id: int | None = None, limit: int = 50, before_id: int | None = None,
) -> dict[str, Any]:
    """Stats over every review of the batch/product/session, plus one page of reviews (newest
    first), each with the host's public reply. The page is both `items`/`next` and, for older
    readers, `reviews`/`next_before_id`."""
    if batch_id is not None:
        where = [Review.batch_id == batch_id]
    elif session_id is not None:
        where = [Review.session_id == session_id]
    else:
        where = [Review.product_id == product_id]
    dist = {str(s): 0 for s in range(1, 6)}
    for stars, count in await db.execute(
        select(Review.stars, func.count(Review.id)).where(*where).group_by(Review.stars)
    ):
        dist[str(stars)] = int(count)
    total = sum(dist.values())
    average = round(sum(int(s) * n for s, n in dist.items()) / total, 2) if total else None
    page_query = select(Review, User.display_name).join(User, User.id == Review.user_id).where(*where)
    if before_id is not None:
        page_query = page_query.where(Review.id < before_id)
    rows = list(await db.execute(page_query.order_by(Review.id.desc()).limit(limit)))
    photo_ids = [pid for review, _name in rows for pid in (review.photos or [])]
    names = {}
    if photo_ids:
        names = {u.id: u.name for u in (await db.execute(
            select(Upload).where(Upload.id.in_(photo_ids))
        )).scalars()}
    replies = await replies_for(db, [review.id for review, _name in rows])
    owners = {pid: owner for pid, owner in await db.execute(
        select(Product.id, Product.owner_id).where(
            Product.id.in_({review.product_id for review, _n in rows})))}
    badges: dict[tuple[int, int], str] = {}
    for owner in set(owners.values()):
        found = await badges_for(db, [review.user_id for review, _n in rows], owner)
        badges |= {(owner, user): badge for user, badge in found.items()}
    reviews = [
        {
            "id": review.id, "stars": review.stars, "text": review.text,
            "buyer": mask_name(name), "verified_purchase": True, "order_id": review.order_id,
            "badge": badges.get((owners.get(review.product_id, 0), review.user_id)),
            "product_id": review.product_id, "batch_id": review.batch_id,
            "session_id": review.session_id,
            "photos": [f"/api/uploads/{names[p]}" for p in (review.photos or []) if p in names],
            "created_at": iso(review.created_at),
            "reply": replies[review.id].public_dict() if review.id in replies else None,
        }
        for review, name in rows
    ]
    after = reviews[-1]["id"] if len(reviews) == limit else None
    return {"count": total, "average": average, "distribution": dist, "reviews": reviews,
            "next_before_id": after, "items": reviews,
            "next": str(after) if after is not None else None}


def mask_name(name: str) -> str:
    """Neighbours see "李**" rather than a full name: verified, but not exposed."""
    return (name[:1] + "**") if name else "**"
