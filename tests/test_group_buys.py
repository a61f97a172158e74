"""Group-buys per community: progress from holds + paid orders, outcome at the deadline."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from commerce import accounts, group_buys
from commerce.events import DomainEvent
from server.commerce_keys import checkout_key
from server.keys import database_key, events_key
from tests.commerce_support import bulk_buyers, community_with, hold, make_shop, pay
from tests.conftest import Api


async def _group(api: Api, host_token: str, sale_id: int, cid: int, **fields: Any) -> dict[str, Any]:
    body = {"community_id": cid, "threshold": 2, "unit": "people", "group_price_fen": 700,
            "deadline": (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat(), **fields}
    resp = await api.client.post(f"/api/sales/{sale_id}/group-buys", json=body,
                                 headers=api.auth(host_token))
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def _outcome(api: Api, group_id: int) -> dict[str, Any]:
    for _ in range(80):
        view = dict(await (await api.client.get(f"/api/group-buys/{group_id}")).json())
        if view["status"] != "open" and view["settled"]:
            return view
        await asyncio.sleep(0.1)
    raise AssertionError("the deadline worker never decided")


async def _orders(api: Api, token: str) -> list[dict[str, Any]]:
    return list((await (await api.client.get("/api/orders", headers=api.auth(token))).json())["items"])


async def test_success_charges_the_group_price(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    buyers = await bulk_buyers(api, 3)
    cid = await community_with(api, "阳光花园", [uid for uid, _t in buyers])
    sale = await shop.sale(stock=100, price_fen=1000, community_ids=[cid], community_price_fen=900)
    events: list[DomainEvent] = []

    async def listen(event: DomainEvent) -> None:
        events.append(event)

    api.app[events_key].subscribe(listen)
    group = await _group(api, shop.host_token, sale["id"], cid, threshold=2)
    assert (group["count"], group["threshold"], group["community_name"]) == (0, 2, "阳光花园")
    (_a, ta), (_b, tb), (_c, tc) = buyers
    for token, qty in ((ta, 2), (tb, 1)):
        _s, held = await hold(api, sale["id"], token, qty)
        assert (await pay(api, held["hold_id"], token))[0] == 200
    _s, late_hold = await hold(api, sale["id"], tc, 1)
    progress = [e.data for e in events if e.kind == "group_progress"]
    assert progress[-1]["count"] == 3 and progress[-1]["unit"] == "people"
    assert set(progress[-1]) == {"group_id", "sale_id", "community_id", "community_name", "count",
                                 "threshold", "unit", "deadline", "status", "ver"}

    view = await _outcome(api, group["group_id"])
    assert view["status"] == "succeeded" and view["count"] == 3
    (order_a,) = await _orders(api, ta)
    (order_b,) = await _orders(api, tb)
    assert order_a["refunded_fen"] == (900 - 700) * 2 and order_b["refunded_fen"] == 200
    assert order_a["status"] == "paid"
    # A hold still alive at the deadline pays the group price.
    assert (await pay(api, late_hold["hold_id"], tc))[0] == 200
    (order_c,) = await _orders(api, tc)
    assert (order_c["unit_price_fen"], order_c["refunded_fen"]) == (700, 0)
    outcomes = [e.data for e in events if e.kind == "group_outcome"]
    assert len(outcomes) == 1 and outcomes[0]["status"] == "succeeded"


async def test_failure_refunds_everyone_and_returns_stock(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    buyers = await bulk_buyers(api, 4)
    cid = await community_with(api, "翠湖小区", [uid for uid, _t in buyers[:3]])
    sale = await shop.sale(stock=10, price_fen=1000, community_ids=[cid])
    group = await _group(api, shop.host_token, sale["id"], cid, threshold=5, unit="units")
    (_a, ta), (_b, tb), (_c, tc), (_d, outsider) = buyers
    for token in (ta, tb):
        _s, held = await hold(api, sale["id"], token, 2)
        assert (await pay(api, held["hold_id"], token))[0] == 200
    status, live = await hold(api, sale["id"], tc, 1)
    assert status == 201, live
    _s, other = await hold(api, sale["id"], outsider, 1)  # not in the community: unaffected
    assert (await (await api.client.get(f"/api/group-buys/{group['group_id']}")).json())["count"] == 5
    # One unit is given back before the deadline: 4 < 5.
    assert (await api.client.delete(f"/api/holds/{live['hold_id']}",
                                    headers=api.auth(tc))).status == 200
    view = await _outcome(api, group["group_id"])
    assert view["status"] == "failed" and view["count"] == 4
    for token in (ta, tb):
        (order,) = await _orders(api, token)
        assert order["status"] == "refunded" and order["refunded_fen"] == order["amount_fen"]
    sale_view = await (await api.client.get(f"/api/sales/{sale['id']}")).json()
    assert (sale_view["remaining"], sale_view["held"], sale_view["sold"]) == (9, 1, 0)
    assert (await pay(api, other["hold_id"], outsider))[0] == 200
    report = await (await api.client.get("/api/reconcile", headers=api.auth(api.admin_token))).json()
    assert report["ok"], report


async def test_failure_may_proceed_at_normal_price_and_outcome_is_decided_once(api: Api) -> None:
    shop = await make_shop(api)
    buyers = await bulk_buyers(api, 1)
    cid = await community_with(api, "金桂苑", [buyers[0][0]])
    sale = await shop.sale(stock=10, price_fen=1000, community_ids=[cid])
    group = await _group(api, shop.host_token, sale["id"], cid, threshold=3, on_failure="proceed",
                         deadline=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
    _s, held = await hold(api, sale["id"], buyers[0][1], 1)
    assert (await pay(api, held["hold_id"], buyers[0][1]))[0] == 200
    checkout = api.app[checkout_key]
    # Deciding directly (as after a restart) twice: one outcome, applied once.
    assert await group_buys.decide(checkout, group["group_id"]) == "failed"
    assert await group_buys.decide(checkout, group["group_id"]) == "failed"
    (order,) = await _orders(api, buyers[0][1])
    assert (order["status"], order["refunded_fen"]) == ("paid", 0)


async def test_progress_and_outcome_survive_a_restart(make_api: Any, settings: Any) -> None:
    api = await make_api(settings)
    shop = await make_shop(api)
    buyers = await bulk_buyers(api, 2)
    cid = await community_with(api, "绿城小区", [uid for uid, _t in buyers])
    sale = await shop.sale(stock=10, price_fen=1000, community_ids=[cid])
    group = await _group(api, shop.host_token, sale["id"], cid, threshold=2,
                         deadline=(datetime.now(UTC) + timedelta(seconds=4)).isoformat())
    for _uid, token in buyers:
        _s, held = await hold(api, sale["id"], token, 1)
        assert (await pay(api, held["hold_id"], token))[0] == 200
    await api.client.close()  # the process goes away; Redis (AOF) and SQL stay

    again = await make_api(settings)
    view = await (await again.client.get(f"/api/group-buys/{group['group_id']}")).json()
    assert (view["status"], view["count"]) == ("open", 2)
    # A reservation after the restart still counts towards the same group (summary restored).
    events: list[DomainEvent] = []

    async def listen(event: DomainEvent) -> None:
        events.append(event)

    again.app[events_key].subscribe(listen)
    ((late_id, late),) = await bulk_buyers(again, 1)
    async with again.app[database_key].session() as db:
        await accounts.add_member(db, cid, late_id, approved_by=1)
    assert (await hold(again, sale["id"], late, 1, community_id=cid))[0] == 201
    progress = [e.data for e in events if e.kind == "group_progress"]
    assert progress and progress[-1]["count"] == 3 and progress[-1]["group_id"] == group["group_id"]
    view = await _outcome(again, group["group_id"])
    assert view["status"] == "succeeded" and view["count"] == 3
    for _uid, token in buyers:
        (order,) = await _orders(again, token)
        assert order["refunded_fen"] == 1000 - 700
