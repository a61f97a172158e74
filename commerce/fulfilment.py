"""After payment: refunds, pickup and delivery steps.

Refunds write SQL first (the status claimed and the refund recorded in one transaction), then
call the payment provider with the refund's idempotency key (commerce/refunds.py), then return
stock in Redis with refund.lua (applied at most once per hold); if the process dies after the
SQL commit, the refund worker finishes the money and `reconcile --repair` re-applies the stock.
"""

from __future__ import annotations

import logging
from typing import Any

from commerce import live_sessions, order_lists, orders, refunds
from commerce.accounts import Principal
from commerce.errors import DomainError, Forbidden, InvalidState
from commerce.event_payloads import OrderRefunded, OrderStatusChanged
from commerce.events import DomainEvent
from commerce.flash_sale.checkout import Checkout
from commerce.locks import lock_row
from commerce.orders import BEFORE_PICKUP, Order, OrderStatus
from commerce.pickup import check_pickup_code
from commerce.refunds import refund_key

log = logging.getLogger(__name__)


async def refund_order(checkout: Checkout, order_id: int, actor: Principal | None, reason: str = "",
                       to: OrderStatus = OrderStatus.REFUNDED) -> Order:
    """Refund (or cancel) a paid order before pickup: money back, units back to stock.

    Claim, call, finish (commerce/refunds.py): under the order's row lock the status moves by a
    conditional UPDATE, in the same transaction that records the refund under the key
    `refund:order:<id>:<status>`, so of N concurrent requests one refunds and the others are
    refused (409); the provider is called after that commit with the key, and a crash in
    between is finished by the refund worker."""
    async with checkout.uow() as db:
        order = await orders.get_order(db, order_id)
        if actor is not None:
            session = await live_sessions.get_session(db, order.session_id)
            live_sessions.ensure_staff_of(session, actor)
        await lock_row(db, Order, order_id)
        order = await orders.get_order(db, order_id, fresh=True)
        if OrderStatus(order.status) not in BEFORE_PICKUP:
            raise InvalidState("只能在取货前退款 / Only orders not yet picked up can be refunded",
                               status=order.status)
        amount = order.amount_fen - order.refunded_fen
        key = refund_key("order", order.id, to.value)
        await orders.transition(db, order, to, actor, f"{reason} refund {amount}fen [{key}]")
        order.refunded_fen = order.amount_fen
        refund = (await refunds.record(db, key, order.payment_ref, amount, reason or to.value,
                                       order.id) if amount > 0 else None)
    if refund is not None:
        await refunds.execute_or_defer(checkout.uow, checkout.payments, refund)
    result = await checkout.store.refund(order.hold_id, order.user_id, order.qty, order.community_id)
    await checkout.publish_stock(order.sale_id, result)
    if order.community_id is not None:
        await checkout.publish_group(order.sale_id, str(order.community_id), result["people"],
                                     result["units"])
    await checkout.bus.publish(DomainEvent("order_refunded", order.session_id, OrderRefunded(
        order_id=order.id, sale_id=order.sale_id, user_id=order.user_id, qty=order.qty,
        community_id=order.community_id, amount_fen=amount,
    )))
    return order


async def advance_order(checkout: Checkout, order_id: int, to: OrderStatus, actor: Principal,
                        pickup_code: str | None = None) -> Order:
    """ready_for_pickup / picked_up / delivered by staff (order_lists.ensure_may_work);
    completed by staff or the buyer."""
    async with checkout.uow() as db:
        order = await orders.get_order(db, order_id)
        if not (to is OrderStatus.COMPLETED and actor.user_id == order.user_id):
            await order_lists.ensure_may_work(db, order, actor)
        if to in (OrderStatus.REFUNDED, OrderStatus.CANCELLED):
            raise Forbidden("请使用退款接口 / Use the refund action")
        orders.ensure_transition(order, to)
        if to is OrderStatus.PICKED_UP:
            check_pickup_code(order.pickup_code, pickup_code or "")
        await orders.transition(db, order, to, actor)
    await checkout.bus.publish(DomainEvent("order_status", order.session_id, OrderStatusChanged(
        order_id=order.id, status=order.status, user_id=order.user_id,
    )))
    return order


MAX_BATCH = 200


async def mark_ready(checkout: Checkout, order_ids: list[int], actor: Principal) -> dict[str, Any]:
    """Mark many orders ready for pickup, each on its own (one refusal stops no other).

    Each order moves by the conditional UPDATE of `orders.transition`, so an order already
    ready (marked by a colleague, or by this same request sent twice) is reported under
    `already`, never moved or announced twice; each order moved publishes its `order_status`
    event, which tells the buyer."""
    ready: list[int] = []
    already: list[int] = []
    refused: list[dict[str, Any]] = []
    for order_id in dict.fromkeys(order_ids):
        try:
            await advance_order(checkout, order_id, OrderStatus.READY, actor)
        except InvalidState as err:
            if err.details.get("status") == OrderStatus.READY.value:
                already.append(order_id)
            else:
                refused.append({"id": order_id, "code": err.code,
                                "status": err.details.get("status")})
        except DomainError as err:
            refused.append({"id": order_id, "code": err.code})
        else:
            ready.append(order_id)
    return {"ready": ready, "already": already, "refused": refused}
