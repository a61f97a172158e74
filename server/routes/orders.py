"""Holds, payment, orders and their steps, the payment callback, and reconcile (admin).

`POST /api/sales/{id}/holds` is the hot path of a flash sale: token check (JWT, no DB), body
validation, one Lua script call, in-process events. Nothing here touches SQL per reservation.
"""

from __future__ import annotations

import base64
import csv
import io
import logging
import secrets
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from commerce import accounts, fulfilment, live_sessions, order_lists, orders, pickup, pricing, refunds
from commerce.accounts import Role
from commerce.base import MAX_ID, check_idempotency_key
from commerce.errors import Forbidden, InvalidInput
from commerce.flash_sale import reconcile
from commerce.flash_sale.store import MAX_QTY, HoldExpired, sale_of_hold
from commerce.orders import OrderStatus
from commerce.payments import LABELS, BadCallback, PayClient
from commerce.pickup import pickup_qr_text
from payments.wechatpay import MAX_NOTIFY_BYTES, WechatPayProvider
from server.api import PUBLIC, USER, Api, json_response, parse_id, path_int, principal, read_json
from server.commerce_keys import checkout_key
from server.keys import database_key, settings_key
from server.qr_images import qr_response, qr_svg
from server.rate_limits import rate_limiter_key
from trust import claims, claims_queue
from trust.dashboard import spreadsheet_safe

api = Api()
pay_log = logging.getLogger("linli.payments")
STAFF = (Role.HOST, Role.ASSISTANT, Role.ADMIN)


class HoldCreate(BaseModel):
    qty: int = Field(ge=1, le=MAX_QTY, strict=True)
    community_id: int | None = Field(default=None, ge=1, le=MAX_ID, strict=True)


class PayBody(BaseModel):
    # One of the points of the community the hold was made through; absent: its default point.
    pickup_point_id: int | None = Field(default=None, ge=1, le=MAX_ID, strict=True)
    # true: answer a code to scan (desktop) where the provider offers one (Alipay's QR).
    qr: bool = False
    # The buyer's choice among GET /api/payments/methods; absent: the one preferred where she is.
    provider: str | None = Field(default=None, min_length=1, max_length=20,
                                 pattern=r"^[a-z]+$")


class PickedUp(BaseModel):
    pickup_code: str = Field(min_length=1, max_length=12)


class RefundBody(BaseModel):
    reason: str = Field(default="", max_length=200)


class PickupPointCreate(BaseModel):
    name: str = Field(min_length=1, max_length=120)
    address: str = Field(default="", max_length=200)
    hours: str = Field(default="", max_length=80)


class PickupPointUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=120)
    address: str | None = Field(default=None, max_length=200)
    hours: str | None = Field(default=None, max_length=80)
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
           responses={201: "Held", 409: "sold_out | over_limit | not_open | ended | not_member | "
                                        "in_flight (a bucketed sale: the first try of this key "
                                        "is still being handled)",
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


@api.route("POST", "/api/holds/{id}/pay", summary="Pay a hold with the provider chosen (simulated "
           "provider pays at once; WeChat Pay and Alipay answer how to go on paying)",
           tag="orders", auth=USER, body=PayBody,
           responses={409: "hold_expired", 400: "invalid_input (reason not_your_pickup_point, "
                      "unknown_provider)"})
async def pay_hold(request: web.Request) -> web.Response:
    hold_id = _hold_id(request)
    body = await read_json(request, PayBody)
    who = principal(request)
    ip = request.app[rate_limiter_key].client_ip(request.remote,
                                                 request.headers.get("X-Forwarded-For"))
    client = PayClient(user_id=who.user_id, user_agent=request.headers.get("User-Agent", "")[:400],
                       ip=ip, return_url=request.app[settings_key].base_url + "/orders")
    result = await request.app[checkout_key].pay(hold_id, who, body.pickup_point_id, client,
                                                 body.qr, body.provider)
    if result.get("qr_text"):
        # Private to this buyer and short-lived: inline, never a cacheable URL.
        svg = qr_svg(str(result["qr_text"]), LABELS.get(str(result.get("provider")), ""), scale=5)
        result["qr_svg"] = "data:image/svg+xml;base64," + base64.b64encode(svg).decode()
    return json_response(result)


@api.route("DELETE", "/api/holds/{id}", summary="Give a hold back (stock returns)", tag="orders",
           auth=USER)
async def release_hold(request: web.Request) -> web.Response:
    result = await request.app[checkout_key].release(_hold_id(request), principal(request))
    return json_response({"released": True, "remaining": result["remaining"]})


@api.route("GET", "/api/payments/methods", summary="How the buyer may pay: every configured "
           "provider, the one preferred where she is (WeChat Pay inside WeChat) first",
           tag="orders", auth=USER)
async def payment_methods(request: web.Request) -> web.Response:
    client = PayClient(user_agent=request.headers.get("User-Agent", "")[:400])
    return json_response({"items": request.app[checkout_key].payments.offered(client)})


@api.route("POST", "/api/payments/callback", summary="The simulated provider's callback (signed)",
           tag="orders", auth=PUBLIC, responses={404: "not_found (no simulated provider)"})
async def payment_callback(request: web.Request) -> web.Response:
    if request.app[checkout_key].payments.find("simulated") is None:
        raise web.HTTPNotFound()
    try:
        data = await request.json()
    except (ValueError, RecursionError):  # RecursionError: absurdly nested brackets
        raise InvalidInput("回调不是 JSON / Callback is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidInput("回调不是对象 / Callback must be an object")
    order = await request.app[checkout_key].accept_callback(data, "simulated")
    return json_response({"order_id": order.id, "status": order.status})


async def _wechatpay_notification(request: web.Request) -> tuple[WechatPayProvider, dict[str, str],
                                                                  str]:
    provider = request.app[checkout_key].payments.find("wechatpay")
    if not isinstance(provider, WechatPayProvider):
        raise web.HTTPNotFound()
    if (request.content_length or 0) > MAX_NOTIFY_BYTES:
        raise InvalidInput("通知过大 / Notification too large", reason="too_large")
    body = (await request.content.read(MAX_NOTIFY_BYTES + 1)).decode("utf-8", errors="replace")
    headers = {k: v for k, v in request.headers.items() if k.lower().startswith("wechatpay-")}
    return provider, headers, body


def _refused(exc: BadCallback) -> None:
    # One line per refused notification: its reason, never its body or headers.
    pay_log.warning("wechatpay notification refused", extra={"reason": exc.details.get("reason")})


@api.route("POST", "/api/payments/wechatpay/notify", summary="WeChat Pay payment notification "
           "(signed by WeChat Pay, resource AES-256-GCM encrypted)", tag="orders", auth=PUBLIC,
           responses={400: "bad_payment_callback (reason: bad_signature, stale, wrong_amount, …)"})
async def wechatpay_notify(request: web.Request) -> web.Response:
    provider, headers, body = await _wechatpay_notification(request)
    checkout = request.app[checkout_key]
    try:
        callback = await provider.verify_callback({"headers": headers, "body": body})
    except BadCallback as exc:
        _refused(exc)
        raise
    try:
        await checkout.accept_payment(callback, provider)
    except HoldExpired:
        # The money went back (accept_payment refunds it): handled, so WeChat Pay is told so
        # and stops repeating the notification.
        pay_log.info("wechatpay payment for a lapsed hold returned",
                     extra={"hold_id": callback.hold_id})
    finally:
        # Decided either way (an order, or the money returned): nothing left to ask WeChat.
        await provider.forget(callback.hold_id)
    return web.Response(status=204)


@api.route("POST", "/api/payments/wechatpay/refund-notify", summary="WeChat Pay refund "
           "notification: the refund's outcome goes into its order's history", tag="orders",
           auth=PUBLIC, responses={400: "bad_payment_callback"})
async def wechatpay_refund_notify(request: web.Request) -> web.Response:
    provider, headers, body = await _wechatpay_notification(request)
    try:
        resource = await provider.refund_notification(headers, body)
    except BadCallback as exc:
        _refused(exc)
        raise
    await refunds.note_provider_outcome(request.app[database_key].session, str(resource["key"]),
                                        str(resource.get("refund_status", "")),
                                        str(resource.get("refund_id", "")))
    return web.Response(status=204)


ORDER_QUERY = {
    "session_id": "orders of this live session", "community_id": "orders of this community",
    "pickup_point_id": "orders going to this pickup point",
    "status": "paid | ready_for_pickup | picked_up | ...", "mine": "1: only the caller's own",
    "cursor": "the `next` of the previous page", "limit": f"1–{order_lists.MAX_PAGE}",
}


def _query_id(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name, "")
    if raw == "":
        return None
    value = parse_id(raw)
    if value is None:
        raise InvalidInput(f"{name} 必须是数字 / {name} must be a number", field=name)
    return value


def _order_filter(request: web.Request) -> order_lists.OrderFilter:
    return order_lists.OrderFilter(
        session_id=_query_id(request, "session_id"), community_id=_query_id(request, "community_id"),
        pickup_point_id=_query_id(request, "pickup_point_id"),
        status=request.query.get("status") or None, mine=request.query.get("mine") in ("1", "true"))


def _page_limit(request: web.Request) -> int:
    limit = _query_id(request, "limit")
    if limit is None:
        return order_lists.DEFAULT_PAGE
    if not 1 <= limit <= order_lists.MAX_PAGE:
        raise InvalidInput(f"limit 须为 1–{order_lists.MAX_PAGE} / limit must be "
                           f"1–{order_lists.MAX_PAGE}", field="limit")
    return limit


@api.route("GET", "/api/orders", summary="Orders within the caller's tenancy, newest first: "
           "staff filter by session, community, pickup point and status (admins and assistants "
           "all, a host his sessions' and communities'); anyone else (or mine=1) her own",
           tag="orders", auth=USER, query=ORDER_QUERY)
async def list_orders(request: web.Request) -> web.Response:
    who = principal(request)
    flt = _order_filter(request)
    async with request.app[database_key].session() as db:
        found, after = await order_lists.list_orders(db, who, flt, _query_id(request, "cursor"),
                                                     _page_limit(request))
        items = await order_lists.describe(db, found, with_code=True)
        filed = await claims.claims_by_order(db, [o.id for o in found])
        money = await claims_queue.money_status(db, list(filed.values()))
    for item in items:
        item["claim"] = _claim_summary(filed.get(item["id"]), money)
    return json_response({"items": items, "next": str(after) if after is not None else None})


MAX_CSV_ROWS = 5000
CSV_COLUMNS = ("id", "buyer_name", "product_name", "qty", "amount_fen", "status", "pickup_point",
               "gift", "created_at", "ready_at", "picked_up_at")


async def _ensure_fulfils(request: web.Request) -> None:
    """Staff, or a 团长 (of some community: each order is checked on its own after this)."""
    who = principal(request)
    if who.is_staff:
        return
    async with request.app[database_key].session() as db:
        if await accounts.leads_any(db, who.user_id):
            return
    raise Forbidden("只有工作人员或团长可以操作 / Staff or a community leader only")


@api.route("GET", "/api/orders.csv", summary="The staff order list as CSV (same filters; at most "
           f"{MAX_CSV_ROWS} rows; staff, or a 团长 with community_id)", tag="orders", auth=USER,
           query=ORDER_QUERY, response_content_type="text/csv")
async def orders_csv(request: web.Request) -> web.Response:
    await _ensure_fulfils(request)
    who = principal(request)
    flt = _order_filter(request)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    after: int | None = None
    rows = 0
    async with request.app[database_key].session() as db:
        while rows < MAX_CSV_ROWS:
            found, after = await order_lists.list_orders(db, who, flt, after, order_lists.MAX_PAGE)
            for item in await order_lists.describe(db, found, with_code=False):
                point = item["pickup_point"]
                item["pickup_point"] = point["name"] if point else ""
                writer.writerow([spreadsheet_safe("" if item[c] is None else str(item[c]))
                                 for c in CSV_COLUMNS])
            rows += len(found)
            if after is None:
                break
    # A BOM so spreadsheet programs read the Chinese names as UTF-8.
    return web.Response(body=("\ufeff" + out.getvalue()).encode(), headers={
        "Content-Type": "text/csv; charset=utf-8", "Cache-Control": "private, no-store",
        "Content-Disposition": 'attachment; filename="orders.csv"'})


class ReadyBatch(BaseModel):
    order_ids: list[int] = Field(min_length=1, max_length=fulfilment.MAX_BATCH)


@api.route("POST", "/api/orders/ready", summary="Mark many orders ready for pickup (staff; each "
           "order on its own: ready, already ready, or refused with its code; staff or a 团长)",
           tag="orders", auth=USER, body=ReadyBatch)
async def orders_ready(request: web.Request) -> web.Response:
    await _ensure_fulfils(request)
    body = await read_json(request, ReadyBatch)
    if any(not 1 <= oid <= MAX_ID for oid in body.order_ids):
        raise InvalidInput("订单号无效 / Invalid order id", field="order_ids")
    result = await fulfilment.mark_ready(request.app[checkout_key], body.order_ids,
                                         principal(request))
    return json_response(result)


@api.route("GET", "/api/orders/{id}/pickup-qr.svg", summary="The pickup code as a QR image "
           "(the order's buyer only; never cached)", tag="orders", auth=USER,
           response_content_type="image/svg+xml")
async def pickup_qr(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        order = await orders.get_order(db, path_int(request, "id"))
    if order.user_id != principal(request).user_id or not order.pickup_code:
        raise Forbidden("这不是你的订单 / Not your order")
    text = pickup_qr_text(order.id, order.pickup_code)
    return qr_response(qr_svg(text, "取货码 / Pickup code"), "svg", cache="private, no-store")


def _claim_summary(claim: claims.Claim | None,
                   money: dict[int, dict[str, str | None]]) -> dict[str, Any] | None:
    """What the orders page shows of an order's after-sales claim (after a reload too): the
    decision and its reason, and whether the refund and the compensation have been paid."""
    if claim is None:
        return None
    data = claim.public_dict()
    return {**{key: data[key] for key in (
        "id", "status", "photos", "refund_fen", "compensation_fen", "compensation_paid", "rules",
        "decision_note", "due_at", "responded_at", "overdue")}, **money.get(claim.id, {})}


@api.route("GET", "/api/orders/{id}", summary="One order with its history", tag="orders", auth=USER)
async def get_order(request: web.Request) -> web.Response:
    who = principal(request)
    async with request.app[database_key].session() as db:
        order = await orders.get_order(db, path_int(request, "id"))
        session = await live_sessions.get_session(db, order.session_id)
        if not orders.may_view(order, who, session.host_id):
            # The manager of the order's community (a 团长 working its pickup point) too.
            await order_lists.ensure_may_work(db, order, who)
        steps = await orders.history(db, order.id)
        filed = await claims.claims_by_order(db, [order.id])
        money = await claims_queue.money_status(db, list(filed.values()))
    data = order.public_dict(with_code=who.user_id == order.user_id)
    data["history"] = [s.public_dict() for s in steps]
    data["claim"] = _claim_summary(filed.get(order.id), money)
    return json_response(data)


async def _advance(request: web.Request, to: OrderStatus, code: str | None = None) -> web.Response:
    order = await fulfilment.advance_order(request.app[checkout_key], path_int(request, "id"), to,
                                           principal(request), code)
    return json_response(order.public_dict())


@api.route("POST", "/api/orders/{id}/ready", summary="Ready for pickup (staff, or the 团长 of "
           "the order's community)", tag="orders", auth=USER)
async def order_ready(request: web.Request) -> web.Response:
    return await _advance(request, OrderStatus.READY)


@api.route("POST", "/api/orders/{id}/picked-up", summary="Picked up, with the pickup code (staff, "
           "or the 团长 of the order's community)", tag="orders", auth=USER, body=PickedUp)
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
                                              body.name, body.address, body.hours)
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
            hours=body.hours, make_default=body.default)
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


