"""Pickup points per community (自提点) and the code a buyer shows when collecting.

A community's pickup points are its manager's (the host who created it, or an admin): a new
order goes to the community's *default* point, so whoever could add one could send neighbours'
orders to an address of their choosing. One default per community is held by a partial unique
index; the first point added becomes it, and the manager may move it (`update_pickup_point`).
"""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, exists, false, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.accounts import Community, Principal, ensure_community_manager
from commerce.base import Base, utcnow
from commerce.errors import Conflict, Forbidden, NotFound

PICKUP_CODE_DIGITS = 6


class PickupPoint(Base):
    __tablename__ = "pickup_points"
    __table_args__ = (
        Index("uq_pickup_points_default", "community_id", unique=True,
              sqlite_where=text("is_default"), postgresql_where=text("is_default")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    address: Mapped[str] = mapped_column(String(200), default="")
    # Free text as the point's manager writes it ("每天 9:00–20:00"), shown to buyers.
    hours: Mapped[str] = mapped_column(String(80), default="", server_default="")
    is_default: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def public_dict(self) -> dict[str, Any]:
        return {"id": self.id, "community_id": self.community_id, "name": self.name,
                "address": self.address, "hours": self.hours, "default": self.is_default}


def new_pickup_code() -> str:
    """Six digits, read aloud at the pickup point; unguessable enough with per-order scope."""
    return f"{secrets.randbelow(10 ** PICKUP_CODE_DIGITS):0{PICKUP_CODE_DIGITS}d}"


def pickup_qr_text(order_id: int, code: str) -> str:
    """What the buyer's QR holds: the order as well as its code, so a scan at the pickup point
    finds the order without a search (upper case and digits: QR's compact alphanumeric mode)."""
    return f"LINLI-PICKUP:{order_id}:{code}"


def check_pickup_code(expected: str | None, given: str) -> None:
    if expected is None or not hmac.compare_digest(expected.encode(), given.strip().encode()):
        raise Forbidden("取货码不正确 / Wrong pickup code", reason="bad_pickup_code")


async def _managed_community(db: AsyncSession, community_id: int, actor: Principal) -> Community:
    community = await db.get(Community, community_id)
    if community is None:
        raise NotFound("小区不存在 / No such community")
    ensure_community_manager(community, actor)
    return community


async def add_pickup_point(db: AsyncSession, community_id: int, actor: Principal, name: str,
                           address: str = "", hours: str = "") -> PickupPoint:
    """Add a point (the community's manager only); the community's first becomes its default."""
    await _managed_community(db, community_id, actor)
    has_default = (await db.execute(select(exists().where(
        PickupPoint.community_id == community_id, PickupPoint.is_default.is_(True))))).scalar()
    point = PickupPoint(community_id=community_id, name=name, address=address, hours=hours,
                        is_default=not has_default, created_by=actor.user_id)
    try:
        async with db.begin_nested():
            db.add(point)
    except IntegrityError:
        # Another first point won the race for the default (the unique index said so).
        point = PickupPoint(community_id=community_id, name=name, address=address, hours=hours,
                            is_default=False, created_by=actor.user_id)
        db.add(point)
        await db.flush()
    return point


async def update_pickup_point(db: AsyncSession, point_id: int, actor: Principal, *,
                              name: str | None = None, address: str | None = None,
                              hours: str | None = None, make_default: bool = False) -> PickupPoint:
    """Rename, readdress or make the default (the community's manager only)."""
    point = await db.get(PickupPoint, point_id)
    if point is None:
        raise NotFound("自提点不存在 / No such pickup point")
    await _managed_community(db, point.community_id, actor)
    if name is not None:
        point.name = name
    if address is not None:
        point.address = address
    if hours is not None:
        point.hours = hours
    if make_default and not point.is_default:
        await db.execute(update(PickupPoint).where(
            PickupPoint.community_id == point.community_id, PickupPoint.is_default.is_(True),
            PickupPoint.id != point.id).values(is_default=False))
        point.is_default = True
    try:
        await db.flush()
    except IntegrityError:
        raise Conflict("默认自提点正被同时修改,请重试 / The default point changed meanwhile, "
                       "try again") from None
    return point


async def pickup_point_for(db: AsyncSession, community_id: int | None) -> PickupPoint | None:
    """Where a new order of this community goes: its default point, if it has one."""
    if community_id is None:
        return None
    return (
        await db.execute(
            select(PickupPoint).where(PickupPoint.community_id == community_id,
                                      PickupPoint.is_default.is_(True))
        )
    ).scalar_one_or_none()


async def chosen_or_default(db: AsyncSession, community_id: int | None,
                            chosen_id: int | None) -> PickupPoint | None:
    """The point a buyer chose when it is her community's (checked again here: the choice was
    checked at payment, and a point cannot move, but an order must never go elsewhere), else the
    community's default."""
    if chosen_id is not None and community_id is not None:
        point = await db.get(PickupPoint, chosen_id)
        if point is not None and point.community_id == community_id:
            return point
    return await pickup_point_for(db, community_id)


async def pickup_points(db: AsyncSession, community_id: int) -> list[PickupPoint]:
    rows = await db.execute(select(PickupPoint).where(PickupPoint.community_id == community_id)
                            .order_by(PickupPoint.is_default.desc(), PickupPoint.id))
    return list(rows.scalars())
