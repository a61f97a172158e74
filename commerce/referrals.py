"""Referrals: a neighbour's share code, where each buyer arrived from, and the one attribution.

- Every signed-in user has one stable share code (`referral_codes`), an opaque random token, so
  a link never shows a user id. Links carry it as `?ref=<code>`.
- An *arrival* (`referral_arrivals`, one per buyer, the first link wins) is stored when a
  neighbour signs up or accepts an invite with a ref, or when a signed-in neighbour's page hands
  the ref it kept in localStorage. A neighbour who already has an order is no new buyer: her
  arrival is refused (`not_new`). Following one's own link is refused (`self`).
- The *attribution* (`referral_attributions`, unique per buyer and per order) gives the buyer's
  first order to the referrer: only when it is her first purchase in the shop (no paid order
  with a smaller id; a zero-price order, such as a trial sample, is no purchase), and only one
  per buyer however many orders are written at once (the unique constraint decides).

When an attributed order is picked up, `referred_pickup_hooks` run once, in the transaction
that records it (the conditional UPDATE of `picked_up_at`): trust points for the referral are
awarded there.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.base import Base, utcnow
from commerce.orders import Order

CODE_PATTERN = r"^[A-Za-z0-9_-]{8,16}$"
_CODE = re.compile(CODE_PATTERN)
ARRIVAL_VIA = ("signup", "invite", "link")


class ReferralCode(Base):
    __tablename__ = "referral_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReferralArrival(Base):
    """Which referrer's link brought this buyer (the first one she followed)."""

    __tablename__ = "referral_arrivals"

    id: Mapped[int] = mapped_column(primary_key=True)
    buyer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    referrer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    via: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReferralAttribution(Base):
    """The buyer's first order, credited to her referrer: one per buyer, one per order."""

    __tablename__ = "referral_attributions"

    id: Mapped[int] = mapped_column(primary_key=True)
    buyer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), unique=True)
    referrer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    attributed_at: Mapped[datetime] = mapped_column(default=utcnow)
    picked_up_at: Mapped[datetime | None] = mapped_column(nullable=True)


# Run once when an attributed order is first seen picked up (trust points for the referrer).
ReferredPickupHook = Callable[[AsyncSession, ReferralAttribution], Awaitable[None]]
referred_pickup_hooks: list[ReferredPickupHook] = []


def on_referred_pickup(hook: ReferredPickupHook) -> None:
    """Register a hook once per process, however many apps (tests build hundreds) set it up."""
    if hook not in referred_pickup_hooks:
        referred_pickup_hooks.append(hook)


def _insert(db: AsyncSession) -> Any:
    return postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert


def valid_code(code: str) -> bool:
    return bool(_CODE.match(code))


async def code_for(db: AsyncSession, user_id: int) -> str:
    """The user's share code, made on first use; the same one ever after (racing first uses
    insert one row: the unique user_id keeps the other insert out)."""
    found = (await db.execute(select(ReferralCode.code).where(ReferralCode.user_id == user_id))
             ).scalar_one_or_none()
    if found is not None:
        return found
    await db.execute(_insert(db)(ReferralCode).values(
        user_id=user_id, code=secrets.token_urlsafe(9), created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["user_id"]))
    return (await db.execute(select(ReferralCode.code).where(ReferralCode.user_id == user_id))
            ).scalar_one()


async def referrer_of_code(db: AsyncSession, code: str) -> int | None:
    if not valid_code(code):
        return None
    return (await db.execute(select(ReferralCode.user_id).where(ReferralCode.code == code))
            ).scalar_one_or_none()


async def has_orders(db: AsyncSession, user_id: int) -> bool:
    found = await db.execute(select(Order.id).where(Order.user_id == user_id, Order.amount_fen > 0)
                             .limit(1))
    return found.first() is not None


async def record_arrival(db: AsyncSession, buyer_id: int, code: str, via: str) -> str:
    """Keep where `buyer_id` came from. Answers `recorded`, `already` (an earlier link stands),
    `self`, `not_new` (she has bought before) or `unknown_code`."""
    referrer = await referrer_of_code(db, code)
    if referrer is None:
        return "unknown_code"
    if referrer == buyer_id:
        return "self"
    if await has_orders(db, buyer_id):
        return "not_new"
    made = await db.execute(_insert(db)(ReferralArrival).values(
        buyer_id=buyer_id, referrer_id=referrer, via=via, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["buyer_id"]))
    return "recorded" if made.rowcount == 1 else "already"  # type: ignore[attr-defined]


async def attribute(db: AsyncSession, order: Order) -> ReferralAttribution | None:
    """Credit `order` to the buyer's referrer when it is her first order; the attribution of
    this order, or None. Safe to run any number of times, concurrently."""
    if order.amount_fen <= 0:
        return None  # a free sample is no purchase
    arrival = (await db.execute(select(ReferralArrival).where(
        ReferralArrival.buyer_id == order.user_id))).scalar_one_or_none()
    if arrival is None or arrival.referrer_id == order.user_id:
        return None
    earlier = await db.execute(select(Order.id).where(
        Order.user_id == order.user_id, Order.id < order.id, Order.amount_fen > 0).limit(1))
    if earlier.first() is None:
        await db.execute(_insert(db)(ReferralAttribution).values(
            buyer_id=order.user_id, order_id=order.id, referrer_id=arrival.referrer_id,
            attributed_at=utcnow()).on_conflict_do_nothing())
    return await attribution_of_order(db, order.id)


async def attribution_of_order(db: AsyncSession, order_id: int) -> ReferralAttribution | None:
    return (await db.execute(select(ReferralAttribution).where(
        ReferralAttribution.order_id == order_id))).scalar_one_or_none()


async def note_pickup(db: AsyncSession, order_id: int) -> bool:
    """Record that the attributed order was picked up; the hooks run for the one caller that
    records it (a conditional UPDATE), so a repeated event awards nothing twice."""
    moved = await db.execute(
        update(ReferralAttribution).where(ReferralAttribution.order_id == order_id,
                                          ReferralAttribution.picked_up_at.is_(None))
        .values(picked_up_at=utcnow()).execution_options(synchronize_session=False))
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        return False
    row = await attribution_of_order(db, order_id)
    if row is not None:
        for hook in referred_pickup_hooks:
            await hook(db, row)
    return True


async def referred_by(db: AsyncSession, referrer_id: int, limit: int = 200
                      ) -> list[tuple[ReferralArrival, ReferralAttribution | None]]:
    """The buyers who arrived through this referrer's links, newest first, with their
    attribution when they bought."""
    rows = await db.execute(
        select(ReferralArrival, ReferralAttribution)
        .outerjoin(ReferralAttribution, ReferralAttribution.buyer_id == ReferralArrival.buyer_id)
        .where(ReferralArrival.referrer_id == referrer_id)
        .order_by(ReferralArrival.id.desc()).limit(limit))
    return [(arrival, attribution) for arrival, attribution in rows.all()]


def mask_name(name: str) -> str:
    """A neighbour's name as another neighbour sees it on a list: first character, then **."""
    name = name.strip()
    return (name[:1] + "**") if name else "**"
