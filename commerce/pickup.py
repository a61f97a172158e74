"""Pickup points per community (自提点) and the code a buyer shows when collecting."""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.accounts import Community
from commerce.base import Base, utcnow
from commerce.errors import Forbidden, NotFound

PICKUP_CODE_DIGITS = 6


class PickupPoint(Base):
    __tablename__ = "pickup_points"

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    address: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def public_dict(self) -> dict[str, Any]:
        return {"id": self.id, "community_id": self.community_id, "name": self.name,
                "address": self.address}


def new_pickup_code() -> str:
    """Six digits, read aloud at the pickup point; unguessable enough with per-order scope."""
    return f"{secrets.randbelow(10 ** PICKUP_CODE_DIGITS):0{PICKUP_CODE_DIGITS}d}"


def check_pickup_code(expected: str | None, given: str) -> None:
    if expected is None or not hmac.compare_digest(expected.encode(), given.strip().encode()):
        raise Forbidden("取货码不正确 / Wrong pickup code", reason="bad_pickup_code")


async def add_pickup_point(db: AsyncSession, community_id: int, name: str, address: str = "") -> PickupPoint:
    if await db.get(Community, community_id) is None:
        raise NotFound("小区不存在 / No such community")
    point = PickupPoint(community_id=community_id, name=name, address=address)
    db.add(point)
    await db.flush()
    return point


async def pickup_point_for(db: AsyncSession, community_id: int | None) -> PickupPoint | None:
    """The community's first pickup point, if it has one."""
    if community_id is None:
        return None
    return (
        await db.execute(
            select(PickupPoint).where(PickupPoint.community_id == community_id)
            .order_by(PickupPoint.id).limit(1)
        )
    ).scalar_one_or_none()


async def pickup_points(db: AsyncSession, community_id: int) -> list[PickupPoint]:
    rows = await db.execute(select(PickupPoint).where(PickupPoint.community_id == community_id))
    return list(rows.scalars())
