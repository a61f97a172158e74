"""Holds, payment, orders and their steps, the payment callback, and reconcile (admin).

`POST /api/sales/{id}/holds` is the hot path of a flash sale: token check (JWT, no DB), body
validation, one Lua script call, in-process events. Nothing here touches SQL per reservation.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from commerce import fulfilment, live_sessions, orders, pickup, pricing
from commerce.accounts import Role
from commerce.base import MAX_ID, check_idempotency_key
from commerce.errors import InvalidInput
from commerce.flash_sale import reconcile
from commerce.flash_sale.store import MAX_QTY, sale_of_hold
from commerce.orders import OrderStatus
from server.api import PUBLIC, USER, Api, json_response, parse_id, path_int, principal, read_json
from server.commerce_keys import checkout_key
from server.keys import database_key
from server.rate_limits import rate_limiter_key
from trust import claims

api = Api()
STAFF = (Role.HOST, Role.ASSISTANT, Role.ADMIN)


class HoldCreate(BaseModel):
    qty: int = Field(ge=1, le=MAX_QTY, strict=True)
    community_id: int | None = Field(default=None, ge=1, le=MAX_ID, strict=True)


class PayBody(BaseModel):
    # One of the points of the community the hold was made through; absent: its default point.
    pickup_point_id: int | None = Field(default=None, ge=1, le=MAX_ID, strict=True)


class PickedUp(BaseModel):
    pickup_code: str = Field(min_length=1, max_length=12)


class RefundBody(BaseModel):
    reason: str = Field(default="", max_length=200)


class PickupPointCreate(BaseModel):
    name: str = Field(min_length=1, max_length=120)
    address: str = Field(default="", max_length=200)


class PickupPointUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=120)
    address: str | None = Field(default=None, max_length=200)
    # true makes this the community's default point (where new orders go); false is no change.
    default: bool = False


def _idempotency_key(request: web.Request) -> str:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        # Without a key a retry makes a new hold; clients are told to send one.
        return "auto-" + secrets.token_hex(12)
    check_idempotency_key(key)
    return key


def _hold_id(request: web.Request) -> str:
    hold_id = request.match_info["id"]
    sale_of_hold(hold_id)  # raises NoSuchHold (404) for malformed ids
    return hold_id


def _iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


@api.route("POST", "/api/sales/{id}/holds", summary="Reserve units (header Idempotency-Key)",
           tag="orders", auth=USER, body=HoldCreate,
           responses={201: "Held", 409: "sold_out | over_limit | not_open | ended | not_member",
                      429: "rate_limited (per buyer or per address; Retry-After)"})
async def create_hold(request: web.Request) -> web.Response:
    sale_id = path_int(request, "id")
    limiter = request.app[rate_limiter_key]
    # Local counters only (shared through Redis in the background): no extra round trip here.
    limiter.hit([(limiter.holds_user, str(principal(request).user_id)),
                 (limiter.holds_ip, limiter.request_ip(request))])
    body = await read_json(request, HoldCreate)
    result = await request.app[checkout_key].reserve(
        sale_id, principal(request), body.qty, body.community_id, _idempotency_key(request)
    )
    return json_response({
        "hold_id": result["hold"], "expires_at": _iso_ms(int(result["expires"])),
        "remaining": result["remaining"], "rank": result["rank"],
        # The held qty: a retry with the same key answers the first hold, whatever it asks.
        "qty": int(result.get("qty", body.qty)),
        "unit_price_fen": _hold_price(result), "community_id": int(result["community"] or 0) or None,
    }, status=201)


def _hold_price(result: dict[str, Any]) -> int:
    """The unit price of a new hold by the one pricing rule (what paying it will charge now)."""
    if result.get("list") is None:  # an answer stored before the script said the list price
        return int(result["price"])
    community = int(result["community"]) if result.get("community") else None
    cprice = result.get("cprice")
    return pricing.buyer_price(int(result["list"]), int(cprice) if cprice not in (None, "") else None,
                               community, pricing.group_summary(result.get("group"))).unit_fen


@api.route("POST", "/api/holds/{id}/pay", summary="Pay a hold (simulated provider pays at once)",
           tag="orders", auth=USER, body=PayBody,
           responses={409: "hold_expired", 400: "invalid_input (reason not_your_pickup_point)"})
async def pay_hold(request: web.Request) -> web.Response:
    hold_id = _hold_id(request)
    body = await read_json(request, PayBody)
    result = await request.app[checkout_key].pay(hold_id, principal(request), body.pickup_point_id)
    return json_response(result)


@api.route("DELETE", "/api/holds/{id}", summary="Give a hold back (stock returns)", tag="orders",
           auth=USER)
async def release_hold(request: web.Request) -> web.Response:
    result = await request.app[checkout_key].release(_hold_id(request), principal(request))
    return json_response({"released": True, "remaining": result["remaining"]})


@api.route("POST", "/api/payments/callback", summary="Payment provider callback (signed)",
           tag="orders", auth=PUBLIC)
async def payment_callback(request: web.Request) -> web.Response:
    try:
        data = await request.json()
    except (ValueError, RecursionError):  # RecursionError: absurdly nested brackets
        raise InvalidInput("回调不是 JSON / Callback is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidInput("回调不是对象 / Callback must be an object")
    order = await request.app[checkout_key].accept_callback(data)
    return json_response({"order_id": order.id, "status": order.status})


@api.route("GET", "/api/orders", summary="My orders", tag="orders", auth=USER)
async def my_orders(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        found = await orders.orders_of_user(db, principal(request).user_id)
        filed = await claims.claims_by_order(db, [o.id for o in found])
    return json_response([{**o.public_dict(with_code=True), "claim": _claim_summary(filed.get(o.id))}
                          for o in found])


def _claim_summary(claim: claims.Claim | None) -> dict[str, Any] | None:
    """What the orders page shows of an order's after-sales claim (after a reload too)."""
    if claim is None:
        return None
    data = claim.public_dict()
    return {key: data[key] for key in ("id", "status", "photos", "refund_fen", "compensation_fen",
                                       "rules", "due_at", "responded_at", "overdue")}


@api.route("GET", "/api/orders/{id}", summary="One order with its history", tag="orders", auth=USER)
async def get_order(request: web.Request) -> web.Response:
    who = principal(request)
    async with request.app[database_key].session() as db:
        order = await orders.get_order(db, path_int(request, "id"))
        session = await live_sessions.get_session(db, order.session_id)
        orders.ensure_can_view(order, who, session.host_id)
        steps = await orders.history(db, order.id)
        filed = await claims.claims_by_order(db, [order.id])
    data = order.public_dict(with_code=who.user_id == order.user_id)
    data["history"] = [s.public_dict() for s in steps]
    data["claim"] = _claim_summary(filed.get(order.id))
    return json_response(data)


async def _advance(request: web.Request, to: OrderStatus, code: str | None = None) -> web.Response:
    order = await fulfilment.advance_order(request.app[checkout_key], path_int(request, "id"), to,
                                           principal(request), code)
    return json_response(order.public_dict())


@api.route("POST", "/api/orders/{id}/ready", summary="Ready for pickup (staff)", tag="orders",
           auth=STAFF)
async def order_ready(request: web.Request) -> web.Response:
    return await _advance(request, OrderStatus.READY)


@api.route("POST", "/api/orders/{id}/picked-up", summary="Picked up, with the pickup code (staff)",
           tag="orders", auth=STAFF, body=PickedUp)
async def order_picked_up(request: web.Request) -> web.Response:
    body = await read_json(request, PickedUp)
    return await _advance(request, OrderStatus.PICKED_UP, body.pickup_code)


@api.route("POST", "/api/orders/{id}/delivered", summary="Delivered (staff)", tag="orders",
           auth=STAFF)
async def order_delivered(request: web.Request) -> web.Response:
    return await _advance(request, OrderStatus.DELIVERED)


@api.route("POST", "/api/orders/{id}/complete", summary="Completed (staff or the buyer)",
           tag="orders", auth=USER)
async def order_complete(request: web.Request) -> web.Response:
    return await _advance(request, OrderStatus.COMPLETED)


@api.route("POST", "/api/orders/{id}/refund", summary="Refund before pickup (staff)", tag="orders",
           auth=STAFF, body=RefundBody)
async def order_refund(request: web.Request) -> web.Response:
    body = await read_json(request, RefundBody)
    order = await fulfilment.refund_order(request.app[checkout_key], path_int(request, "id"),
                                          principal(request), body.reason)
    return json_response(order.public_dict())


@api.route("POST", "/api/communities/{id}/pickup-points",
           summary="Add a pickup point (the community's host, or an admin); the first is the default",
           tag="orders", auth=(Role.HOST, Role.ADMIN), body=PickupPointCreate,
           responses={201: "Created", 403: "Not your community"})
async def add_pickup_point(request: web.Request) -> web.Response:
    body = await read_json(request, PickupPointCreate)
    async with request.app[database_key].session() as db:
        point = await pickup.add_pickup_point(db, path_int(request, "id"), principal(request),
                                              body.name, body.address)
    return json_response(point.public_dict(), status=201)


@api.route("PATCH", "/api/pickup-points/{id}",
           summary="Rename a pickup point or make it the default (the community's host, or an admin)",
           tag="orders", auth=(Role.HOST, Role.ADMIN), body=PickupPointUpdate,
           responses={403: "Not your community", 404: "No such pickup point"})
async def update_pickup_point(request: web.Request) -> web.Response:
    body = await read_json(request, PickupPointUpdate)
    async with request.app[database_key].session() as db:
        point = await pickup.update_pickup_point(
            db, path_int(request, "id"), principal(request), name=body.name, address=body.address,
            make_default=body.default)
    return json_response(point.public_dict())


@api.route("GET", "/api/communities/{id}/pickup-points", summary="Pickup points of a community",
           tag="orders", auth=PUBLIC)
async def list_pickup_points(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        points = await pickup.pickup_points(db, path_int(request, "id"))
    return json_response([p.public_dict() for p in points])


def _sale_query(request: web.Request) -> int | None:
    raw = request.query.get("sale")
    if raw is None:
        return None
    sale_id = parse_id(raw)
    if sale_id is None:
        raise InvalidInput("sale 必须是数字 / sale must be a number", field="sale")
    return sale_id


def _report(reports: list[reconcile.SaleReport]) -> dict[str, Any]:
    return {"ok": all(r.ok for r in reports), "sales": [r.as_dict() for r in reports]}


@api.route("GET", "/api/reconcile", summary="Check every sale's books (admin)", tag="orders",
           auth=(Role.ADMIN,), query={"sale": "only this sale"})
async def get_reconcile(request: web.Request) -> web.Response:
    reports = await reconcile.reconcile_all(request.app[checkout_key], _sale_query(request))
    return json_response(_report(reports))


@api.route("POST", "/api/reconcile", summary="Check and repair from the log (admin)",
           tag="orders", auth=(Role.ADMIN,), query={"sale": "only this sale"})
async def post_reconcile(request: web.Request) -> web.Response:
    reports = await reconcile.reconcile_all(request.app[checkout_key], _sale_query(request),
                                            repair=True)
    return json_response(_report(reports))


