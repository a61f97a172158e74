"""A scheduled session's preview (直播预告): cover, time, text, the products to be shown."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from commerce import notifications
from commerce.accounts import Principal
from commerce.catalog import Product, ensure_product_owner
from commerce.errors import InvalidState, NotFound
from commerce.live_sessions import LiveSession, SessionStatus, ensure_owner, get_session

MAX_PREVIEW_PRODUCTS = 20
COVER_TYPES = ("image/jpeg", "image/png", "image/webp")


async def editable_session(db: AsyncSession, session_id: int, actor: Principal) -> LiveSession:
    """The session, if `actor` may change its preview (its host or an admin, before it ended)."""
    session = await get_session(db, session_id)
    ensure_owner(session, actor)
    if session.status == SessionStatus.ENDED.value:
        raise InvalidState("直播已结束 / The session has ended")
    return session


async def set_preview(
    db: AsyncSession, session_id: int, actor: Principal, *, cover: tuple[int, str] | None = None,
    title: str | None = None, preview_text: str | None = None, scheduled_at: datetime | None = None,
    product_ids: list[int] | None = None,
) -> LiveSession:
    """The host's (or an admin's) preview of their own session; None leaves a field as it is.
    `cover` is (upload id, URL) of an image the caller has already claimed as this cover."""
    session = await editable_session(db, session_id, actor)
    if cover is not None:
        session.cover_upload_id, session.cover_url = cover
    if title is not None:
        session.title = title
    if preview_text is not None:
        session.preview_text = preview_text
    if scheduled_at is not None:
        session.scheduled_at = scheduled_at
    if product_ids is not None:
        wanted = list(dict.fromkeys(product_ids))
        for product_id in wanted:
            product = await db.get(Product, product_id)
            if product is None:
                raise NotFound("商品不存在 / No such product", product_id=product_id)
            ensure_product_owner(product, actor)
        session.preview_product_ids = wanted
    await db.flush()
    return session


async def preview(db: AsyncSession, session_id: int, viewer: Principal | None) -> dict[str, Any]:
    """What the preview page shows: the session, its products, 预约 count and the viewer's 预约."""
    session = await get_session(db, session_id)
    ids = list(session.preview_product_ids or [])
    products: list[dict[str, Any]] = []
    if ids:
        found = {p.id: p for p in (await db.execute(select(Product).where(Product.id.in_(ids)))).scalars()}
        products = [found[i].public_dict() for i in ids if i in found]
    data = session.public_dict()
    data["products"] = products
    data["subscribers"] = await notifications.subscriber_count(db, session_id)
    data["subscribed"] = (viewer is not None
                          and await notifications.is_subscribed(db, session_id, viewer.user_id))
    return data
