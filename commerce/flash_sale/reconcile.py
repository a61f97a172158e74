"""Prove the books balance, and repair SQL from the log when they don't.

For each sale: initial = remaining + held + sold (Redis alone), held = units of live holds,
sold = units of orders in SQL that count as sold, and every confirmation in the log has its
order. `repair` writes missing orders from the log and re-applies refunds SQL recorded but
Redis missed (refund.lua is once-per-hold, so re-applying is safe).

Redis is read in one atomic step (snapshot.lua). SQL lags the log by design while a sale runs:
a confirmation the consumer has not written yet shows as a missing order (and as sql_drift)
until it is written, so a report taken mid-sale names exactly the orders still in flight.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select

from commerce import orders
from commerce.flash_sale import sales
from commerce.flash_sale.checkout import Checkout
from commerce.flash_sale.order_log import read_log
from commerce.orders import Confirmation, Order, OrderStatus


@dataclass
class SaleReport:
    sale_id: int
    initial: int
    remaining: int
    held: int
    sold: int
    live_hold_units: int
    sql_sold: int
    sql_orders: int
    log_entries: int
    missing_orders: list[str] = field(default_factory=list)
    missing_refunds: list[str] = field(default_factory=list)
    repaired: int = 0
    in_redis: bool = True
    buckets: int = 1
    # A bucketed sale: buckets whose own books do not balance (-1: their shares do not add up
    # to the stock), and buyers whose counted units differ from their holds and payments.
    unbalanced_buckets: list[int] = field(default_factory=list)
    buyer_drift: list[int] = field(default_factory=list)

    @property
    def stock_drift(self) -> int:
        return self.initial - (self.remaining + self.held + self.sold)

    @property
    def sql_drift(self) -> int:
        return self.sold - self.sql_sold

    @property
    def ok(self) -> bool:
        return (self.in_redis and self.stock_drift == 0 and self.sql_drift == 0
                and self.held == self.live_hold_units and not self.missing_orders
                and not self.missing_refunds and not self.unbalanced_buckets
                and not self.buyer_drift)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(stock_drift=self.stock_drift, sql_drift=self.sql_drift, ok=self.ok)
        return data


async def reconcile_sale(checkout: Checkout, sale_id: int, repair: bool = False) -> SaleReport:
    async with checkout.uow() as db:
        sale = await sales.get_sale(db, sale_id)
    buyer_drift: list[int] = []
    bucketed = await checkout.store.bucket_count(sale_id) > 1
    if bucketed:
        # Payments and reservations a dead worker left half done are finished first (each step
        # is once-only, so running beside a live request is safe).
        await checkout.store.finish_payments(sale_id, older_than_ms=0 if repair else None)
        books = await checkout.store.buckets.reconcile(sale_id, rank_payments=False)
        buyer_drift = sorted(books.buyer_drift)
    snap = await checkout.store.snapshot(sale_id)
    entries = await read_log(checkout, sale_id)
    async with checkout.uow() as db:
        rows = (await db.execute(select(Order).where(Order.sale_id == sale_id))).scalars()
        by_hold = {order.hold_id: order for order in rows}
    missing = [e["hold"] for e in entries if e["hold"] not in by_hold]
    refunded_in_redis = await checkout.store.refunded_holds(sale_id)
    unrefunded = [o for o in by_hold.values()
                  if o.status in (OrderStatus.REFUNDED.value, OrderStatus.CANCELLED.value)
                  and o.hold_id not in refunded_in_redis]
    repaired = 0
    if repair:
        for entry in entries:
            if entry["hold"] in missing:
                await checkout.record(Confirmation.from_fields(sale.session_id, entry))
                repaired += 1
        for order in unrefunded:
            await checkout.store.refund(order.hold_id, order.user_id, order.qty, order.community_id)
            repaired += 1
        if repaired:
            report = await reconcile_sale(checkout, sale_id, repair=False)
            report.repaired = repaired
            return report
    async with checkout.uow() as db:
        sql_sold, sql_orders = await orders.sold_units(db, sale_id)
    snap = snap or {}
    report = SaleReport(
        sale_id=sale_id, initial=int(snap.get("initial", sale.stock)),
        remaining=int(snap.get("remaining", 0)), held=int(snap.get("held", 0)),
        sold=int(snap.get("sold", 0)), live_hold_units=int(snap.get("hold_units", 0)),
        sql_sold=sql_sold, sql_orders=sql_orders, log_entries=len(entries),
        missing_orders=missing, missing_refunds=[o.hold_id for o in unrefunded],
        repaired=repaired, in_redis=bool(snap), buckets=sale.buckets or 1,
        unbalanced_buckets=list(snap.get("unbalanced_buckets", [])), buyer_drift=buyer_drift,
    )
    return report


async def reconcile_all(checkout: Checkout, sale_id: int | None = None,
                        repair: bool = False) -> list[SaleReport]:
    if sale_id is not None:
        return [await reconcile_sale(checkout, sale_id, repair)]
    async with checkout.uow() as db:
        ids = list((await db.execute(select(sales.Sale.id).order_by(sales.Sale.id))).scalars())
    return [await reconcile_sale(checkout, sid, repair) for sid in ids]
