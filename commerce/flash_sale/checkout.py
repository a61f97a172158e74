"""The money path: reserve → pay → order, release, with events published after each commit.

Redis is the commit point for stock (the scripts are atomic); SQL receives confirmations through
the idempotent writer, here right after confirming and again from the log consumer if this
process died in between. Nothing here queries SQL per reservation: the hot path is one script
call plus in-process event fan-out.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import Any

from commerce import money_ledger, orders, pricing, refunds
from commerce.accounts import Membership, Principal
from commerce.errors import Forbidden, InvalidInput
from commerce.event_payloads import (
    GroupProgress,
    OrderPaid,
    SaleClosed,
    SaleOpened,
    StockChanged,
)
from commerce.events import DomainEvent, EventBus
from commerce.flash_sale.sales import Sale, get_sale
from commerce.flash_sale.stock import SaleStock
from commerce.flash_sale.store import (
    MAX_QTY,
    HoldExpired,
    NoSuchHold,
    NotMember,
    now_ms,
    sale_of_hold,
)
from commerce.orders import Confirmation, Order, UnitOfWork
from commerce.payments import (
    BadCallback,
    ClosingProvider,
    LapsingStart,
    PayClient,
    PayerMemory,
    PaymentCallback,
    PaymentProvider,
    PaymentProviders,
    QrStart,
    providers_of,
)
from commerce.pricing import BuyerPrice

log = logging.getLogger(__name__)
MAX_CACHED_SALES = 10_000
NOT_MEMBER_RECHECK_S = 10


def group_event_data(sale_id: int, summary: dict[str, Any], people: int, units: int) -> dict[str, Any]:
    """The `group_progress` / `group_outcome` payload realtime/ broadcasts. A decided group-buy
    shows the count it was decided on (what GET /api/group-buys/{id} answers), not live units."""
    unit = summary.get("unit", "people")
    count = people if unit == "people" else units
    if summary.get("final_count") is not None:
        count = int(summary["final_count"])
    return {
        "group_id": summary["id"], "sale_id": sale_id, "community_id": summary["community_id"],
        "community_name": summary.get("community_name", ""),
        "count": count, "threshold": summary["threshold"],
        "unit": unit, "deadline": summary["deadline"], "status": summary["status"],
    }


class Checkout:
    """Reservations, payments and releases for every sale, bound to one store, DB and bus."""

    def __init__(self, store: SaleStock, uow: UnitOfWork, bus: EventBus,
                 payments: PaymentProviders | PaymentProvider) -> None:
        self.store = store
        self.uow = uow
        self.bus = bus
        # Every configured provider: the buyer pays with the one she chooses, and money goes
        # back through the one that took it.
        self.payments = providers_of(payments)
        # sale id -> session id, so stock events need no SQL; bounded, refilled from Redis.
        self._sessions: dict[int, int] = {}
        # sale id -> the version this process last told the room about through `settle`.
        self._settled: dict[int, int] = {}
        # sale id -> the newest version of its stock this process told the room about. The
        # room keeps only the newest value of a sale's stock, so a reservation answered with an
        # older or equal version has nothing to tell it: a batch of reservations (one script
        # call) tells it once, not once per buyer (7% of a worker at 2,000 buyers a second).
        self._stock_told: dict[int, int] = {}

    async def session_of(self, sale_id: int) -> int | None:
        found = self._sessions.get(sale_id)
        if found is None:
            session = await self.store.session_of(sale_id)
            if session is None:
                return None
            if len(self._sessions) >= MAX_CACHED_SALES:
                self._sessions.clear()
            found = self._sessions[sale_id] = session
        return found

    async def publish_stock(self, sale_id: int, result: dict[str, Any]) -> None:
        gift_left = result.get("gift_left")
        if gift_left is None:
            counts = await self.store.counts(sale_id)
            gift_left = counts.gift_left if counts else 0
        # The scripts hand back the session id, so the hot path needs no lookup.
        session = result.get("session")
        session = int(session) if session is not None else await self.session_of(sale_id)
        ver = int(result.get("ver") or 0)
        if ver > self._stock_told.get(sale_id, 0):
            if len(self._stock_told) >= MAX_CACHED_SALES:
                self._stock_told.clear()
            self._stock_told[sale_id] = ver
        await self.bus.publish(DomainEvent("stock_changed", session, StockChanged(
            sale_id=sale_id, remaining=result["remaining"], held=result["held"],
            sold=result["sold"], gift_left=gift_left, ver=ver,
        )))

    async def publish_group(self, sale_id: int, community: str, people: int, units: int,
                            summary: Any = None, ver: int | None = None) -> None:
        """Progress of the community's group-buy, if it has one. `people`, `units` and `summary`
        must be what the script that returned `ver` saw; without a version they are read again,
        atomically with one, so a value without its version never reaches the room."""
        if not community:
            return
        if ver is None:
            fresh = await self.store.progress(sale_id)
            entry = ((fresh or {}).get("groups") or {}).get(community)
            if fresh is None or entry is None:
                return
            people, units, summary = int(entry["people"]), int(entry["units"]), entry["summary"]
            ver = int(fresh["ver"])
        if not summary:
            return
        data = json.loads(summary) if isinstance(summary, (str, bytes)) else summary
        await self.bus.publish(DomainEvent("group_progress", await self.session_of(sale_id),
                                           GroupProgress(**group_event_data(sale_id, data, people,
                                                                            units), ver=ver)))

    async def settle(self, sale_id: int, *, force: bool = False) -> bool:
        """Tell the room the sale's counters and group progress as Redis holds them now, with
        their version: the final word after a burst, whatever the events before it said (one
        lost between a script and its publish, a hold given back by a group-buy's outcome).
        Skipped when this process already settled this version, unless `force`."""
        fresh = await self.store.progress(sale_id)
        if fresh is None:
            return False
        ver = int(fresh["ver"])
        if not force and self._settled.get(sale_id) == ver:
            return False
        if len(self._settled) >= MAX_CACHED_SALES:
            self._settled.clear()
        self._settled[sale_id] = ver
        self._sessions.setdefault(sale_id, int(fresh["session"]))
        gift_left = max(0, int(fresh["gift_n"] or 0) - int(fresh["paid"] or 0))
        await self.publish_stock(sale_id, {**fresh, "gift_left": gift_left})
        for community, entry in (fresh.get("groups") or {}).items():
            await self.publish_group(sale_id, community, int(entry["people"]),
                                     int(entry["units"]), entry["summary"], ver)
        return True

    # --- reserve -------------------------------------------------------------------------------

    async def reserve(self, sale_id: int, buyer: Principal, qty: int, community_id: int | None,
                      idem_key: str) -> dict[str, Any]:
        """Hold units for the buyer; the typed errors of flash_sale say why not."""
        try:
            result = await self.store.reserve(sale_id, buyer.user_id, qty, community_id, idem_key)
        except NotMember:
            # Membership is cached in Redis when the sale opens; one SQL look on refusal
            # catches members approved since.
            if not await self._refresh_membership(sale_id, buyer.user_id):
                raise
            result = await self.store.reserve(sale_id, buyer.user_id, qty, community_id, idem_key)
        # The store hands a batch's answers out newest first (FlashSaleStore.reserve), so the
        # first of them to get here tells the room and the others find nothing newer to tell.
        # Answers without a version (stored before there were versions) are always told.
        ver = int(result.get("ver") or 0)
        if ver == 0 or ver > self._stock_told.get(sale_id, 0):
            await self.publish_stock(sale_id, result)
        group = result.get("group") or None
        # reserve.lua hands back the summary it saw; none means the community has no group-buy.
        if group is not None:
            await self.publish_group(sale_id, result["community"], result["people"],
                                     result["units"], group, int(result["ver"]))
        return result

    async def _refresh_membership(self, sale_id: int, user_id: int) -> bool:
        from sqlalchemy import select

        # At most one SQL look per buyer and sale every NOT_MEMBER_RECHECK_S: a non-member
        # retrying in a loop must not turn into a query per request.
        if not await self.store.first_membership_look(sale_id, user_id, NOT_MEMBER_RECHECK_S):
            return False
        async with self.uow() as db:
            sale = await get_sale(db, sale_id)
            if not sale.community_ids:
                return False
            rows = await db.execute(select(Membership.community_id).where(
                Membership.user_id == user_id, Membership.status == "approved",
                Membership.community_id.in_(sale.community_ids)))
            mine = {row[0] for row in rows}
        ordered = [cid for cid in sale.community_ids if cid in mine]
        if not ordered:
            return False
        await self.store.add_member(sale_id, user_id, ordered)
        return True

    # --- pay -----------------------------------------------------------------------------------

    async def price_for(self, sale_id: int, community: int | None) -> BuyerPrice | None:
        """What a buyer buying through `community` pays now (pricing.buyer_price over the sale
        and group-buy as Redis holds them); None for a sale Redis does not hold."""
        prices = await self.store.prices(sale_id)
        if prices is None:
            return None
        group = None
        if community is not None:
            group = pricing.group_summary(await self.store.group_summary(sale_id, community))
        list_fen, community_fen = prices
        return pricing.buyer_price(list_fen, community_fen, community, group)

    async def _unit_price(self, sale_id: int, hold: dict[str, Any]) -> int:
        """The hold's unit price by the one pricing rule (the hold's quote when Redis lost the
        sale's description, which a live hold outliving it cannot do)."""
        community = int(hold["c"]) if hold.get("c") else None
        price = await self.price_for(sale_id, community)
        return int(hold["p"]) if price is None else price.unit_fen

    @property
    def provider(self) -> PaymentProvider:
        """The default (first) provider: the one of `make run`, or of a shop with one."""
        return self.payments.default

    async def pay(self, hold_id: str, buyer: Principal, pickup_point_id: int | None = None,
                  client: PayClient | None = None, qr: bool = False,
                  method: str | None = None) -> dict[str, Any]:
        """Pay a live hold through the provider the buyer chose (`method`; none: the one
        preferred where she is); with the simulated one the order exists at once.
        `pickup_point_id` picks one of the hold's community's points (default: its default);
        `qr` asks for a code to scan (a desktop) where the provider offers one."""
        provider = self.payments.choose(method, client)
        sale_id = sale_of_hold(hold_id)
        done = await self.store.paid(hold_id)
        if done is not None:
            return await self._already_paid(sale_id, done, buyer)
        hold = await self.store.hold(hold_id)
        if hold is None:
            # Paid by a concurrent request between the two reads: answer with its order.
            done = await self.store.paid(hold_id)
            if done is not None:
                return await self._already_paid(sale_id, done, buyer)
            await self._missing_hold(hold_id)
        assert hold is not None
        if int(hold["b"]) != buyer.user_id:
            raise Forbidden("这不是你的订单 / Not your hold", reason="not_yours")
        if int(hold["e"]) <= now_ms():
            await self.expire(sale_id)
            raise HoldExpired()
        if pickup_point_id is not None:
            await self._choose_pickup(sale_id, hold_id, hold, pickup_point_id)
        unit = await self._unit_price(sale_id, hold)
        amount = unit * int(hold["q"])
        if qr and isinstance(provider, QrStart):
            return {"status": "pending", "payment_ref": hold_id, "provider": provider.name,
                    "qr_code": await provider.start_qr(hold_id, amount)}
        # A provider that can be told when the hold lapses closes its order then itself.
        start = (await provider.start_until(hold_id, amount, int(hold["e"]), client)
                 if isinstance(provider, LapsingStart)
                 else await provider.start(hold_id, amount, client))
        if start.callback is None:
            pending: dict[str, Any] = {"status": "pending", "payment_ref": start.payment_ref,
                                       "provider": provider.name,
                                       "redirect_url": start.redirect_url}
            if start.channel:
                pending.update(channel=start.channel, qr_text=start.qr_text, jsapi=start.jsapi)
            return pending
        order = await self.accept_callback(asdict(start.callback), provider.name)
        return {"order_id": order.id, "status": order.status}

    async def _choose_pickup(self, sale_id: int, hold_id: str, hold: dict[str, Any],
                             point_id: int) -> None:
        """Remember the buyer's pickup point for the order this hold becomes; it must be one of
        the points of the community the hold was made through."""
        from commerce.pickup import PickupPoint

        community = int(hold["c"]) if hold.get("c") else None
        async with self.uow() as db:
            point = await db.get(PickupPoint, point_id)
        if point is None or community is None or point.community_id != community:
            raise InvalidInput("自提点不属于你的小区 / The pickup point is not your community's",
                               field="pickup_point_id", reason="not_your_pickup_point")
        await self.store.choose_pickup(sale_id, hold_id, point_id)

    async def _already_paid(self, sale_id: int, done: dict[str, Any],
                            buyer: Principal) -> dict[str, Any]:
        if int(done["buyer"]) != buyer.user_id:
            raise Forbidden("这不是你的订单 / Not your hold", reason="not_yours")
        order = await self._record(sale_id, done)
        return {"order_id": order.id, "status": order.status}

    async def _missing_hold(self, hold_id: str) -> None:
        if await self.store.ever_held(hold_id):
            raise HoldExpired("订单保留已过期或已取消 / The hold expired or was released")
        raise NoSuchHold()

    async def accept_callback(self, data: dict[str, Any], provider_name: str) -> Order:
        """A provider's signed callback: confirm the hold in Redis, then write the order."""
        provider = self.payments.get(provider_name)
        try:
            callback = await provider.verify_callback(data)
        except BadCallback as exc:
            # A replayed callback for a paid hold is answered with the order, never a second one.
            if exc.details.get("reason") == "replayed":
                done = await self.store.paid(str(exc.details.get("hold_id")
                                                 or data.get("hold_id", "")))
                if done is not None:
                    return await self._record(sale_of_hold(done["hold"]), done)
            raise
        return await self.accept_payment(callback, provider)

    async def accept_payment(self, callback: PaymentCallback, provider: PaymentProvider) -> Order:
        """A payment `provider` vouched for (a verified callback, or its answer to our query):
        confirm the hold in Redis, then write the order."""
        # Money that came in is in the ledger, under the provider that took it, whatever
        # becomes of the hold; what goes back on it is routed to that provider from there.
        await money_ledger.record_payment(self.uow, provider.name, callback)
        sale_id = sale_of_hold(callback.hold_id)
        hold = await self.store.hold(callback.hold_id)
        qty = int(hold["q"]) if hold else 1
        try:
            result = await self.store.confirm(callback.hold_id, None, callback.payment_ref,
                                              callback.amount_fen // max(qty, 1))
        except HoldExpired:
            # The provider took the money for a hold that lapsed meanwhile: give it back.
            await self._return_payment(callback.payment_ref, callback.amount_fen, "hold expired")
            raise
        except NoSuchHold:
            # Gone before we confirmed: the sweeper returned it (it lapsed while the payment was
            # on its way) or it was given back. The money came in all the same; it goes back,
            # and the buyer hears "expired", not 404 (bench/chaos.py: paid, told not found).
            await self._return_payment(callback.payment_ref, callback.amount_fen, "hold gone")
            raise HoldExpired("订单保留已过期或已取消 / The hold expired or was released") from None
        if result["ref"] != callback.payment_ref:
            # Paid twice (two tabs, two providers): the first payment made the order; return
            # the second one's money and answer with the existing order.
            await self._return_payment(callback.payment_ref, callback.amount_fen,
                                       "duplicate payment")
            return await self._record(sale_id, result)
        order = await self._record(sale_id, result)
        if isinstance(provider, PayerMemory):
            # Where this buyer's compensation can be paid (the provider's account that paid).
            await provider.paid_by(order.user_id, callback.hold_id)
        await self.publish_stock(sale_id, result)
        await self.bus.publish(DomainEvent("order_paid", order.session_id, OrderPaid(
            order_id=order.id, sale_id=sale_id, user_id=order.user_id, qty=order.qty,
            community_id=order.community_id,
        )))
        return order

    async def _return_payment(self, payment_ref: str, amount_fen: int, reason: str) -> None:
        """Money that came in without making an order goes back, once per payment: the key is
        the payment itself, so a duplicated or retried callback returns nothing twice."""
        await refunds.pay_out(self.uow, self.payments, refunds.refund_key("payment", payment_ref),
                              payment_ref, amount_fen, reason)

    async def _record(self, sale_id: int, result: dict[str, Any]) -> Order:
        conf = Confirmation(
            sale_id=sale_id, session_id=int(result["session"]), hold_id=result["hold"],
            buyer=int(result["buyer"]), qty=int(result["qty"]), unit_price_fen=int(result["price"]),
            community_id=int(result["community"]) if result.get("community") else None,
            payment_ref=str(result["ref"]), paid_rank=int(result["paid_rank"]),
            gift=int(result["gift"]) == 1, at_ms=int(result["entry"].split("-")[0]),
        )
        return await self.record(conf)

    async def record(self, conf: Confirmation) -> Order:
        """Write the order of a confirmation (idempotent; every writer comes through here: the
        pay route, the callback, the log consumer, reconcile), then settle what a group-buy
        outcome owes it."""
        chosen = await self.store.chosen_pickup(conf.sale_id, conf.hold_id)
        order, _created = await orders.write_confirmation(self.uow, conf, chosen)
        await self._owed_group_price(order)
        return order

    async def _owed_group_price(self, order: Order) -> None:
        """An order paid above its community's price after the group-buy succeeded (its price
        was read a moment before the outcome reached Redis) gets the difference back.

        The outcome's own pass (group_buys.decide) lists the orders in SQL after publishing the
        outcome to Redis, and this check reads Redis after the order is in SQL: whichever comes
        second sees the other, so no order is missed; both refund under the same key, so none
        is refunded twice."""
        if order.community_id is None:
            return
        group = await self.store.group_summary(order.sale_id, order.community_id)
        if group is None:
            return
        price = int(group.get("group_price_fen") or 0)
        if group.get("status") != "succeeded" or not 0 < price < order.unit_price_fen:
            return
        await refunds.refund_difference(
            self.uow, self.payments, order.id, price, f"group-buy {group['id']} succeeded",
            refunds.rebate_key(order.id, group["id"]))

    # --- release / expire ----------------------------------------------------------------------

    async def release(self, hold_id: str, actor: Principal) -> dict[str, Any]:
        """The buyer gives a hold back (an admin may release anyone's)."""
        sale_id = sale_of_hold(hold_id)
        result = await self.store.release(hold_id, None if actor.is_admin else actor.user_id)
        for provider in self.payments:
            if not isinstance(provider, ClosingProvider):
                continue
            # Each provider's order for it too (the buyer may have started with both), so it
            # cannot be paid after all. Best effort: the hold is given back either way, and a
            # payment that lands on it anyway is returned.
            try:
                await provider.close(hold_id)
            except Exception:
                log.warning("provider order not closed",
                            extra={"hold_id": hold_id, "provider": getattr(provider, "name", "")},
                            exc_info=True)
        await self.publish_stock(sale_id, result)
        # release.lua does not hand back the summary: read it with progress, and a version.
        await self.publish_group(sale_id, result["community"], 0, 0)
        return result

    async def expire(self, sale_id: int) -> int:
        """Return expired holds of one sale to stock; publishes when anything moved."""
        result = await self.store.expire(sale_id)
        if result["expired"]:
            # Stock and every group-buy's progress, read again with their version.
            await self.settle(sale_id, force=True)
        elif self._settled.get(sale_id) != int(result.get("ver") or 0):
            # Quiet now, and changed since this process last said where it stands: say it.
            await self.settle(sale_id)
        return int(result["expired"])

    async def sale_event(self, kind: str, sale: Sale, product_name: str) -> None:
        """sale_opened / sale_closed with the sale's description and live counts."""
        counts = await self.store.counts(sale.id)
        data = sale.public_dict()
        card = SaleOpened if kind == "sale_opened" else SaleClosed
        await self.bus.publish(DomainEvent(kind, sale.session_id, card(
            sale_id=sale.id, product_id=sale.product_id, product_name=product_name,
            price_fen=sale.price_fen, community_price_fen=sale.community_price_fen,
            initial=sale.stock, remaining=counts.remaining if counts else sale.stock,
            held=counts.held if counts else 0, sold=counts.sold if counts else 0,
            gift_first_n=sale.gift_first_n,
            gift_left=counts.gift_left if counts else sale.gift_first_n,
            starts_at=data["starts_at"], ends_at=data["ends_at"], status=data["status"],
            ver=counts.ver if counts else 0,
        )))


def validate_qty(qty: int, limit: int = MAX_QTY) -> None:
    """Kept here so domain callers outside HTTP get the same bounds as the route."""
    from commerce.errors import InvalidInput

    if not 1 <= qty <= limit:
        raise InvalidInput(f"数量必须在 1 到 {limit} 之间 / qty must be 1..{limit}", field="qty")
