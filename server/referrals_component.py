"""Wires referrals and commissions in: each paid order is attributed and earns its commission,
each later step of the order moves the commission (commerce/commissions.py).

The in-process bus hears each event once, in the process that published it; every move is
idempotent, so a replayed event changes nothing, and `commissions.catch_up` (run before every
report and payout) finishes what an event lost to a crash left behind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from commerce import commissions, referrals
from commerce.event_payloads import OrderPaid
from commerce.events import DomainEvent
from commerce.orders import Order
from server.api import Api
from server.keys import database_key, events_key
from server.routes import referrals as referral_routes
from trust.referral_points import award_referral

KINDS = ("order_paid", "order_status", "order_refunded")


def setup(app: web.Application, api: Api) -> None:
    api.operations.extend(referral_routes.api.operations)
    app.cleanup_ctx.append(referrals_ctx)
    referrals.on_referred_pickup(award_referral)


async def on_order_event(app: web.Application, event: DomainEvent) -> None:
    order_id = getattr(event.payload, "order_id", None)
    if order_id is None:
        return
    async with app[database_key].session() as db:
        order = await db.get(Order, order_id)
        if order is None:
            return
        if isinstance(event.payload, OrderPaid):
            await referrals.attribute(db, order)
            await commissions.on_paid(db, order)
        else:
            await commissions.sync(db, order)


async def referrals_ctx(app: web.Application) -> AsyncIterator[None]:
    async def handler(event: DomainEvent) -> None:
        await on_order_event(app, event)

    unsubscribe = app[events_key].subscribe(handler, kinds=KINDS)
    try:
        yield
    finally:
        unsubscribe()
