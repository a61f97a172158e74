"""Provider notifications that speak the provider's own format, and the money reconciliations.

Alipay posts its notification as a form and wants the word `success` back; anything else makes
it retry (for about a day). A refused notification (forged, wrong amount) is logged here once,
with the reason and never the fields, and answered `fail`; a repeat of one already handled is
answered `success` and changes nothing.
"""

from __future__ import annotations

import logging

from aiohttp import web

from commerce import money_ledger
from commerce.accounts import Role
from commerce.errors import InvalidInput, NotFound
from commerce.flash_sale.store import HoldExpired
from commerce.orders import Order
from commerce.payments import BadCallback
from server.api import PUBLIC, Api, json_response, parse_id
from server.commerce_keys import checkout_key
from server.keys import database_key

api = Api()
log = logging.getLogger(__name__)
MAX_NOTIFY_BYTES = 16 * 1024
MAX_NOTIFY_FIELDS = 60


@api.route("POST", "/api/payments/alipay/notify", summary="Alipay's asynchronous payment "
           "notification (form, RSA2-signed); answers `success` or `fail`", tag="orders",
           auth=PUBLIC, request_content_type="application/x-www-form-urlencoded",
           response_content_type="text/plain",
           responses={404: "not_found (Alipay is not configured)"})
async def alipay_notify(request: web.Request) -> web.Response:
    checkout = request.app[checkout_key]
    if checkout.payments.find("alipay") is None:
        raise NotFound("未启用支付宝 / Alipay is not configured", reason="not_configured")
    if (request.content_length or 0) > MAX_NOTIFY_BYTES:
        raise InvalidInput("通知太大 / Notification too large")
    form = await request.post()
    if len(form) > MAX_NOTIFY_FIELDS:
        raise InvalidInput("通知字段太多 / Too many fields")
    data = {str(k): str(v) for k, v in form.items()}
    try:
        await checkout.accept_callback(data, "alipay")
    except BadCallback as exc:
        if exc.details.get("reason") in ("replayed", "closed"):
            # A genuine notification handled before (its money already returned), or a trade
            # closed: Alipay retries until told success, and handling it changes nothing.
            return web.Response(text="success")
        log.warning("alipay notification refused",
                    extra={"reason": exc.details.get("reason", ""),
                           "hold_id": str(exc.details.get("hold_id", ""))[:40]})
        return web.Response(text="fail", status=400)
    except HoldExpired:
        # The money went back (the hold had lapsed): nothing left for Alipay to retry.
        return web.Response(text="success")
    return web.Response(text="success")


@api.route("GET", "/api/payments/reconciliations", summary="The latest daily reconciliations of "
           "the money ledger against each provider's bill, with what each found (admin)",
           tag="dashboard", auth=(Role.ADMIN,))
async def list_reconciliations(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        runs = await money_ledger.recent_reconciliations(db)
    return json_response({"items": [run.public_dict() for run in runs]})


@api.route("GET", "/api/payments/ledger", summary="The money ledger of one order (order_id) or "
           "one provider reference (provider_ref): payments in, refunds and transfers out (admin)",
           tag="dashboard", auth=(Role.ADMIN,),
           query={"order_id": "an order's id", "provider_ref": "a provider's payment, refund or "
                  "transfer reference"})
async def money_ledger_entries(request: web.Request) -> web.Response:
    raw_order, ref = request.query.get("order_id", ""), request.query.get("provider_ref", "")
    if bool(raw_order) == bool(ref) or len(ref) > 80:
        raise InvalidInput("需要 order_id 或 provider_ref 之一 / Give order_id or provider_ref")
    async with request.app[database_key].session() as db:
        if ref:
            return json_response({"items": await money_ledger.reference_ledger(db, ref)})
        order_id = parse_id(raw_order)
        order = await db.get(Order, order_id) if order_id is not None else None
        if order is None:
            raise NotFound("订单不存在 / No such order")
        return json_response({"items": await money_ledger.order_ledger(db, order)})
