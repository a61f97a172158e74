"""Order lists for pickup day and for the buyer, and who may work an order.

Staff see orders within their tenancy: an admin or an assistant every order (assistants work the
whole shop's fulfilment and claims queue, as for single orders), a host the orders of the
sessions he runs and of the communities he manages (a 团长 at his pickup point sees his
neighbours' orders whichever session sold them). A 团长 (any role) sees the orders of the
communities he leads when he asks for one of them by `community_id`, and works them. Anyone
else sees her own orders only.

Pages are keyset-paginated on the order id, newest first: the cursor is the last id of a page,
so a page is an index range scan however deep, and orders paid meanwhile do not shift it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from commerce.accounts import (
    Community,
    Principal,
    Role,
    User,
    led_by,
    managed_scope,
    may_manage_community,
)
from commerce.base import as_utc
from commerce.catalog import Product
from commerce.errors import Forbidden, InvalidInput
from commerce.flash_sale.sales import Sale
from commerce.live_sessions import LiveSession
from commerce.orders import Order, OrderStatus, OrderTransition
from commerce.pickup import PickupPoint

MAX_PAGE = 100
DEFAULT_PAGE = 50
# Step times shown on a list: when the order last entered each of these.
STEP_TIMES = {OrderStatus.READY.value: "ready_at", OrderStatus.PICKED_UP.value: "picked_up_at",
              OrderStatus.REFUNDED.value: "refunded_at", OrderStatus.CANCELLED.value: "cancelled_at",
              OrderStatus.DELIVERED.value: "delivered_at",
              OrderStatus.COMPLETED.value: "completed_at"}


@dataclass(frozen=True)
class OrderFilter:
    session_id: int | None = None
    community_id: int | None = None
    pickup_point_id: int | None = None
    status: str | None = None
    # The caller's own orders only, whatever her role (a host who also buys).
    mine: bool = False

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in {s.value for s in OrderStatus}:
            raise InvalidInput("未知的订单状态 / Unknown order status", field="status")


def sees_all_orders(actor: Principal) -> bool:
    return actor.role in (Role.ADMIN, Role.ASSISTANT)


def tenancy(actor: Principal, flt: OrderFilter) -> ColumnElement[bool] | None:
    """The rows this caller may list (None: every row)."""
    own = Order.user_id == actor.user_id
    if flt.mine:
        return own
    if not actor.is_staff:
        # A buyer's list stays hers; her 团长 work shows when she picks one of her communities.
        if flt.community_id is None:
            return own
        return or_(own, Order.community_id.in_(led_by(actor.user_id)))
    if sees_all_orders(actor):
        return None
    own_sessions = select(LiveSession.id).where(LiveSession.host_id == actor.user_id)
    scope = managed_scope(actor)
    managed = select(Community.id).where(scope) if scope is not None else select(Community.id)
    return or_(Order.session_id.in_(own_sessions), Order.community_id.in_(managed))


async def list_orders(db: AsyncSession, actor: Principal, flt: OrderFilter, after: int | None = None,
                      limit: int = DEFAULT_PAGE) -> tuple[list[Order], int | None]:
    """One page (newest first) and the cursor of the next page, None at the end."""
    limit = max(1, min(limit, MAX_PAGE))
    query = select(Order)
    scope = tenancy(actor, flt)
    if scope is not None:
        query = query.where(scope)
    if flt.session_id is not None:
        query = query.where(Order.session_id == flt.session_id)
    if flt.community_id is not None:
        query = query.where(Order.community_id == flt.community_id)
    if flt.pickup_point_id is not None:
        query = query.where(Order.pickup_point_id == flt.pickup_point_id)
    if flt.status is not None:
        query = query.where(Order.status == flt.status)
    if after is not None:
        query = query.where(Order.id < after)
    rows = list((await db.execute(query.order_by(Order.id.desc()).limit(limit + 1))).scalars())
    page = rows[:limit]
    return page, page[-1].id if len(rows) > limit else None


async def ensure_may_work(db: AsyncSession, order: Order, actor: Principal) -> None:
    """Mark ready, confirm a pickup, deliver: an admin or assistant, the host of the order's
    session, or a manager of the order's community (its host, or its 团长 at the pickup point)."""
    if sees_all_orders(actor):
        return
    if actor.role is Role.HOST:
        session = await db.get(LiveSession, order.session_id)
        if session is not None and session.host_id == actor.user_id:
            return
    community = await db.get(Community, order.community_id) if order.community_id else None
    if community is not None and await may_manage_community(db, community, actor):
        return
    raise Forbidden("这不是你的订单 / Not your order")


def _iso(value: datetime | None) -> str | None:
    return as_utc(value).isoformat() if value is not None else None


async def describe(db: AsyncSession, found: list[Order], with_code: bool) -> list[dict[str, Any]]:
    """List items: the order with its buyer's name, product, pickup point and step times."""
    if not found:
        return []
    ids = [o.id for o in found]
    buyers = {uid: name for uid, name in (await db.execute(select(User.id, User.display_name)
                                                            .where(User.id.in_({o.user_id for o in found}))))}
    products = {sale_id: (pid, name) for sale_id, pid, name in (await db.execute(
        select(Sale.id, Product.id, Product.name).join(Product, Product.id == Sale.product_id)
        .where(Sale.id.in_({o.sale_id for o in found}))))}
    point_ids = {o.pickup_point_id for o in found if o.pickup_point_id is not None}
    points = {p.id: p for p in (await db.execute(
        select(PickupPoint).where(PickupPoint.id.in_(point_ids)))).scalars()} if point_ids else {}
    steps: dict[int, dict[str, str | None]] = {}
    for order_id, to_status, at in (await db.execute(
            select(OrderTransition.order_id, OrderTransition.to_status,
                   func.max(OrderTransition.at))
            .where(OrderTransition.order_id.in_(ids),
                   OrderTransition.to_status.in_(list(STEP_TIMES)))
            .group_by(OrderTransition.order_id, OrderTransition.to_status))):
        steps.setdefault(order_id, {})[STEP_TIMES[to_status]] = _iso(at)
    items = []
    for order in found:
        product_id, product_name = products.get(order.sale_id, (None, ""))
        point = points.get(order.pickup_point_id) if order.pickup_point_id else None
        item: dict[str, Any] = {
            "id": order.id, "session_id": order.session_id, "sale_id": order.sale_id,
            "user_id": order.user_id, "buyer_name": buyers.get(order.user_id, ""),
            "product_id": product_id, "product_name": product_name, "qty": order.qty,
            "unit_price_fen": order.unit_price_fen, "amount_fen": order.amount_fen,
            "refunded_fen": order.refunded_fen, "gift": order.gift, "status": order.status,
            "community_id": order.community_id, "pickup_point_id": order.pickup_point_id,
            "pickup_point": point.public_dict() if point is not None else None,
            "created_at": _iso(order.created_at), "paid_at": _iso(order.paid_at),
            **{name: None for name in STEP_TIMES.values()}, **steps.get(order.id, {}),
        }
        if with_code:
            item["pickup_code"] = order.pickup_code
        items.append(item)
    return items
