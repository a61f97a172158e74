"""Referrals and commissions over HTTP: my link and earnings, where a buyer arrived from, the
host's rates, the payout report (JSON, CSV) and payouts. Rules: commerce/referrals.py,
commerce/commissions.py, commerce/commission_payouts.py; docs/REFERRALS.md."""

from __future__ import annotations

import csv
import io
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import select

from commerce import commission_payouts, commissions, referrals
from commerce.accounts import Role, User
from commerce.commission_payouts import PayoutMethod
from commerce.orders import Order
from server.api import USER, Api, Id, json_response, principal, read_json
from server.commerce_keys import checkout_key
from server.keys import database_key, settings_key
from trust.dashboard import spreadsheet_safe

api = Api()
PAYERS = (Role.ADMIN, Role.HOST)


class ArrivalBody(BaseModel):
    code: str = Field(pattern=referrals.CODE_PATTERN)


class RateBody(BaseModel):
    scope: Literal["product", "session"]
    target_id: Id
    kind: Literal["referral", "community"]
    rate_bp: int = Field(ge=0, le=commissions.MAX_RATE_BP)


class PayoutBody(BaseModel):
    beneficiary_id: Id
    period: str = Field(pattern=commission_payouts.PERIOD_PATTERN)
    method: PayoutMethod = PayoutMethod.TRANSFER
    note: str = Field(default="", max_length=200)


def share_links(request: web.Request, code: str) -> dict[str, str]:
    base = request.app[settings_key].base_url
    return {"home": f"{base}/?ref={code}"}


@api.route("GET", "/api/referrals/me", summary="My share code and link, the neighbours who came "
           "through it (names masked), and my commission: pending, due, paid", tag="referrals",
           auth=USER)
async def my_referrals(request: web.Request) -> web.Response:
    me = principal(request)
    async with request.app[database_key].session() as db:
        code = await referrals.code_for(db, me.user_id)
        came = await referrals.referred_by(db, me.user_id)
        users = {u.id: (u.display_name or u.username) for u in (await db.execute(
            select(User).where(User.id.in_([a.buyer_id for a, _ in came])))).scalars()}
        orders = {o.id: o for o in (await db.execute(select(Order).where(
            Order.id.in_([b.order_id for _, b in came if b is not None])))).scalars()}
        earned = await commissions.of_beneficiary(db, me.user_id)
        totals = await commissions.totals_of(db, me.user_id)
    buyers = []
    for arrival, attribution in came:
        order = orders.get(attribution.order_id) if attribution else None
        buyers.append({"name": referrals.mask_name(users.get(arrival.buyer_id, "")),
                       "arrived_at": arrival.created_at, "via": arrival.via,
                       "bought": attribution is not None,
                       "order_status": order.status if order else None})
    return json_response({"code": code, "links": share_links(request, code), "buyers": buyers,
                          "totals": totals,
                          # The buyer's order is hers: a referrer sees the money, not the order.
                          "commissions": [{k: v for k, v in c.public_dict().items()
                                           if k not in ("order_id", "beneficiary_id")}
                                          for c in earned]})


@api.route("POST", "/api/referrals/arrivals", summary="Keep the ref I arrived with (a signed-in "
           "neighbour's page hands the one it kept): recorded | already | self | not_new | "
           "unknown_code", tag="referrals", auth=USER, body=ArrivalBody)
async def record_arrival(request: web.Request) -> web.Response:
    body = await read_json(request, ArrivalBody)
    async with request.app[database_key].session() as db:
        status = await referrals.record_arrival(db, principal(request).user_id, body.code, "link")
    return json_response({"status": status})


@api.route("GET", "/api/commission-rates", summary="Commission rates on my products and sessions "
           "(an admin: all)", tag="referrals", auth=PAYERS)
async def list_rates(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        rows = await commissions.rates_of(db, principal(request))
    return json_response({"items": [r.public_dict() for r in rows],
                          "max_rate_bp": commissions.MAX_RATE_BP})


@api.route("PUT", "/api/commission-rates", summary="Set the referral or community (团长) rate of "
           "my product or session, in basis points 0–3000 (0–30%)", tag="referrals", auth=PAYERS,
           body=RateBody, responses={403: "Not your product or session", 404: "No such target"})
async def put_rate(request: web.Request) -> web.Response:
    body = await read_json(request, RateBody)
    async with request.app[database_key].session() as db:
        row = await commissions.set_rate(db, principal(request), body.scope, body.target_id,
                                         body.kind, body.rate_bp)
        shown = row.public_dict()
    return json_response(shown)


@api.route("GET", "/api/commissions/report", summary="What is pending, due, paid and reversed per "
           "beneficiary (a host: on his own sessions' orders)", tag="referrals", auth=PAYERS)
async def payout_report(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        rows = await commission_payouts.report(db, principal(request))
    return json_response({"items": rows, "csv": "/api/commissions/report.csv"})


@api.route("GET", "/api/commissions/report.csv", summary="The payout report as CSV (UTF-8 with "
           "BOM for Excel)", tag="referrals", auth=PAYERS, response_content_type="text/csv")
async def payout_report_csv(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        rows = await commission_payouts.report(db, principal(request))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(commission_payouts.REPORT_COLUMNS)
    for row in rows:
        # Names are people's text: a leading = must not run as a formula in a spreadsheet.
        writer.writerow([spreadsheet_safe(str(row.get(c, ""))) for c in commission_payouts.REPORT_COLUMNS])
    return web.Response(body=("\ufeff" + buf.getvalue()).encode("utf-8"), content_type="text/csv",
                        charset="utf-8", headers={
                            "Content-Disposition": 'attachment; filename="linli-commissions.csv"'})


@api.route("POST", "/api/commissions/payouts", summary="Pay a beneficiary what is due for a "
           "period: through the payment provider's transfer, or marked paid by hand with a note; "
           "the same period twice pays once", tag="referrals", auth=PAYERS, body=PayoutBody,
           responses={201: "Paid (or the transfer is on its way)",
                      200: "This period was paid before: that payout",
                      409: "nothing_due"})
async def make_payout(request: web.Request) -> web.Response:
    body = await read_json(request, PayoutBody)
    checkout = request.app[checkout_key]
    payout, made = await commission_payouts.pay(
        checkout.uow, checkout.provider, principal(request), body.beneficiary_id, body.period,
        body.method, body.note)
    return json_response({**payout.public_dict(), "created": made}, status=201 if made else 200)


@api.route("GET", "/api/commissions/payouts", summary="Payouts made (a host: his own)",
           tag="referrals", auth=PAYERS)
async def list_payouts(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        rows = await commission_payouts.payouts_of(db, principal(request))
    return json_response({"items": [p.public_dict() for p in rows]})
