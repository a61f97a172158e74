"""Flash sale under contention, through the HTTP API, on real Redis and both SQL databases."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

from commerce.accounts import Principal, Role
from commerce.events import DomainEvent
from commerce.orders import Order
from server.commerce_keys import checkout_key
from server.keys import database_key, events_key
from tests.commerce_support import bulk_buyers, hold, make_shop, pay
from tests.conftest import Api


@pytest.mark.races
async def test_2000_attempts_500_buyers_100_units_exactly_100_sold(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    sale = await shop.sale(stock=100, per_buyer_limit=2, gift_first_n=30,
                           gift_text="前30名下单再送一盒桑葚")
    events: list[DomainEvent] = []

    async def listen(event: DomainEvent) -> None:
        events.append(event)

    api.app[events_key].subscribe(listen)
    buyers = await bulk_buyers(api, 500)
    # Four attempts per buyer: two of them are a retry of the same Idempotency-Key.
    attempts: list[tuple[int, str, str]] = []
    for user_id, token in buyers:
        first, second = uuid.uuid4().hex, uuid.uuid4().hex
        attempts += [(user_id, token, first), (user_id, token, first), (user_id, token, second),
                     (user_id, token, uuid.uuid4().hex)]
    assert len(attempts) == 2000

    async def attempt(user_id: int, token: str, key: str) -> tuple[int, str, int, dict[str, Any]]:
        status, body = await hold(api, sale["id"], token, 1, key)
        return user_id, key, status, body

    results = await asyncio.gather(*(attempt(*a) for a in attempts))
    statuses = Counter(status for _u, _k, status, _b in results)
    assert set(statuses) <= {201, 409}, statuses
    codes = Counter(b["error"]["code"] for _u, _k, s, b in results if s == 409)
    assert set(codes) <= {"sold_out", "over_limit"}, codes

    by_key: dict[str, set[str]] = {}
    holds_of: dict[int, set[str]] = {}
    for user_id, key, status, body in results:
        if status == 201:
            by_key.setdefault(key, set()).add(body["hold_id"])
            holds_of.setdefault(user_id, set()).add(body["hold_id"])
            assert body["remaining"] >= 0 and body["rank"] >= 1
    # The same key never made a second hold, and nobody holds more than the limit.
    assert all(len(ids) == 1 for ids in by_key.values())
    all_holds = {h for ids in holds_of.values() for h in ids}
    assert len(all_holds) == 100
    assert max(len(ids) for ids in holds_of.values()) <= 2

    resp = await api.client.get(f"/api/sales/{sale['id']}")
    view = await resp.json()
    assert (view["initial"], view["remaining"], view["held"], view["sold"]) == (100, 0, 100, 0)
    stock_events = [e for e in events if e.kind == "stock_changed"]
    assert stock_events and all(e.session_id == shop.session_id for e in stock_events)
    assert min(e.data["remaining"] for e in stock_events) == 0

    tokens = dict(buyers)
    owner = {h: uid for uid, ids in holds_of.items() for h in ids}
    paid = await asyncio.gather(*(pay(api, h, tokens[owner[h]]) for h in sorted(all_holds)))
    assert all(status == 200 and body["status"] == "paid" for status, body in paid), paid[:3]
    # Paying again answers the same order.
    again = await pay(api, sorted(all_holds)[0], tokens[owner[sorted(all_holds)[0]]])
    assert again == paid[0]

    async with api.app[database_key].session() as db:
        orders = list((await db.execute(select(Order).where(Order.sale_id == sale["id"]))).scalars())
    assert len(orders) == 100 and sum(o.qty for o in orders) == 100
    assert Counter(o.user_id for o in orders).most_common(1)[0][1] <= 2
    gifted = sorted(o.paid_rank for o in orders if o.gift)
    assert gifted == list(range(1, 31))
    assert sorted(o.paid_rank for o in orders) == list(range(1, 101))

    view = await (await api.client.get(f"/api/sales/{sale['id']}")).json()
    assert (view["remaining"], view["held"], view["sold"], view["gift_left"]) == (0, 0, 100, 0)
    resp = await api.client.get("/api/reconcile", headers=api.auth(api.admin_token))
    report = await resp.json()
    assert report["ok"], report
    paid_events = [e for e in events if e.kind == "order_paid"]
    assert len(paid_events) == 100
    assert set(paid_events[0].data) == {"order_id", "sale_id", "user_id", "qty", "community_id"}


async def test_a_batch_of_reservations_tells_the_room_its_newest_stock_once(api: Api) -> None:
    """Concurrent reservations of one sale go to Redis as one script call; the room keeps only
    the newest stock, so the batch publishes one stock_changed carrying the last answer's
    version, and a later reservation publishes again."""
    shop = await make_shop(api)
    sale = await shop.sale(stock=100, per_buyer_limit=2)
    events: list[DomainEvent] = []

    async def listen(event: DomainEvent) -> None:
        if event.kind == "stock_changed":
            events.append(event)

    api.app[events_key].subscribe(listen, kinds=("stock_changed",))
    checkout = api.app[checkout_key]
    buyers = [Principal(user_id, f"b{user_id}", Role.VIEWER)
              for user_id, _token in await bulk_buyers(api, 41)]
    answers = await asyncio.gather(*(checkout.reserve(sale["id"], buyer, 1, None, uuid.uuid4().hex)
                                     for buyer in buyers[:40]))
    assert sorted(a["rank"] for a in answers) == list(range(1, 41))
    newest = max(answers, key=lambda a: int(a["ver"]))
    assert len(events) == 1, [e.data for e in events]
    assert events[0].data == {"sale_id": sale["id"], "remaining": 60, "held": 40, "sold": 0,
                              "gift_left": newest["gift_left"], "ver": int(newest["ver"])}

    later = await checkout.reserve(sale["id"], buyers[40], 1, None, uuid.uuid4().hex)
    assert [e.data["remaining"] for e in events] == [60, 59]
    assert events[1].data["ver"] == int(later["ver"]) > int(newest["ver"])


async def test_idempotent_retry_returns_the_same_answer_even_after_sold_out(api: Api) -> None:
    shop = await make_shop(api)
    sale = await shop.sale(stock=1, per_buyer_limit=1)
    (_a, ta), (_b, tb) = await bulk_buyers(api, 2)
    status, first = await hold(api, sale["id"], ta, 1, "same")
    assert status == 201
    assert await hold(api, sale["id"], ta, 1, "same") == (201, first)
    status, body = await hold(api, sale["id"], tb, 1, "k1")
    assert (status, body["error"]["code"]) == (409, "sold_out")
    # B's key "same" is B's own: keys are scoped per buyer, so it is not A's hold.
    status, body = await hold(api, sale["id"], tb, 1, "same")
    assert (status, body["error"]["code"]) == (409, "sold_out")
    resp = await api.client.delete(f"/api/holds/{first['hold_id']}", headers=api.auth(ta))
    assert resp.status == 200
    # Stock is back, but the retried key keeps its first answer; a new key gets the unit.
    assert (await hold(api, sale["id"], tb, 1, "k1"))[1]["error"]["code"] == "sold_out"
    status, body = await hold(api, sale["id"], tb, 1, "k2")
    assert status == 201 and body["remaining"] == 0


async def test_over_limit_and_qty_counts(api: Api) -> None:
    shop = await make_shop(api)
    sale = await shop.sale(stock=10, per_buyer_limit=3)
    ((_u, token),) = await bulk_buyers(api, 1)
    assert (await hold(api, sale["id"], token, 2))[0] == 201
    status, body = await hold(api, sale["id"], token, 2)
    assert (status, body["error"]["code"]) == (409, "over_limit")
    status, body = await hold(api, sale["id"], token, 1, "one")
    assert status == 201 and body["remaining"] == 7 and body["qty"] == 1
    # A retry of that key asking for more still answers the hold it made: one unit.
    status, again = await hold(api, sale["id"], token, 3, "one")
    assert status == 201 and again["hold_id"] == body["hold_id"] and again["qty"] == 1


async def test_expiry_returns_stock_and_paying_late_fails(make_api: Any, settings: Any) -> None:
    api = await make_api(settings.with_(hold_ttl_s=1))
    shop = await make_shop(api)
    sale = await shop.sale(stock=3, per_buyer_limit=3)
    ((_u, token),) = await bulk_buyers(api, 1)
    status, body = await hold(api, sale["id"], token, 3)
    assert status == 201 and body["remaining"] == 0
    for _ in range(40):
        await asyncio.sleep(0.1)
        view = await (await api.client.get(f"/api/sales/{sale['id']}")).json()
        if view["remaining"] == 3:
            break
    assert (view["remaining"], view["held"], view["sold"]) == (3, 0, 0)
    status, late = await pay(api, body["hold_id"], token)
    assert (status, late["error"]["code"]) == (409, "hold_expired")
    # The buyer's allowance came back with the stock.
    assert (await hold(api, sale["id"], token, 3))[0] == 201


async def test_not_open_then_ended(api: Api) -> None:
    from datetime import UTC, datetime, timedelta

    shop = await make_shop(api)
    events: list[DomainEvent] = []

    async def listen(event: DomainEvent) -> None:
        events.append(event)

    api.app[events_key].subscribe(listen)
    later = datetime.now(UTC) + timedelta(hours=1)
    sale = await shop.sale(starts_at=later.isoformat())
    assert sale["status"] == "scheduled" and sale["starts_in_s"] > 3500
    ((_u, token),) = await bulk_buyers(api, 1)
    status, body = await hold(api, sale["id"], token, 1, "k")
    assert (status, body["error"]["code"]) == (409, "not_open")
    # Another product: the loquats' scheduled sale runs on, and one product sells once at a time.
    open_sale = await shop.sale(product_id=await shop.new_product("初榨橄榄油"))
    resp = await api.client.post(f"/api/sales/{open_sale['id']}/close",
                                 headers=api.auth(shop.host_token))
    assert resp.status == 200 and (await resp.json())["status"] == "closed"
    status, body = await hold(api, open_sale["id"], token, 1)
    assert (status, body["error"]["code"]) == (409, "ended")
    fields = {"sale_id", "product_id", "product_name", "price_fen", "community_price_fen", "initial",
              "remaining", "held", "sold", "gift_first_n", "gift_left", "starts_at", "ends_at",
              "status", "ver"}
    opened = [e for e in events if e.kind == "sale_opened"]
    closed = [e for e in events if e.kind == "sale_closed"]
    assert [e.data["status"] for e in opened] == ["scheduled", "open"]
    assert len(closed) == 1 and closed[0].data["status"] == "closed"
    assert all(set(e.data) == fields and e.session_id == shop.session_id for e in opened + closed)
    assert opened[0].data["product_name"] == "白沙枇杷"
