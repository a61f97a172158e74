"""What trust needs from orders: the batch and stream moment behind an order, and pickup times.

commerce/orders.py has no batch or pin on an order, so the evidence is
kept here in `order_evidence`: order → product → batch (as it was when the order was paid) → the
pin that was on screen (or the newest earlier pin of that product in the session). It is written
when an "order_paid" event arrives, and filled lazily for any order that lacks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.accounts import Principal
from commerce.base import Base, as_utc, utcnow
from commerce.catalog import Product, ProductPin
from commerce.errors import Conflict, DomainError, NotFound
from commerce.flash_sale.sales import Sale
from commerce.orders import SOLD_STATES, Order, OrderStatus, OrderTransition
from trust.trace_signing import iso

# Fulfilled = the buyer has the goods: these may review, claim and answer the NPS survey.
FULFILLED = (OrderStatus.PICKED_UP.value, OrderStatus.DELIVERED.value, OrderStatus.COMPLETED.value)


class NotYourOrder(DomainError):
    code = "not_your_order"
    status = 403
    default_message = "这不是你的订单 / Not your order"


class NotFulfilled(DomainError):
    code = "order_not_picked_up"
    status = 409
    default_message = "订单尚未取货 / The order has not been picked up yet"


class OrderEvidence(Base):
    """The batch and stream moment of an order."""

    __tablename__ = "order_evidence"

    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), primary_key=True,
                                          autoincrement=False)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"), nullable=True, index=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("live_sessions.id"), index=True)
    pin_id: Mapped[int | None] = mapped_column(ForeignKey("product_pins.id"), nullable=True)
    pinned_at: Mapped[datetime | None] = mapped_column(nullable=True)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)

    def public_dict(self) -> dict[str, Any]:
        return {"order_id": self.order_id, "product_id": self.product_id,
                "batch_id": self.batch_id, "session_id": self.session_id, "pin_id": self.pin_id,
                "pinned_at": iso(self.pinned_at)}


@dataclass(frozen=True)
class OrderFacts:
    order: Order
    evidence: OrderEvidence
    picked_up_at: datetime | None


async def buyer_order(db: AsyncSession, order_id: int, actor: Principal) -> Order:
    """The actor's own order; someone else's is refused with `not_your_order`."""
    order = await db.get(Order, order_id)
    if order is None:
        raise NotFound("订单不存在 / No such order", order_id=order_id)
    if order.user_id != actor.user_id:
        raise NotYourOrder(order_id=order_id)
    return order


async def evidence_for(db: AsyncSession, order: Order) -> OrderEvidence:
    """The stored evidence row, created from the sale's product and the session's pins if missing."""
    found = await db.get(OrderEvidence, order.id)
    if found is not None:
        return found
    sale = await db.get(Sale, order.sale_id)
    if sale is None:
        raise NotFound("销售不存在 / No such sale")
    product = await db.get(Product, sale.product_id)
    paid_at = as_utc(order.paid_at)
    pins = (await db.execute(
        select(ProductPin).where(ProductPin.session_id == order.session_id,
                                 ProductPin.product_id == sale.product_id)
        .order_by(ProductPin.pinned_at)
    )).scalars()
    pin: ProductPin | None = None
    for candidate in pins:
        # The pin on screen at payment time, else the newest one before it.
        if as_utc(candidate.pinned_at) <= paid_at:
            pin = candidate
    values = {
        "order_id": order.id, "product_id": sale.product_id,
        "batch_id": (pin.batch_id if pin is not None and pin.batch_id else
                     product.batch_id if product is not None else None),
        "session_id": order.session_id, "pin_id": pin.id if pin else None,
        "pinned_at": pin.pinned_at if pin else None, "recorded_at": utcnow(),
    }
    # Written at most once however many requests (a review, a claim, the order_paid subscriber)
    # arrive for the same order at the same moment: the first insert wins, the rest read it.
    insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
    await db.execute(insert(OrderEvidence).values(**values).on_conflict_do_nothing(
        index_elements=["order_id"]))
    evidence = await db.get(OrderEvidence, order.id)
    if evidence is None:
        raise Conflict("订单证据并发写入,请重试 / Concurrent write, retry")
    return evidence


async def picked_up_at(db: AsyncSession, order_id: int) -> datetime | None:
    """When the order reached picked_up/delivered (from the order's transition history)."""
    at = (await db.execute(
        select(func.min(OrderTransition.at)).where(
            OrderTransition.order_id == order_id,
            OrderTransition.to_status.in_([OrderStatus.PICKED_UP.value, OrderStatus.DELIVERED.value]),
        )
    )).scalar_one_or_none()
    return as_utc(at) if at is not None else None


async def fulfilled_order(db: AsyncSession, order_id: int, actor: Principal) -> OrderFacts:
    """The actor's picked-up order with its evidence; the common gate of reviews, claims and NPS."""
    order = await buyer_order(db, order_id, actor)
    if order.status not in FULFILLED:
        raise NotFulfilled(order_id=order_id, status=order.status)
    evidence = await evidence_for(db, order)
    return OrderFacts(order, evidence, await picked_up_at(db, order.id))


async def units_sold_by_product(db: AsyncSession, product_ids: list[int]) -> dict[int, int]:
    if not product_ids:
        return {}
    rows = await db.execute(
        select(Sale.product_id, func.coalesce(func.sum(Order.qty), 0))
        .join(Order, Order.sale_id == Sale.id)
        .where(Sale.product_id.in_(product_ids),
               Order.status.in_([s.value for s in SOLD_STATES]))
        .group_by(Sale.product_id)
    )
    return {int(pid): int(qty) for pid, qty in rows}
