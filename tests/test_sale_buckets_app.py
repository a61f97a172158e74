"""A sale whose stock is split over buckets (`buckets` > 1), through the app's HTTP flows on real
Redis and both SQL databases: holds, idempotency, limits, community prices, first-N gifts,
payment, release, expiry, refund, close, the room's stock events and reconcile after a crash."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from sqlalchemy import select

from commerce.events import DomainEvent
from commerce.flash_sale.buckets import bucket_keys, buyer_key
from commerce.flash_sale.store import now_ms
from commerce.orders import Order
from realtime.state import read_snapshot
from server.commerce_keys import checkout_key
from server.keys import database_key, events_key, redis_key
from tests.commerce_support import bulk_buyers, community_with, hold, make_shop, pay
from tests.conftest import Api


def _listen(api: Api) -> list[DomainEvent]:
    events: list[DomainEvent] = []

    async def listen(event: DomainEvent) -> None:
        events.append(event)

    api.app[events_key].subscribe(listen)
    return events


def _stock_events(events: list[DomainEvent], sale_id: int) -> list[dict[str, Any]]:
    return [e.data for e in events if e.kind == "stock_changed" and e.data["sale_id"] == sale_id]


async def _view(api: Api, sale_id: int, token: str | None = None) -> dict[str, Any]:
    headers = api.auth(token) if token else {}
    resp = await api.client.get(f"/api/sales/{sale_id}", headers=headers)
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def _orders(api: Api, sale_id: int) -> list[Order]:
    async with api.app[database_key].session() as db:
        return list((await db.execute(select(Order).where(Order.sale_id == sale_id))).scalars())


async def _reconcile(api: Api, sale_id: int, repair: bool = False) -> dict[str, Any]:
    method = api.client.post if repair else api.client.get
    resp = await method(f"/api/reconcile?sale={sale_id}", headers=api.auth(api.admin_token))
    assert resp.status == 200, await resp.text()
    report: dict[str, Any] = (await resp.json())["sales"][0]
    return report


async def test_a_bucketed_sale_goes_through_every_flow(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    (a, ta), (_b, tb) = await bulk_buyers(api, 2)
    cid = await community_with(api, "翠苑", [a])
    events = _listen(api)
    plain = await shop.sale(product_id=await shop.new_product("初榨橄榄油"))
    assert plain["buckets"] == 1
    sale = await shop.sale(stock=9, per_buyer_limit=3, buckets=3, community_ids=[cid],
                           community_price_fen=800, gift_first_n=1)
    sid = sale["id"]
    assert (sale["buckets"], sale["initial"], sale["remaining"]) == (3, 9, 9)
    assert (await _view(api, sid))["buckets"] == 3

    # A member buys at her community's price; a retry of her key answers the same hold.
    status, first = await hold(api, sid, ta, 2, "a-1")
    assert status == 201, first
    assert (first["unit_price_fen"], first["community_id"], first["rank"], first["remaining"]) == \
        (800, cid, 1, 7)
    assert await hold(api, sid, ta, 2, "a-1") == (201, first)
    status, body = await hold(api, sid, ta, 2, "a-2")
    assert (status, body["error"]["code"]) == (409, "over_limit")
    # Not a member: no community price, and no buying through a community not hers.
    status, body = await hold(api, sid, tb, 1, "b-x", community_id=cid)
    assert (status, body["error"]["code"]) == (409, "not_member")
    status, second = await hold(api, sid, tb, 1, "b-1")
    assert status == 201, second
    assert (second["unit_price_fen"], second["community_id"], second["rank"]) == (1000, None, 2)
    view = await _view(api, sid, tb)
    assert (view["remaining"], view["held"], view["sold"]) == (6, 3, 0)
    assert (view["your_bought"], view["your_limit_left"]) == (1, 2)

    # Pay: the first payer gets the gift; paying again answers the same order.
    status, paid = await pay(api, first["hold_id"], ta)
    assert status == 200 and paid["status"] == "paid", paid
    assert await pay(api, first["hold_id"], ta) == (200, paid)
    (order,) = await _orders(api, sid)
    assert (order.qty, order.unit_price_fen, order.community_id, order.paid_rank, order.gift) == \
        (2, 800, cid, 1, True)

    # Give back: the unit returns, and paying the hold now is too late.
    resp = await api.client.delete(f"/api/holds/{second['hold_id']}", headers=api.auth(tb))
    assert resp.status == 200 and (await resp.json())["remaining"] == 7
    status, body = await pay(api, second["hold_id"], tb)
    assert (status, body["error"]["code"]) == (409, "hold_expired")
    assert (await _view(api, sid, tb))["your_bought"] == 0

    # A refund before pickup returns the units to stock and to the buyer's allowance.
    resp = await api.client.post(f"/api/orders/{order.id}/refund", json={"reason": "坏果"},
                                 headers=api.auth(shop.host_token))
    assert resp.status == 200, await resp.text()
    view = await _view(api, sid, ta)
    assert (view["remaining"], view["held"], view["sold"], view["your_bought"]) == (9, 0, 0, 0)
    status, third = await hold(api, sid, ta, 3, "a-3")
    assert status == 201 and third["remaining"] == 6, third

    # No group-buys on buckets: refused with a stable code.
    resp = await api.client.post(f"/api/sales/{sid}/group-buys", json={
        "community_id": cid, "threshold": 5, "deadline": "2030-01-01T00:00:00+00:00",
        "group_price_fen": 700}, headers=api.auth(shop.host_token))
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "buckets_unsupported"

    # Closed: no new holds, the hold made before keeps its window.
    resp = await api.client.post(f"/api/sales/{sid}/close", headers=api.auth(shop.host_token))
    assert resp.status == 200 and (await resp.json())["status"] == "closed"
    status, body = await hold(api, sid, tb, 1, "b-2")
    assert (status, body["error"]["code"]) == (409, "ended")
    status, paid = await pay(api, third["hold_id"], ta)
    assert status == 200 and paid["status"] == "paid"

    report = await _reconcile(api, sid)
    assert report["ok"] and report["buckets"] == 3, report
    assert (report["initial"], report["remaining"], report["held"], report["sold"]) == (9, 6, 0, 3)
    # Every stock event the room heard adds up, and the latest says where the sale stands.
    stock = _stock_events(events, sid)
    assert stock and all(e["remaining"] + e["held"] + e["sold"] == 9 for e in stock)
    latest = max(e["ver"] for e in stock)
    assert {(e["remaining"], e["held"], e["sold"]) for e in stock if e["ver"] == latest} == \
        {(6, 0, 3)}
    closed = [e for e in events if e.kind == "sale_closed" and e.data["sale_id"] == sid]
    assert len(closed) == 1 and closed[0].data["initial"] == 9
    # The room's state (what a joining viewer is sent) settles on the sums too.
    for _ in range(50):
        room = await read_snapshot(api.app[redis_key], shop.session_id)
        mine = [s for s in room["sales"] if s["sale_id"] == sid]
        if mine and (mine[0].get("remaining"), mine[0].get("held"), mine[0].get("sold")) == \
                (6, 0, 3):
            break
        await asyncio.sleep(0.1)
    assert mine and (mine[0]["remaining"], mine[0]["held"], mine[0]["sold"]) == (6, 0, 3), room


async def test_bucket_count_is_checked(api: Api) -> None:
    shop = await make_shop(api)
    for bad in (0, 17, "3"):
        body = await shop.sale(expect=400, buckets=bad)
        assert body["error"]["code"] == "validation_failed", body


@pytest.mark.races
async def test_bucketed_sale_holds_every_limit_under_identical_requests(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    sale = await shop.sale(stock=20, per_buyer_limit=2, buckets=3, gift_first_n=5)
    sid = sale["id"]
    events = _listen(api)
    buyers = await bulk_buyers(api, 16)

    # One buyer's double tap, 24 times at once: one hold, one unit counted.
    (u0, t0) = buyers[0]
    same = await asyncio.gather(*(hold(api, sid, t0, 1, "same") for _ in range(24)))
    assert {status for status, _b in same} == {201}, same[:3]
    assert len({body["hold_id"] for _s, body in same}) == 1
    assert (await _view(api, sid, t0))["your_bought"] == 1

    # The last 19 units: 15 buyers, three keys each, all at once.
    attempts = [(uid, token, uuid.uuid4().hex) for uid, token in buyers[1:] for _ in range(3)]

    async def attempt(uid: int, token: str, key: str) -> tuple[int, int, dict[str, Any]]:
        status, body = await hold(api, sid, token, 1, key)
        return uid, status, body

    results = await asyncio.gather(*(attempt(*a) for a in attempts))
    codes = Counter(b["error"]["code"] if s != 201 else "held" for _u, s, b in results)
    assert set(codes) <= {"held", "sold_out", "over_limit"}, codes
    held = [(uid, body) for uid, status, body in results if status == 201]
    assert len(held) == 19, codes
    per_buyer = Counter(uid for uid, _b in held)
    assert max(per_buyer.values()) <= 2
    ranks = sorted([same[0][1]["rank"]] + [body["rank"] for _u, body in held])
    assert ranks == list(range(1, 21))
    tokens = dict(buyers)
    for uid, token in buyers[1:]:
        assert (await _view(api, sid, token))["your_bought"] == per_buyer.get(uid, 0)
    view = await _view(api, sid)
    assert (view["remaining"], view["held"], view["sold"]) == (0, 20, 0)

    # Every hold paid at once, the double-tapped one 20 times: one order per hold.
    owner = {body["hold_id"]: uid for uid, body in held}
    owner[same[0][1]["hold_id"]] = u0
    double = await asyncio.gather(*(pay(api, same[0][1]["hold_id"], t0) for _ in range(20)))
    paid = await asyncio.gather(*(pay(api, h, tokens[uid]) for h, uid in owner.items()
                                  if uid != u0 or h != same[0][1]["hold_id"]))
    assert all(status == 200 and body["status"] == "paid" for status, body in double + paid)
    assert len({body["order_id"] for _s, body in double}) == 1
    orders = await _orders(api, sid)
    assert len(orders) == 20 and sum(o.qty for o in orders) == 20
    assert sorted(o.paid_rank for o in orders) == list(range(1, 21))
    assert sorted(o.paid_rank for o in orders if o.gift) == list(range(1, 6))
    assert Counter(o.user_id for o in orders).most_common(1)[0][1] <= 2

    view = await _view(api, sid)
    assert (view["remaining"], view["held"], view["sold"], view["gift_left"]) == (0, 0, 20, 0)
    stock = _stock_events(events, sid)
    assert all(e["remaining"] + e["held"] + e["sold"] == 20 for e in stock)
    latest = max(e["ver"] for e in stock)
    assert {(e["remaining"], e["held"], e["sold"], e["gift_left"]) for e in stock
            if e["ver"] == latest} == {(0, 0, 20, 0)}
    assert (await _reconcile(api, sid))["ok"]


async def test_bucketed_holds_expire_back_to_stock(make_api: Any, settings: Any) -> None:
    api = await make_api(settings.with_(hold_ttl_s=1))
    shop = await make_shop(api)
    sale = await shop.sale(stock=3, per_buyer_limit=3, buckets=2)
    ((_u, token),) = await bulk_buyers(api, 1)
    # Two bucket shares (2 + 1): three units at once fit in neither, one at a time in both.
    status, body = await hold(api, sale["id"], token, 3)
    assert (status, body["error"]["code"]) == (409, "sold_out")
    made = [await hold(api, sale["id"], token, 1) for _ in range(3)]
    assert [status for status, _b in made] == [201] * 3 and made[-1][1]["remaining"] == 0
    for _ in range(40):
        await asyncio.sleep(0.1)
        view = await _view(api, sale["id"])
        if view["remaining"] == 3:
            break
    assert (view["remaining"], view["held"], view["sold"]) == (3, 0, 0)
    status, late = await pay(api, made[0][1]["hold_id"], token)
    assert (status, late["error"]["code"]) == (409, "hold_expired")
    # The buyer's allowance came back with the stock.
    assert (await _view(api, sale["id"], token))["your_bought"] == 0
    assert (await hold(api, sale["id"], token, 2))[0] == 201


async def test_reconcile_finishes_what_a_dead_worker_left(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    sale = await shop.sale(stock=4, per_buyer_limit=2, buckets=2, gift_first_n=1)
    sid = sale["id"]
    (a, ta), (b, tb) = await bulk_buyers(api, 2)
    store = api.app[checkout_key].store
    status, held = await hold(api, sid, ta, 1, "a-1")
    assert status == 201
    # A worker paid the hold in its bucket and died before the payment's sale-wide step.
    await store.buckets.pay(held["hold_id"], a, "ref-dead", 1000)
    report = await _reconcile(api, sid)
    assert not report["ok"] and report["sold"] == 1 and report["log_entries"] == 0, report
    # Workers took b's allowance for two requests and died before any bucket was asked: one
    # just now (its retry hears in_flight: it may still be running), one long ago.
    take = store.buckets._run
    await take("bucket_take", [buyer_key(sid, b)], ["b-now", 1, 2, now_ms()])
    await take("bucket_take", [buyer_key(sid, b)], ["b-old", 1, 2, now_ms() - 120_000])
    status, body = await hold(api, sid, tb, 1, "b-now")
    assert (status, body["error"]["code"]) == (409, "in_flight")
    assert (await _view(api, sid, tb))["your_bought"] == 2

    report = await _reconcile(api, sid, repair=True)
    assert report["ok"] and report["repaired"] == 1, report
    (order,) = await _orders(api, sid)
    assert (order.hold_id, order.payment_ref, order.paid_rank, order.gift) == \
        (held["hold_id"], "ref-dead", 1, True)
    # The old request was given back; the recent one still counts, in flight.
    assert (await _view(api, sid, tb))["your_bought"] == 1


async def test_a_retry_settles_a_request_whose_worker_died_long_ago(api: Api) -> None:
    shop = await make_shop(api)
    sale = await shop.sale(stock=4, per_buyer_limit=2, buckets=2)
    sid = sale["id"]
    ((b, tb),) = await bulk_buyers(api, 1)
    store = api.app[checkout_key].store
    await store.buckets._run("bucket_take", [buyer_key(sid, b)], ["b-1", 2, 2, now_ms() - 120_000])
    # The retry of that key gives the units back and is served as a first try.
    status, body = await hold(api, sid, tb, 1, "b-1")
    assert status == 201 and body["qty"] == 1, body
    assert (await _view(api, sid, tb))["your_bought"] == 1

async def test_the_sweeper_finishes_a_payment_whose_worker_died(api: Api) -> None:
    shop = await make_shop(api)
    sale = await shop.sale(stock=4, per_buyer_limit=2, buckets=2)
    ((a, ta),) = await bulk_buyers(api, 1)
    status, held = await hold(api, sale["id"], ta, 1)
    assert status == 201
    # Paid (in the past, as far as the sweeper can tell) and never logged.
    await api.app[checkout_key].store.buckets.pay(held["hold_id"], a, "ref-late", 1000,
                                                  now=now_ms() - 10_000)
    for _ in range(50):
        if await _orders(api, sale["id"]):
            break
        await asyncio.sleep(0.1)
    (order,) = await _orders(api, sale["id"])
    assert (order.hold_id, order.payment_ref, order.paid_rank) == (held["hold_id"], "ref-late", 1)
    assert (await _reconcile(api, sale["id"]))["ok"]



@pytest.mark.slow
async def test_sale_stock_on_a_redis_cluster_beside_the_apps_redis(
    make_api: Any, settings: Any, cluster_ports: list[int], redis_client: Redis,
) -> None:
    api = await make_api(settings.with_(sale_redis_url=f"redis://127.0.0.1:{cluster_ports[0]}"))
    shop = await make_shop(api)
    sale = await shop.sale(stock=12, per_buyer_limit=2, buckets=3, gift_first_n=3)
    sid = sale["id"]
    client = RedisCluster(host="127.0.0.1", port=cluster_ports[0])
    try:
        await client.initialize()
        # One bucket per node, the sale's own keys on the cluster, none on the app's Redis.
        nodes = {client.get_node_from_key(bucket_keys(sid, b, 3)["meta"]).name for b in range(3)}
        assert len(nodes) == 3, nodes
        assert await client.exists(f"sale:{{{sid}}}:meta") == 1
        assert await redis_client.exists(f"sale:{{{sid}}}:meta") == 0
    finally:
        await client.aclose()

    buyers = await bulk_buyers(api, 10)
    tokens = dict(buyers)
    attempts = [(uid, token) for uid, token in buyers for _ in range(2)]
    results = await asyncio.gather(*(hold(api, sid, token, 1) for _u, token in attempts))
    owner = {body["hold_id"]: uid for (uid, _t), (status, body) in zip(attempts, results, strict=True)
             if status == 201}
    assert len(owner) == 12
    assert sorted(body["rank"] for status, body in results if status == 201) == list(range(1, 13))
    first, second, third, *_rest = sorted(owner)
    paid = await asyncio.gather(*(pay(api, h, tokens[owner[h]]) for h in (first, second)))
    assert all(status == 200 for status, _b in paid), paid
    resp = await api.client.delete(f"/api/holds/{third}", headers=api.auth(tokens[owner[third]]))
    assert resp.status == 200 and (await resp.json())["remaining"] == 1
    orders = await _orders(api, sid)
    assert sorted(o.paid_rank for o in orders) == [1, 2] and all(o.gift for o in orders)
    view = await _view(api, sid)
    assert (view["remaining"], view["held"], view["sold"], view["gift_left"]) == (1, 9, 2, 1)
    assert (await _reconcile(api, sid))["ok"]


async def test_migration_0416_goes_down_and_up(any_db_api: Api) -> None:
    """Sales made before the column read back as one-hash sales (buckets 1)."""
    from sqlalchemy import text

    from tests.test_pickup_tenancy import _alembic

    api = any_db_api
    shop = await make_shop(api)
    sale = await shop.sale(buckets=4)
    async with api.app[database_key].engine.begin() as conn:
        await conn.run_sync(_alembic, "downgrade", "0413")
        await conn.run_sync(_alembic, "upgrade", "heads")
        found = (await conn.execute(text("SELECT buckets FROM sales WHERE id = :id"),
                                    {"id": sale["id"]})).scalar_one()
    assert found == 1


async def test_a_hold_half_paid_is_answered_with_its_order(api: Api) -> None:
    """Between a payment's bucket step and its sale-wide step the hold is in neither `holds`
    nor the sale's paid answers: paying it then answers the order, never "expired"."""
    shop = await make_shop(api)
    sale = await shop.sale(stock=4, per_buyer_limit=2, buckets=2)
    ((a, ta),) = await bulk_buyers(api, 1)
    status, held = await hold(api, sale["id"], ta, 1)
    assert status == 201
    await api.app[checkout_key].store.buckets.pay(held["hold_id"], a, "ref-mid", 1000)
    status, body = await pay(api, held["hold_id"], ta)
    assert (status, body["status"]) == (200, "paid"), body
    (order,) = await _orders(api, sale["id"])
    assert (order.id, order.payment_ref, order.paid_rank) == (body["order_id"], "ref-mid", 1)


async def test_a_closed_sale_stays_active_until_its_half_paid_hold_is_an_order(api: Api) -> None:
    shop = await make_shop(api)
    sale = await shop.sale(stock=2, per_buyer_limit=2, buckets=2)
    ((a, ta),) = await bulk_buyers(api, 1)
    status, held = await hold(api, sale["id"], ta, 1)
    assert status == 201
    store = api.app[checkout_key].store
    await store.buckets.pay(held["hold_id"], a, "ref-closing", 1000)
    resp = await api.client.post(f"/api/sales/{sale['id']}/close",
                                 headers=api.auth(shop.host_token))
    assert resp.status == 200
    # Nothing is held: the sweeper retires the sale, but not before the payment is an order.
    for _ in range(80):
        if sale["id"] not in await store.active_sales():
            break
        await asyncio.sleep(0.1)
    assert sale["id"] not in await store.active_sales()
    (order,) = await _orders(api, sale["id"])
    assert (order.hold_id, order.payment_ref) == (held["hold_id"], "ref-closing")
