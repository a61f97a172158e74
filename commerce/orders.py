"""Orders in SQL: written once per Redis confirmation, then moved through their states.

held (in Redis) → paid → ready_for_pickup → picked_up | delivered → completed; a hold that is
never paid ends expired (in Redis, no SQL row); paid or ready orders may be cancelled or
refunded. Every transition is a row with its time and actor.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.orm.attributes import set_committed_value

from commerce import pickup
from commerce.accounts import Principal, Role
from commerce.base import Base, as_utc, utcnow
from commerce.errors import Forbidden, InvalidState, NotFound

UnitOfWork = Callable[[], AbstractAsyncContextManager[AsyncSession]]


class OrderStatus(enum.StrEnum):
    HELD = "held"
    PAID = "paid"
    READY = "ready_for_pickup"
    PICKED_UP = "picked_up"
    DELIVERED = "delivered"
    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


# Where each state may go next.
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.HELD: frozenset({OrderStatus.PAID, OrderStatus.EXPIRED, OrderStatus.CANCELLED}),
    OrderStatus.PAID: frozenset({OrderStatus.READY, OrderStatus.DELIVERED, OrderStatus.CANCELLED,
                                 OrderStatus.REFUNDED}),
    OrderStatus.READY: frozenset({OrderStatus.PICKED_UP, OrderStatus.CANCELLED, OrderStatus.REFUNDED}),
    OrderStatus.PICKED_UP: frozenset({OrderStatus.COMPLETED}),
    OrderStatus.DELIVERED: frozenset({OrderStatus.COMPLETED}),
    OrderStatus.COMPLETED: frozenset(),
    OrderStatus.EXPIRED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
    OrderStatus.REFUNDED: frozenset(),
}
# Orders that count as sold (Redis `sold` must equal the sum of their quantities).
SOLD_STATES = (OrderStatus.PAID, OrderStatus.READY, OrderStatus.PICKED_UP, OrderStatus.DELIVERED,
               OrderStatus.COMPLETED)
# Refunding these returns the units to stock (the goods never left the farm).
BEFORE_PICKUP = (OrderStatus.PAID, OrderStatus.READY)


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The Redis hold this order confirms: unique, so writing a confirmation twice is harmless.
    hold_id: Mapped[str] = mapped_column(String(40), unique=True)
    sale_id: Mapped[int] = mapped_column(ForeignKey("sales.id"), index=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("live_sessions.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    qty: Mapped[int] = mapped_column()
    # Money is BIGINT: price (up to 10^8 fen) × qty (up to 1000) passes 32 bits.
    unit_price_fen: Mapped[int] = mapped_column(BigInteger)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    refunded_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    community_id: Mapped[int | None] = mapped_column(ForeignKey("communities.id"), nullable=True)
    paid_rank: Mapped[int] = mapped_column()
    gift: Mapped[bool] = mapped_column(default=False)
    payment_ref: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(24), index=True)
    pickup_point_id: Mapped[int | None] = mapped_column(ForeignKey("pickup_points.id"), nullable=True)
    pickup_code: Mapped[str | None] = mapped_column(String(12), nullable=True)
    paid_at: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def public_dict(self, with_code: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id, "hold_id": self.hold_id, "sale_id": self.sale_id,
            "session_id": self.session_id, "user_id": self.user_id, "qty": self.qty,
            "unit_price_fen": self.unit_price_fen, "amount_fen": self.amount_fen,
            "refunded_fen": self.refunded_fen, "community_id": self.community_id,
            "paid_rank": self.paid_rank, "gift": self.gift, "status": self.status,
            "pickup_point_id": self.pickup_point_id, "paid_at": as_utc(self.paid_at).isoformat(),
        }
        if with_code:
            data["pickup_code"] = self.pickup_code
        return data


class OrderTransition(Base):
    __tablename__ = "order_transitions"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    from_status: Mapped[str] = mapped_column(String(24))
    to_status: Mapped[str] = mapped_column(String(24))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    note: Mapped[str] = mapped_column(String(200), default="")
    at: Mapped[datetime] = mapped_column(default=utcnow)

    def public_dict(self) -> dict[str, Any]:
        return {"from": self.from_status, "to": self.to_status, "actor_id": self.actor_id,
                "note": self.note, "at": as_utc(self.at).isoformat()}


@dataclass(frozen=True)
class Confirmation:
    """One entry of a sale's confirmation log (written by confirm.lua)."""

    sale_id: int
    session_id: int
    hold_id: str
    buyer: int
    qty: int
    unit_price_fen: int
    community_id: int | None
    payment_ref: str
    paid_rank: int
    gift: bool
    at_ms: int

    @classmethod
    def from_fields(cls, session_id: int, fields: dict[str, str]) -> Confirmation:
        return cls(
            sale_id=int(fields["sale"]), session_id=session_id, hold_id=fields["hold"],
            buyer=int(fields["buyer"]), qty=int(fields["qty"]), unit_price_fen=int(fields["price"]),
            community_id=int(fields["community"]) if fields.get("community") else None,
            payment_ref=fields["ref"], paid_rank=int(fields["rank"]), gift=fields["gift"] == "1",
            at_ms=int(fields["at"]),
        )


async def find_by_hold(db: AsyncSession, hold_id: str) -> Order | None:
    return (await db.execute(select(Order).where(Order.hold_id == hold_id))).scalar_one_or_none()


async def write_confirmation(uow: UnitOfWork, conf: Confirmation,
                             pickup_point_id: int | None = None) -> tuple[Order, bool]:
    """The idempotent writer: the order for this hold, created if missing. Returns (order, created).
    The order goes to `pickup_point_id` when the buyer chose one of her community's points, else
    to the community's default point.

    The pay route and the log consumer (maybe in another worker) may race; the unique hold_id
    makes the loser's insert fail, and it then reads the winner's row.
    """
    async with uow() as db:
        existing = await find_by_hold(db, conf.hold_id)
        if existing is not None:
            return existing, False
    try:
        async with uow() as db:
            point = await pickup.chosen_or_default(db, conf.community_id, pickup_point_id)
            paid_at = datetime.fromtimestamp(conf.at_ms / 1000, UTC)
            order = Order(
                hold_id=conf.hold_id, sale_id=conf.sale_id, session_id=conf.session_id,
                user_id=conf.buyer, qty=conf.qty, unit_price_fen=conf.unit_price_fen,
                amount_fen=conf.unit_price_fen * conf.qty, community_id=conf.community_id,
                paid_rank=conf.paid_rank, gift=conf.gift, payment_ref=conf.payment_ref,
                status=OrderStatus.PAID.value, pickup_point_id=point.id if point else None,
                pickup_code=pickup.new_pickup_code(), paid_at=paid_at,
            )
            db.add(order)
            await db.flush()
            db.add(OrderTransition(order_id=order.id, from_status=OrderStatus.HELD.value,
                                   to_status=OrderStatus.PAID.value, actor_id=conf.buyer,
                                   note=f"payment {conf.payment_ref}"[:200], at=paid_at))
        return order, True
    except IntegrityError:
        async with uow() as db:
            again = await find_by_hold(db, conf.hold_id)
        if again is None:
            raise
        return again, False


async def get_order(db: AsyncSession, order_id: int, fresh: bool = False) -> Order:
    """The order; `fresh` re-reads the row even if this session loaded it before (after a lock)."""
    order = await db.get(Order, order_id, populate_existing=fresh)
    if order is None:
        raise NotFound("订单不存在 / No such order")
    return order


def may_view(order: Order, actor: Principal, session_host_id: int) -> bool:
    """The buyer, assistants and admins; a host only the orders of their own sessions."""
    if actor.user_id == order.user_id or actor.role in (Role.ADMIN, Role.ASSISTANT):
        return True
    return actor.role is Role.HOST and actor.user_id == session_host_id


def ensure_can_view(order: Order, actor: Principal, session_host_id: int) -> None:
    """`Forbidden` unless `may_view`; `session_host_id` is the host of the order's session."""
    if not may_view(order, actor, session_host_id):
        raise Forbidden("这不是你的订单 / Not your order")


def ensure_transition(order: Order, to: OrderStatus) -> None:
    """InvalidState (409) unless the state machine allows order.status → to."""
    current = OrderStatus(order.status)
    if to not in TRANSITIONS[current]:
        raise InvalidState(
            f"订单状态 {current.value} 不能变为 {to.value} / Cannot go from {current.value} to {to.value}",
            status=current.value, wanted=to.value,
        )


async def transition(
    db: AsyncSession, order: Order, to: OrderStatus, actor: Principal | None, note: str = ""
) -> Order:
    """Move an order along the state machine, recording who and when; InvalidState otherwise.

    The move is a conditional UPDATE (`WHERE status = <the status we decided on>`): of two
    requests racing to make the same move (ready twice, the same pickup code confirmed twice,
    a refund against a pickup) exactly one changes the row; the other is refused."""
    ensure_transition(order, to)
    current = OrderStatus(order.status)
    moved = await db.execute(
        update(Order).where(Order.id == order.id, Order.status == current.value)
        .values(status=to.value).execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        fresh = (await db.execute(select(Order.status).where(Order.id == order.id))).scalar_one()
        raise InvalidState(
            f"订单状态已变为 {fresh} / The order is already {fresh}", status=fresh,
            wanted=to.value)
    set_committed_value(order, "status", to.value)
    db.add(OrderTransition(order_id=order.id, from_status=current.value, to_status=to.value,
                           actor_id=actor.user_id if actor else None, note=note[:200]))
    await db.flush()
    return order


async def history(db: AsyncSession, order_id: int) -> list[OrderTransition]:
    rows = await db.execute(
        select(OrderTransition).where(OrderTransition.order_id == order_id).order_by(OrderTransition.id)
    )
    return list(rows.scalars())


async def orders_of_user(db: AsyncSession, user_id: int, limit: int = 100) -> list[Order]:
    rows = await db.execute(
        select(Order).where(Order.user_id == user_id).order_by(Order.id.desc()).limit(limit)
    )
    return list(rows.scalars())


async def orders_of_sale(db: AsyncSession, sale_id: int, community_id: int | None = None) -> list[Order]:
    query = select(Order).where(Order.sale_id == sale_id)
    if community_id is not None:
        query = query.where(Order.community_id == community_id)
    return list((await db.execute(query.order_by(Order.id))).scalars())


async def sold_units(db: AsyncSession, sale_id: int) -> tuple[int, int]:
    """(units, orders) of the sale's orders that count as sold."""
    row = (
        await db.execute(
            select(func.coalesce(func.sum(Order.qty), 0), func.count(Order.id)).where(
                Order.sale_id == sale_id, Order.status.in_([s.value for s in SOLD_STATES])
            )
        )
    ).one()
    return int(row[0]), int(row[1])


def is_staff_for_orders(actor: Principal) -> bool:
    return actor.role in (Role.ADMIN, Role.HOST, Role.ASSISTANT)
