"""A community's join requests and members, worked by its managers (its host, an admin, or its
团长: `accounts.may_manage_community`).

Deciding a request is one conditional UPDATE (`WHERE status = 'pending'`): of two managers (or
one double tap) approving at once, one changes the row and the other is told it was decided
already. A rejected request stays as a row, so asking again does not put it back in the queue.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from commerce.accounts import Community, Membership, Principal, User, worked_community
from commerce.base import as_utc
from commerce.errors import InvalidState, NotFound
from commerce.flash_sale.checkout import Checkout
from commerce.flash_sale.sales import Sale, SaleStatus
from commerce.interest_tags import TAGS, UserTag, set_tags

PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"
MAX_PAGE = 100
MAX_QUERY = 64


async def managed(db: AsyncSession, community_id: int, actor: Principal) -> Community:
    return await worked_community(db, community_id, actor)


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def listing(db: AsyncSession, community_id: int, status: str, query: str = "",
                  after: int | None = None, limit: int = MAX_PAGE) -> tuple[list[dict[str, Any]],
                                                                           int | None]:
    """Memberships of one status, oldest first (the queue order), with names; keyset on id."""
    limit = max(1, min(limit, MAX_PAGE))
    stmt = (select(Membership, User.username, User.display_name)
            .join(User, User.id == Membership.user_id)
            .where(Membership.community_id == community_id, Membership.status == status))
    if query:
        pattern = _like(query[:MAX_QUERY].lower())
        stmt = stmt.where(or_(User.username.ilike(pattern, escape="\\"),
                              User.display_name.ilike(pattern, escape="\\")))
    if after is not None:
        stmt = stmt.where(Membership.id > after)
    rows = (await db.execute(stmt.order_by(Membership.id).limit(limit + 1))).all()
    items = [_item(m, username, name) for m, username, name in rows[:limit]]
    tags: dict[int, set[str]] = {}
    for user_id, tag in await db.execute(select(UserTag.user_id, UserTag.tag).where(
            UserTag.user_id.in_([item["user_id"] for item in items]))):
        tags.setdefault(user_id, set()).add(tag)
    for item in items:
        item["tags"] = [tag for tag in TAGS if tag in tags.get(item["user_id"], ())]
    return items, rows[limit - 1][0].id if len(rows) > limit else None


async def tag_member(db: AsyncSession, community_id: int, user_id: int, actor: Principal,
                     tags: list[str]) -> list[str]:
    """Set an approved member's interest tags (her own profile's, as she would on /me)."""
    await managed(db, community_id, actor)
    found = (await db.execute(select(Membership.id).where(
        Membership.community_id == community_id, Membership.user_id == user_id,
        Membership.status == APPROVED))).first()
    if found is None:
        raise NotFound("不是这个小区的成员 / Not a member of this community")
    return await set_tags(db, user_id, tags)


def _item(m: Membership, username: str, display_name: str) -> dict[str, Any]:
    created: datetime = m.created_at
    return {"user_id": m.user_id, "username": username, "display_name": display_name,
            "status": m.status, "requested_at": as_utc(created).isoformat(),
            "community_id": m.community_id}


async def _refuse(db: AsyncSession, community_id: int, user_id: int, wanted: str) -> None:
    current = (await db.execute(select(Membership.status).where(
        Membership.community_id == community_id, Membership.user_id == user_id))).scalar()
    if current is None:
        raise NotFound("没有这条申请或成员 / No such request or member")
    raise InvalidState(f"已是 {current} / Already {current}", status=current, wanted=wanted)


async def decide(db: AsyncSession, community_id: int, user_id: int, actor: Principal,
                 approve: bool) -> str:
    """Approve or reject a pending request, once; InvalidState when it was decided already."""
    await managed(db, community_id, actor)
    to = APPROVED if approve else REJECTED
    moved = await db.execute(
        update(Membership).where(Membership.community_id == community_id,
                                 Membership.user_id == user_id, Membership.status == PENDING)
        .values(status=to, approved_by=actor.user_id if approve else None)
        .execution_options(synchronize_session=False))
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        await _refuse(db, community_id, user_id, to)
    return to


async def remove(db: AsyncSession, community_id: int, user_id: int, actor: Principal) -> None:
    """Take an approved member out (then `resync_open_sales`, after the commit)."""
    await managed(db, community_id, actor)
    gone = await db.execute(
        delete(Membership).where(Membership.community_id == community_id,
                                 Membership.user_id == user_id, Membership.status == APPROVED)
        .execution_options(synchronize_session=False))
    if gone.rowcount != 1:  # type: ignore[attr-defined]
        await _refuse(db, community_id, user_id, "removed")


async def resync_open_sales(checkout: Checkout, community_id: int, user_id: int) -> int:
    """Make every open sale of this community see the user's memberships as SQL has them now.

    An open sale holds its members in Redis (loaded at opening, added on a not-member retry);
    without this a removed member would keep the community price until the sale closed. The
    value written is recomputed from SQL, so this and a concurrent add converge on the truth.
    Returns how many sales were touched."""
    async with checkout.uow() as db:
        sales = [sale for sale in (await db.execute(
            select(Sale).where(Sale.status == SaleStatus.OPEN.value))).scalars()
            if community_id in (sale.community_ids or [])]
        mine = set((await db.execute(select(Membership.community_id).where(
            Membership.user_id == user_id, Membership.status == APPROVED))).scalars())
    for sale in sales:
        ordered = [cid for cid in sale.community_ids if cid in mine]
        if ordered:
            await checkout.store.add_member(sale.id, user_id, ordered)
        else:
            await checkout.store.remove_member(sale.id, user_id)
    return len(sales)
