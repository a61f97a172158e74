"""Orders: bad input, ownership, pickup and refund steps, payment callbacks, community price."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import pytest

from commerce.payments import PaymentCallback
from server.commerce_keys import checkout_key
from tests.commerce_support import bulk_buyers, community_with, hold, make_shop, pay
from tests.conftest import Api


async def test_bad_input_gets_clear_4xx(api: Api) -> None:
    shop = await make_shop(api)
    sale = await shop.sale(stock=5, per_buyer_limit=2)
    (_a, ta), (_b, tb) = await bulk_buyers(api, 2)
    for qty in (0, -1, 10**12, 1.5, "2", "abc", None, True):
        status, body = await hold(api, sale["id"], ta, qty)
        assert (status, body["error"]["code"]) == (400, "validation_failed"), (qty, body)
    status, body = await hold(api, 999999, ta, 1)
    assert (status, body["error"]["code"]) == (404, "sale_not_found")
    resp = await api.client.post(f"/api/sales/{sale['id']}/holds", data=b"{nope",
                                 headers={**api.auth(ta), "Content-Type": "application/json"})
    assert (resp.status, (await resp.json())["error"]["code"]) == (400, "bad_json")
    resp = await api.client.post(f"/api/sales/{sale['id']}/holds", json={"qty": 1})
    assert resp.status == 401
    resp = await api.client.post(f"/api/sales/{sale['id']}/holds", json={"qty": 1},
                                 headers={**api.auth(ta), "Idempotency-Key": "x" * 101})
    assert (resp.status, (await resp.json())["error"]["code"]) == (400, "invalid_input")

    status, mine = await hold(api, sale["id"], ta, 1)
    assert status == 201
    status, body = await pay(api, mine["hold_id"], tb)  # someone else's hold
    assert (status, body["error"]["code"]) == (403, "forbidden")
    resp = await api.client.delete(f"/api/holds/{mine['hold_id']}", headers=api.auth(tb))
    assert resp.status == 403
    for bad in ("nope", "1-x", "../1"):
        status, body = await pay(api, bad, ta)
        assert status == 404, (bad, body)
    status, body = await pay(api, f"{sale['id']}-9999", ta)
    assert (status, body["error"]["code"]) == (404, "hold_not_found")

    # Viewers cannot open sales; sale fields are bounded.
    resp = await api.client.post(f"/api/sessions/{shop.session_id}/sales", headers=api.auth(ta),
                                 json={"product_id": shop.product_id, "stock": 1, "price_fen": 1,
                                       "per_buyer_limit": 1})
    assert resp.status == 403
    for field, value in (("stock", 0), ("stock", 10**9), ("price_fen", -5), ("per_buyer_limit", 0)):
        bad_sale = await shop.sale(expect=400, **{field: value})
        assert bad_sale["error"]["code"] == "validation_failed"
    resp = await api.client.post("/api/products", json={"name": "x", "price_fen": "12"},
                                 headers=api.auth(shop.host_token))
    assert resp.status == 400


async def test_order_lifecycle_pickup_and_refund_returns_stock(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    (uid, token), (_o, other) = await bulk_buyers(api, 2)
    cid = await community_with(api, "阳光花园", [uid])
    # The community is the admin's (community_with): its pickup points are the admin's to add.
    resp = await api.client.post(f"/api/communities/{cid}/pickup-points",
                                 json={"name": "3号楼门卫室"}, headers=api.auth(api.admin_token))
    assert resp.status == 201
    point_id = (await resp.json())["id"]
    sale = await shop.sale(stock=4, per_buyer_limit=4, community_ids=[cid])
    held = [(await hold(api, sale["id"], token, 1))[1] for _ in range(2)]
    orders = [(await pay(api, h["hold_id"], token))[1]["order_id"] for h in held]

    mine = (await (await api.client.get("/api/orders", headers=api.auth(token))).json())["items"]
    assert {o["id"] for o in mine} == set(orders)
    first = next(o for o in mine if o["id"] == orders[0])
    assert first["pickup_point_id"] == point_id and len(first["pickup_code"]) == 6
    assert (await (await api.client.get("/api/orders", headers=api.auth(other))).json())["items"] == []
    resp = await api.client.get(f"/api/orders/{orders[0]}", headers=api.auth(other))
    assert resp.status == 403

    host = api.auth(shop.host_token)
    resp = await api.client.post(f"/api/orders/{orders[0]}/picked-up", json={"pickup_code": "1"},
                                 headers=host)
    assert (resp.status, (await resp.json())["error"]["code"]) == (409, "invalid_state")
    assert (await api.client.post(f"/api/orders/{orders[0]}/ready", headers=host)).status == 200
    wrong = "000000" if first["pickup_code"] != "000000" else "111111"
    resp = await api.client.post(f"/api/orders/{orders[0]}/picked-up", json={"pickup_code": wrong},
                                 headers=host)
    assert resp.status == 403
    resp = await api.client.post(f"/api/orders/{orders[0]}/picked-up",
                                 json={"pickup_code": first["pickup_code"]}, headers=host)
    assert resp.status == 200 and (await resp.json())["status"] == "picked_up"
    resp = await api.client.post(f"/api/orders/{orders[0]}/refund", json={}, headers=host)
    assert (resp.status, (await resp.json())["error"]["code"]) == (409, "invalid_state")
    resp = await api.client.post(f"/api/orders/{orders[0]}/complete", headers=api.auth(token))
    assert resp.status == 200 and (await resp.json())["status"] == "completed"

    view = await (await api.client.get(f"/api/sales/{sale['id']}")).json()
    assert (view["remaining"], view["sold"]) == (2, 2)
    resp = await api.client.post(f"/api/orders/{orders[1]}/refund", json={"reason": "买多了"},
                                 headers=api.auth(token))
    assert resp.status == 403  # buyers ask; staff refund
    resp = await api.client.post(f"/api/orders/{orders[1]}/refund", json={"reason": "买多了"},
                                 headers=host)
    refunded = await resp.json()
    assert resp.status == 200 and refunded["status"] == "refunded"
    assert refunded["refunded_fen"] == refunded["amount_fen"]
    view = await (await api.client.get(f"/api/sales/{sale['id']}")).json()
    assert (view["remaining"], view["held"], view["sold"]) == (3, 0, 1)

    detail = await (await api.client.get(f"/api/orders/{orders[0]}", headers=api.auth(token))).json()
    steps = [(h["from"], h["to"]) for h in detail["history"]]
    assert steps == [("held", "paid"), ("paid", "ready_for_pickup"),
                     ("ready_for_pickup", "picked_up"), ("picked_up", "completed")]
    assert all(h["at"] for h in detail["history"]) and detail["history"][1]["actor_id"] == shop.host_id
    report = await (await api.client.get("/api/reconcile",
                                         headers=api.auth(api.admin_token))).json()
    assert report["ok"], report


async def test_community_price_only_for_members(api: Api) -> None:
    shop = await make_shop(api)
    (member, mt), (outsider, ot), (late, lt) = await bulk_buyers(api, 3)
    cid = await community_with(api, "翠湖小区", [member])
    sale = await shop.sale(stock=10, price_fen=1000, community_ids=[cid], community_price_fen=800)
    status, body = await hold(api, sale["id"], mt, 1)
    assert status == 201 and body["unit_price_fen"] == 800 and body["community_id"] == cid
    status, body = await hold(api, sale["id"], ot, 1, community_id=cid)
    assert (status, body["error"]["code"]) == (409, "not_member")
    status, body = await hold(api, sale["id"], ot, 1)
    assert status == 201 and body["unit_price_fen"] == 1000

    only = await shop.sale(product_id=await shop.new_product("土鸡蛋"), stock=10, price_fen=900,
                           community_ids=[cid], members_only=True)
    status, body = await hold(api, only["id"], ot, 1, "k")
    assert (status, body["error"]["code"]) == (409, "not_member")
    # Approved after the sale opened: the refusal path re-checks SQL once and lets them in.
    resp = await api.client.post(f"/api/communities/{cid}/members", json={"user_id": late},
                                 headers=api.auth(api.admin_token))
    assert resp.status in (200, 201), await resp.text()
    status, body = await hold(api, only["id"], lt, 1, "k")
    assert status == 201 and body["community_id"] == cid
    assert outsider != late


async def test_payment_callback_is_signed_and_replay_safe(api: Api) -> None:
    shop = await make_shop(api)
    sale = await shop.sale(stock=3)
    ((uid, token),) = await bulk_buyers(api, 1)
    _s, held = await hold(api, sale["id"], token, 1)
    provider = api.app[checkout_key].provider
    forged = PaymentCallback(held["hold_id"], "ext_1", 1000, int(time.time()), "n1", "00" * 32)
    resp = await api.client.post("/api/payments/callback", json=asdict(forged))
    assert (resp.status, (await resp.json())["error"]["code"]) == (400, "bad_payment_callback")
    signed = provider.sign(PaymentCallback(  # type: ignore[attr-defined]
        held["hold_id"], "ext_1", 1000, int(time.time()), "n2"))
    resp = await api.client.post("/api/payments/callback", json=asdict(signed))
    assert resp.status == 200
    order = await resp.json()
    # The provider retries the same callback: same order, no second sale.
    resp = await api.client.post("/api/payments/callback", json=asdict(signed))
    assert resp.status == 200 and await resp.json() == order
    stale = provider.sign(PaymentCallback(  # type: ignore[attr-defined]
        held["hold_id"], "ext_1", 1000, int(time.time()) - 3600, "n3"))
    resp = await api.client.post("/api/payments/callback", json=asdict(stale))
    assert resp.status == 400
    view: dict[str, Any] = await (await api.client.get(f"/api/sales/{sale['id']}")).json()
    assert (view["sold"], view["remaining"]) == (1, 2)
    assert (await pay(api, held["hold_id"], token))[1]["order_id"] == order["order_id"]
    assert uid > 0


@pytest.mark.races
async def test_paying_one_hold_twice_at_once_makes_one_order(api: Api) -> None:
    import asyncio

    shop = await make_shop(api)
    sale = await shop.sale(stock=2)
    ((_uid, token),) = await bulk_buyers(api, 1)
    _s, held = await hold(api, sale["id"], token, 1)
    first, second = await asyncio.gather(pay(api, held["hold_id"], token),
                                         pay(api, held["hold_id"], token))
    assert first[0] == second[0] == 200 and first[1]["order_id"] == second[1]["order_id"]
    view = await (await api.client.get(f"/api/sales/{sale['id']}")).json()
    assert (view["sold"], view["held"], view["remaining"]) == (1, 0, 1)
    assert len((await (await api.client.get("/api/orders", headers=api.auth(token))).json())["items"]) == 1


async def test_products_and_batches(api: Api) -> None:
    host_id, host_token = await api.user("host")
    headers = api.auth(host_token)
    resp = await api.client.post("/api/batches", headers=headers, json={
        "code": "OIL-2026-01", "farm": "老张合作农场", "plot": "东坡", "harvested_at":
        "2026-11-01T06:00:00+00:00"})
    assert resp.status == 201, await resp.text()
    batch = await resp.json()
    resp = await api.client.post("/api/batches", headers=headers, json={"code": "OIL-2026-01"})
    assert (resp.status, (await resp.json())["error"]["code"]) == (409, "conflict")
    for ref in (batch["id"], "OIL-2026-01"):
        found = await (await api.client.get(f"/api/batches/{ref}")).json()
        assert (found["code"], found["plot"]) == ("OIL-2026-01", "东坡")
    assert (await api.client.get("/api/batches/NOPE-1")).status == 404
    resp = await api.client.post("/api/products", headers=headers, json={
        "name": "初榨橄榄油", "price_fen": 12800, "unit": "瓶", "batch_id": batch["id"]})
    assert resp.status == 201
    product = await resp.json()
    assert set(product) >= {"id", "name", "price_fen", "unit", "batch_id"}
    assert product["batch_id"] == batch["id"] and host_id > 0
    mine = await (await api.client.get("/api/products", headers=headers)).json()
    assert [p["id"] for p in mine] == [product["id"]]
    _vid, viewer = await api.user("viewer")
    resp = await api.client.post("/api/products", headers=api.auth(viewer),
                                 json={"name": "x", "price_fen": 1})
    assert resp.status == 403


async def test_reconcile_finds_and_repairs_a_refund_redis_missed(any_db_api: Api) -> None:
    from commerce import orders
    from commerce.orders import OrderStatus
    from server.keys import database_key

    api = any_db_api
    shop = await make_shop(api)
    sale = await shop.sale(stock=5)
    ((_uid, token),) = await bulk_buyers(api, 1)
    _s, held = await hold(api, sale["id"], token, 2)
    order_id = (await pay(api, held["hold_id"], token))[1]["order_id"]
    # The process died after the SQL refund and before refund.lua: SQL says refunded, Redis sold.
    async with api.app[database_key].session() as db:
        order = await orders.get_order(db, order_id)
        await orders.transition(db, order, OrderStatus.REFUNDED, None, "crash window")
    admin = api.auth(api.admin_token)
    report = await (await api.client.get(f"/api/reconcile?sale={sale['id']}", headers=admin)).json()
    (row,) = report["sales"]
    assert not report["ok"] and row["sql_drift"] == 2 and row["missing_refunds"] == [held["hold_id"]]
    report = await (await api.client.post(f"/api/reconcile?sale={sale['id']}", headers=admin)).json()
    (row,) = report["sales"]
    assert report["ok"] and row["repaired"] == 1, report
    assert (row["remaining"], row["sold"], row["sql_sold"]) == (5, 0, 0)
    resp = await api.client.get("/api/reconcile?sale=abc", headers=admin)
    assert resp.status == 400
    assert (await api.client.get("/api/reconcile", headers=api.auth(token))).status == 403
