"""Perks and gifts neighbours redeem with trust points (a host's list, each with its stock).

A redemption takes a perk unit (conditional UPDATE `redeemed < stock`) and the points
(`trust.points.spend`, conditional on the balance) in one transaction: both or neither. The
client's Idempotency-Key names the spend, so a retried redemption is answered, not repeated.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.accounts import Principal, Role
from commerce.base import Base, utcnow
from commerce.errors import DomainError, Forbidden, InvalidInput, NotFound
from trust import points

MAX_STOCK = 100_000


class PerkGone(DomainError):
    code = "perk_gone"
    status = 409
    default_message = "该礼品已兑完 / This perk is gone"


class Perk(Base):
    __tablename__ = "point_perks"

    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    cost: Mapped[int] = mapped_column()
    stock: Mapped[int] = mapped_column()
    redeemed: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def public_dict(self) -> dict[str, Any]:
        return {"id": self.id, "host_id": self.host_id, "name": self.name, "cost": self.cost,
                "stock": self.stock, "left": self.stock - self.redeemed}


async def create(db: AsyncSession, actor: Principal, name: str, cost: int, stock: int) -> Perk:
    if actor.role not in (Role.HOST, Role.ADMIN):
        raise Forbidden("只有主播可以设置礼品 / Only hosts offer perks")
    if not 1 <= cost <= points.MAX_AWARD:
        raise InvalidInput(f"cost 须为 1–{points.MAX_AWARD}", field="cost")
    if not 1 <= stock <= MAX_STOCK:
        raise InvalidInput(f"stock 须为 1–{MAX_STOCK}", field="stock")
    perk = Perk(host_id=actor.user_id, name=name.strip(), cost=cost, stock=stock)
    db.add(perk)
    await db.flush()
    return perk


async def listing(db: AsyncSession) -> list[Perk]:
    return list((await db.execute(select(Perk).where(Perk.redeemed < Perk.stock)
                                  .order_by(Perk.id.desc()).limit(100))).scalars())


async def redeem(db: AsyncSession, actor: Principal, perk_id: int, key: str) -> bool:
    """Redeem one unit; False when this key already redeemed it (a retry)."""
    perk = await db.get(Perk, perk_id)
    if perk is None:
        raise NotFound("礼品不存在 / No such perk", perk_id=perk_id)
    spent = await points.spend(db, actor.user_id, f"perk:{perk_id}:{actor.user_id}:{key}",
                               perk.cost, f"兑换 {perk.name}")
    if not spent:
        return False
    taken = await db.execute(update(Perk).where(Perk.id == perk_id, Perk.redeemed < Perk.stock)
                             .values(redeemed=Perk.redeemed + 1)
                             .execution_options(synchronize_session=False))
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        raise PerkGone(perk_id=perk_id)
    return True
