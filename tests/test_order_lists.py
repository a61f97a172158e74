"""Staff order lists for pickup day (filters, keyset pages, tenancy), marking many orders ready,
confirming pickups under concurrency, the CSV export and the buyer's pickup QR.
On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any

import pytest
from sqlalchemy import func, select

from commerce.events import DomainEvent
from commerce.orders import OrderTransition
from server.keys import database_key, events_key
from tests.commerce_support import Shop, bulk_buyers, hold, make_shop, pay
from tests.conftest import Api

N = 20


async def _get(api: Api, path: str, token: str, status: int = 200) -> Any:
    resp = await api.client.get(path, headers=api.auth(token))
    assert resp.status == status, f"{path}: {await resp.text()}"
    return await resp.json()


async def _post(api: Api, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    resp = await api.client.post(path, json=body, headers=api.auth(token))
    return resp.status, await resp.json()


async def _community(api: Api, token: str, name: str, member_ids: list[int]) -> tuple[int, int]:
    status, made = await _post(api, "/api/communities", token, {"name": name})
    assert status == 201, made
    for uid in member_ids:
        status, body = await _post(api, f"/api/communities/{made['id']}/members", token,
                                   {"user_id": uid})
        assert status == 201, body
    status, point = await _post(api, f"/api/communities/{made['id']}/pickup-points", token,
                                {"name": f"{name}门卫室", "address": "3号楼", "hours": "每天 9:00–20:00"})
    assert status == 201, point
    return int(made["id"]), int(point["id"])


async def _buy(api: Api, shop: Shop, sale_id: int, token: str, community_id: int | None = None,
               ) -> int:
    extra = {"community_id": community_id} if community_id else {}
    status, held = await hold(api, sale_id, token, **extra)
    assert status == 201, held
    status, paid = await pay(api, held["hold_id"], token)
    assert status == 200, paid
    return int(paid["order_id"])


async def _all_ids(api: Api, token: str, query: str, limit: int = 3) -> list[int]:
    """Walk every page of a listing; the pages must not overlap."""
    ids: list[int] = []
    cursor = ""
    for _ in range(100):
        page = await _get(api, f"/api/orders?{query}&limit={limit}{cursor}", token)
        assert len(page["items"]) <= limit
        ids += [item["id"] for item in page["items"]]
        if page["next"] is None:
            break
        cursor = f"&cursor={page['next']}"
    assert len(ids) == len(set(ids)), "pages overlap"
    return ids


async def test_filters_pages_and_tenancy(any_db_api: Api) -> None:
    api = any_db_api
    shop_a = await make_shop(api)
    shop_b = await make_shop(api)
    buyers = await bulk_buyers(api, 4)
    (b0, t0), (b1, t1), (b2, t2), (b3, t3) = buyers
    garden, garden_point = await _community(api, shop_a.host_token, "阳光花园", [b0, b1])
    lake, lake_point = await _community(api, shop_b.host_token, "翠湖小区", [b2, b3])
    sale_a = (await shop_a.sale(stock=50, per_buyer_limit=10, community_ids=[garden, lake]))["id"]
    sale_b = (await shop_b.sale(stock=50, per_buyer_limit=10, community_ids=[garden, lake]))["id"]

    a_garden = [await _buy(api, shop_a, sale_a, t, garden) for t in (t0, t1, t0, t1)]
    a_lake = [await _buy(api, shop_a, sale_a, t, lake) for t in (t2, t3)]
    b_garden = [await _buy(api, shop_b, sale_b, t0, garden)]
    b_lake = [await _buy(api, shop_b, sale_b, t, lake) for t in (t2, t3, t2)]
    everything = a_garden + a_lake + b_garden + b_lake
    desc = sorted(everything, reverse=True)

    # Admin: every filter, any combination, every page.
    admin = api.admin_token
    assert await _all_ids(api, admin, "") == desc
    assert await _all_ids(api, admin, f"session_id={shop_a.session_id}") == sorted(
        a_garden + a_lake, reverse=True)
    assert await _all_ids(api, admin, f"community_id={garden}") == sorted(
        a_garden + b_garden, reverse=True)
    assert await _all_ids(api, admin, f"pickup_point_id={lake_point}") == sorted(
        a_lake + b_lake, reverse=True)
    assert await _all_ids(api, admin, f"session_id={shop_b.session_id}&pickup_point_id={lake_point}"
                          ) == sorted(b_lake, reverse=True)
    status, marked = await _post(api, "/api/orders/ready", admin, {"order_ids": a_garden[:2]})
    assert status == 200 and marked["ready"] == a_garden[:2], marked
    assert await _all_ids(api, admin, "status=ready_for_pickup") == sorted(a_garden[:2], reverse=True)
    assert await _all_ids(api, admin, f"status=paid&community_id={garden}&session_id="
                          f"{shop_a.session_id}") == sorted(a_garden[2:], reverse=True)

    # One item carries what the pickup page shows.
    page = await _get(api, f"/api/orders?pickup_point_id={garden_point}&status=ready_for_pickup"
                           "&limit=1", admin)
    item = page["items"][0]
    assert item["id"] == a_garden[1] and item["buyer_name"] == "邻居1"
    assert item["product_name"] == "白沙枇杷" and item["qty"] == 1 and item["amount_fen"] == 1000
    assert item["pickup_point"]["name"] == "阳光花园门卫室"
    assert item["pickup_point"]["hours"] == "每天 9:00–20:00"
    assert len(item["pickup_code"]) == 6
    for key in ("created_at", "paid_at", "ready_at"):
        assert item[key].endswith("+00:00"), (key, item[key])
    assert item["picked_up_at"] is None

    # Host A: his session's orders and his community's (sold by host B too), nothing else.
    mine_a = sorted(a_garden + a_lake + b_garden, reverse=True)
    assert await _all_ids(api, shop_a.host_token, "") == mine_a
    assert await _all_ids(api, shop_a.host_token, f"session_id={shop_b.session_id}") == b_garden
    assert await _all_ids(api, shop_a.host_token, f"pickup_point_id={lake_point}") == sorted(
        a_lake, reverse=True)
    # Host B cannot list host A's orders, whichever filter he tries (only those going to his
    # own community's pickup point).
    assert await _all_ids(api, shop_b.host_token, f"session_id={shop_a.session_id}") == sorted(
        a_lake, reverse=True)
    assert await _all_ids(api, shop_b.host_token, f"community_id={garden}") == b_garden
    # One order: host A reads host B's order going to his community, not the reverse.
    await _get(api, f"/api/orders/{b_garden[0]}", shop_a.host_token)
    await _get(api, f"/api/orders/{a_garden[0]}", shop_b.host_token, status=403)
    # An assistant works the whole shop (as for single orders).
    _, assistant = await api.user("assistant")
    assert await _all_ids(api, assistant, "") == desc
    # A viewer sees her own orders only, filters or not; a host with mine=1 his own purchases.
    assert await _all_ids(api, t2, "") == sorted(a_lake[:1] + b_lake[0::2], reverse=True)
    assert await _all_ids(api, t2, f"session_id={shop_a.session_id}") == a_lake[:1]
    assert await _all_ids(api, shop_a.host_token, "mine=1") == []

    # Bad filters are refused, not ignored.
    for bad in ("status=shipped", "session_id=abc", "limit=101", "limit=0", "cursor=-1"):
        body = await _get(api, f"/api/orders?{bad}", admin, status=400)
        assert body["error"]["code"] == "invalid_input", bad


@pytest.mark.races
async def test_twenty_mark_ready_and_twenty_pickups_move_once(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    ((_, buyer),) = await bulk_buyers(api, 1)
    sale_id = (await shop.sale(stock=10, per_buyer_limit=10))["id"]
    first, second = await _buy(api, shop, sale_id, buyer), await _buy(api, shop, sale_id, buyer)
    # What tells the buyer (the notifications hook this event): once per order moved.
    announced: list[tuple[int, str]] = []

    async def heard(event: DomainEvent) -> None:
        announced.append((event.data["order_id"], event.data["status"]))

    api.app[events_key].subscribe(heard, kinds=("order_status",))

    answers = await asyncio.gather(*[_post(api, "/api/orders/ready", shop.host_token,
                                           {"order_ids": [first]}) for _ in range(N)])
    assert all(status == 200 for status, _ in answers), answers
    assert sum(body["ready"] == [first] for _, body in answers) == 1
    assert sum(body["already"] == [first] for _, body in answers) == N - 1
    singles = await asyncio.gather(*[_post(api, f"/api/orders/{second}/ready", shop.host_token)
                                     for _ in range(N)])
    assert sorted(status for status, _ in singles) == [200] + [409] * (N - 1)

    code = (await _get(api, f"/api/orders/{first}", buyer))["pickup_code"]
    pickups = await asyncio.gather(*[_post(api, f"/api/orders/{first}/picked-up", shop.host_token,
                                           {"pickup_code": code}) for _ in range(N)])
    assert sorted(status for status, _ in pickups) == [200] + [409] * (N - 1)
    async with api.app[database_key].session() as db:
        rows = (await db.execute(
            select(OrderTransition.order_id, OrderTransition.to_status, func.count())
            .where(OrderTransition.order_id.in_([first, second]))
            .group_by(OrderTransition.order_id, OrderTransition.to_status))).all()
    assert sorted(tuple(r) for r in rows) == sorted([(first, "paid", 1), (first, "ready_for_pickup", 1),
                                   (first, "picked_up", 1), (second, "paid", 1),
                                   (second, "ready_for_pickup", 1)])
    assert sorted(announced) == sorted([(first, "ready_for_pickup"), (first, "picked_up"),
                                        (second, "ready_for_pickup")])


async def test_batch_ready_reports_each_order_and_keeps_tenancy(any_db_api: Api) -> None:
    api = any_db_api
    shop_a, shop_b = await make_shop(api), await make_shop(api)
    ((_, buyer),) = await bulk_buyers(api, 1)
    sale_a = (await shop_a.sale(stock=10, per_buyer_limit=10))["id"]
    orders = [await _buy(api, shop_a, sale_a, buyer) for _ in range(3)]
    status, body = await _post(api, f"/api/orders/{orders[2]}/refund", shop_a.host_token, {})
    assert status == 200, body

    status, body = await _post(api, "/api/orders/ready", shop_b.host_token,
                               {"order_ids": orders[:2]})
    assert status == 200 and body["ready"] == [] and {r["code"] for r in body["refused"]} == {
        "forbidden"}
    status, body = await _post(api, "/api/orders/ready", buyer, {"order_ids": orders[:1]})
    assert status == 403
    status, body = await _post(api, "/api/orders/ready", shop_a.host_token,
                               {"order_ids": [orders[0], orders[0], orders[1], orders[2], 999999]})
    assert status == 200
    assert body["ready"] == orders[:2] and body["already"] == []
    assert [(r["id"], r["code"]) for r in body["refused"]] == [
        (orders[2], "invalid_state"), (999999, "not_found")]
    status, body = await _post(api, "/api/orders/ready", shop_a.host_token, {"order_ids": orders})
    assert body["already"] == orders[:2] and body["ready"] == []
    status, body = await _post(api, "/api/orders/ready", shop_a.host_token, {"order_ids": []})
    assert status == 400
    status, body = await _post(api, "/api/orders/ready", shop_a.host_token,
                               {"order_ids": list(range(1, 202))})
    assert status == 400


async def test_csv_export_is_safe_and_scoped(any_db_api: Api) -> None:
    api = any_db_api
    shop_a, shop_b = await make_shop(api), await make_shop(api)
    ((buyer_id, buyer),) = await bulk_buyers(api, 1)
    resp = await api.client.patch(f"/api/users/{buyer_id}", json={
        "display_name": "=HYPERLINK(\"http://x\")"}, headers=api.auth(api.admin_token))
    assert resp.status == 200, await resp.text()
    sale_a = (await shop_a.sale(stock=10, per_buyer_limit=10))["id"]
    sale_b = (await shop_b.sale(stock=10, per_buyer_limit=10))["id"]
    mine = await _buy(api, shop_a, sale_a, buyer)
    await _buy(api, shop_b, sale_b, buyer)

    resp = await api.client.get(f"/api/orders.csv?session_id={shop_a.session_id}",
                                headers=api.auth(shop_a.host_token))
    assert resp.status == 200 and resp.headers["Cache-Control"] == "private, no-store"
    text = (await resp.read()).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:3] == ["id", "buyer_name", "product_name"]
    assert [row[0] for row in rows[1:]] == [str(mine)]
    assert rows[1][1] == "'=HYPERLINK(\"http://x\")"
    resp = await api.client.get("/api/orders.csv", headers=api.auth(shop_b.host_token))
    assert str(mine) not in [row[0] for row in csv.reader(io.StringIO(
        (await resp.read()).decode("utf-8-sig")))]
    resp = await api.client.get("/api/orders.csv", headers=api.auth(buyer))
    assert resp.status == 403


async def test_pickup_qr_is_the_buyers_only_and_never_cached(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    (_, buyer), (_, other) = await bulk_buyers(api, 2)
    sale_id = (await shop.sale(stock=10, per_buyer_limit=10))["id"]
    order = await _buy(api, shop, sale_id, buyer)
    resp = await api.client.get(f"/api/orders/{order}/pickup-qr.svg", headers=api.auth(buyer))
    assert resp.status == 200 and resp.content_type == "image/svg+xml"
    assert resp.headers["Cache-Control"] == "private, no-store"
    assert b"<svg" in await resp.read()
    for token in (other, shop.host_token, api.admin_token):
        resp = await api.client.get(f"/api/orders/{order}/pickup-qr.svg", headers=api.auth(token))
        assert resp.status == 403
    assert (await api.client.get(f"/api/orders/{order}/pickup-qr.svg")).status == 401
