"""团长 (community leaders) and community notices, on SQLite and PostgreSQL.

A 团长 of community A works A's orders, members and join requests and is refused on community
B; twenty appointments at once leave one row; a notice reaches the tagged members once however
many times it is sent with one key, within its length and daily limits.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from commerce.accounts import CommunityLeader
from commerce.community_notices import MAX_CHARS, PER_DAY, CommunityNotice
from commerce.notifications import Notification
from server.keys import database_key
from tests.commerce_support import bulk_buyers, hold, make_shop, pay
from tests.conftest import Api

N = 20


async def _call(api: Api, method: str, path: str, token: str, body: Any = None,
                key: str | None = None) -> tuple[int, Any]:
    headers = api.auth(token)
    if key is not None:
        headers["Idempotency-Key"] = key
    resp = await api.client.request(method, path, json=body, headers=headers)
    return resp.status, await resp.json()


async def _community(api: Api, token: str, name: str) -> int:
    status, made = await _call(api, "POST", "/api/communities", token, {"name": name})
    assert status == 201, made
    return int(made["id"])


async def _member(api: Api, host: str, cid: int, uid: int) -> None:
    status, body = await _call(api, "POST", f"/api/communities/{cid}/members", host,
                               {"user_id": uid})
    assert status == 201, body


async def test_leader_works_his_community_only(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    _, other_host = await api.user("host")
    cid_a = await _community(api, shop.host_token, f"阳光花园-{uuid.uuid4().hex[:4]}")
    cid_b = await _community(api, other_host, f"翠湖小区-{uuid.uuid4().hex[:4]}")
    (leader, leader_token), (buyer_a, token_a), (buyer_b, token_b), (asker, asker_token) = \
        await bulk_buyers(api, 4)
    await _member(api, shop.host_token, cid_a, buyer_a)
    await _member(api, other_host, cid_b, buyer_b)
    for cid, host in ((cid_a, shop.host_token), (cid_b, other_host)):
        status, _ = await _call(api, "POST", f"/api/communities/{cid}/pickup-points", host,
                                {"name": "门卫室"})
        assert status == 201
    sale = await shop.sale(community_ids=[cid_a, cid_b], community_price_fen=800)
    order_ids = {}
    for cid, token in ((cid_a, token_a), (cid_b, token_b)):
        status, held = await hold(api, sale["id"], token, community_id=cid)
        assert status == 201, held
        status, paid = await pay(api, held["hold_id"], token)
        assert status == 200, paid
        order_ids[cid] = paid["order_id"]

    # Before the appointment he is a neighbour like any other.
    status, _ = await _call(api, "GET", f"/api/communities/{cid_a}/members", leader_token)
    assert status == 403
    # Only the community's own host (or an admin) appoints; another host is refused.
    path = f"/api/communities/{cid_a}/leaders/{leader}"
    assert (await _call(api, "PUT", path, other_host))[0] == 403
    status, body = await _call(api, "PUT", path, shop.host_token)
    assert status == 200 and body["leader"] is True, body

    status, mine = await _call(api, "GET", "/api/me/communities", leader_token)
    assert status == 200 and [(c["id"], c["role"]) for c in mine] == [(cid_a, "leader")]

    # A's orders: listed by community, worked (ready, then picked up with the buyer's code).
    status, page = await _call(api, "GET", f"/api/orders?community_id={cid_a}", leader_token)
    assert status == 200 and [o["id"] for o in page["items"]] == [order_ids[cid_a]], page
    code = page["items"][0]["pickup_code"]
    status, body = await _call(api, "POST", "/api/orders/ready", leader_token,
                               {"order_ids": [order_ids[cid_a]]})
    assert status == 200 and body["ready"] == [order_ids[cid_a]], body
    status, body = await _call(api, "POST", f"/api/orders/{order_ids[cid_a]}/picked-up",
                               leader_token, {"pickup_code": code})
    assert status == 200 and body["status"] == "picked_up", body
    # B's: not listed, not worked.
    status, page = await _call(api, "GET", f"/api/orders?community_id={cid_b}", leader_token)
    assert status == 200 and page["items"] == [], page
    status, body = await _call(api, "POST", f"/api/orders/{order_ids[cid_b]}/ready", leader_token)
    assert status == 403, body
    status, body = await _call(api, "POST", "/api/orders/ready", leader_token,
                               {"order_ids": [order_ids[cid_b]]})
    assert status == 200 and body["ready"] == [] and body["refused"][0]["code"] == "forbidden"
    # Without a community his list is his own orders (none): the buyer's view is unchanged.
    status, page = await _call(api, "GET", "/api/orders", leader_token)
    assert status == 200 and page["items"] == []

    # A's members and join requests: his; B's: refused.
    status, body = await _call(api, "POST", f"/api/communities/{cid_a}/join", asker_token)
    assert status == 202
    status, queue = await _call(api, "GET", f"/api/communities/{cid_a}/join-requests", leader_token)
    assert status == 200 and [i["user_id"] for i in queue["items"]] == [asker]
    status, body = await _call(api, "POST", f"/api/communities/{cid_a}/join-requests/{asker}/approve",
                               leader_token)
    assert status == 200 and body["status"] == "approved"
    status, body = await _call(api, "PUT", f"/api/communities/{cid_a}/members/{asker}/tags",
                               leader_token, {"tags": ["baking"]})
    assert status == 200 and body["tags"] == ["baking"], body
    status, listed = await _call(api, "GET", f"/api/communities/{cid_a}/members", leader_token)
    assert {i["user_id"]: i["tags"] for i in listed["items"]} == {buyer_a: [], asker: ["baking"]}
    for method, where, body in (("GET", f"/api/communities/{cid_b}/members", None),
                                ("GET", f"/api/communities/{cid_b}/join-requests", None),
                                ("DELETE", f"/api/communities/{cid_b}/members/{buyer_b}", None),
                                ("PUT", f"/api/communities/{cid_b}/members/{buyer_b}/tags",
                                 {"tags": []}),
                                ("POST", f"/api/communities/{cid_b}/notices", {"text": "hi"})):
        status, _ = await _call(api, method, where, leader_token, body, key="k")
        assert status == 403, (method, where)
    # The owner's decisions stay the owner's: pickup points, 团长, join policy.
    for method, where, body in (("POST", f"/api/communities/{cid_a}/pickup-points", {"name": "x"}),
                                ("PUT", f"/api/communities/{cid_a}/leaders/{asker}", None),
                                ("PATCH", f"/api/communities/{cid_a}", {"join_policy": "open"})):
        status, _ = await _call(api, method, where, leader_token, body)
        assert status == 403, (method, where)

    # Dismissed, he is refused again.
    assert (await _call(api, "DELETE", path, shop.host_token))[0] == 200
    status, _ = await _call(api, "GET", f"/api/communities/{cid_a}/members", leader_token)
    assert status == 403
    status, page = await _call(api, "GET", f"/api/orders?community_id={cid_a}", leader_token)
    assert status == 200 and page["items"] == []


@pytest.mark.races
async def test_twenty_appointments_make_one_leader(any_db_api: Api) -> None:
    api = any_db_api
    _, host = await api.user("host")
    cid = await _community(api, host, f"枫林小区-{uuid.uuid4().hex[:4]}")
    ((uid, _),) = await bulk_buyers(api, 1)
    results = await asyncio.gather(*[_call(api, "PUT", f"/api/communities/{cid}/leaders/{uid}",
                                           host if i % 2 else api.admin_token)
                                      for i in range(N)])
    assert [status for status, _ in results] == [200] * N, results
    async with api.app[database_key].session() as db:
        count = (await db.execute(select(func.count()).select_from(CommunityLeader).where(
            CommunityLeader.community_id == cid))).scalar_one()
    assert count == 1
    status, body = await _call(api, "GET", f"/api/communities/{cid}/leaders", host)
    assert status == 200 and [i["user_id"] for i in body["items"]] == [uid]


async def _notices_of(api: Api, uid: int) -> list[dict[str, Any]]:
    async with api.app[database_key].session() as db:
        rows = await db.execute(select(Notification).where(
            Notification.user_id == uid, Notification.kind == "community_notice"))
        return [n.public_dict() for n in rows.scalars()]


async def test_notice_reaches_tagged_members_once(any_db_api: Api) -> None:
    api = any_db_api
    _, host = await api.user("host")
    cid = await _community(api, host, f"桂花苑-{uuid.uuid4().hex[:4]}")
    people = await bulk_buyers(api, 4)
    (baker, baker_token), (other, _), (outsider, outsider_token), (leader, leader_token) = people
    for uid in (baker, other, leader):
        await _member(api, host, cid, uid)
    # The outsider bakes too, but is no member: she hears nothing.
    for token in (baker_token, outsider_token):
        resp = await api.client.put("/api/me/tags", json={"tags": ["baking"]},
                                    headers=api.auth(token))
        assert resp.status == 200
    assert (await _call(api, "PUT", f"/api/communities/{cid}/leaders/{leader}", host))[0] == 200

    text = "明早 9 点烘焙原料到货,<b>请带袋子</b>"
    path = f"/api/communities/{cid}/notices"
    sends = await asyncio.gather(*[_call(api, "POST", path, leader_token,
                                         {"text": text, "tag": "baking"}, key="bake-1")
                                   for _ in range(N)])
    assert sorted(status for status, _ in sends) == [200] * (N - 1) + [201], sends
    assert {body["notice"]["id"] for _, body in sends} == {sends[0][1]["notice"]["id"]}
    assert sends[0][1]["notice"]["recipients"] == 1
    (got,) = await _notices_of(api, baker)
    assert got["params"]["text"] == text and got["params"]["tag"] == "baking"
    assert got["created_at"].endswith("+00:00")
    assert await _notices_of(api, other) == [] and await _notices_of(api, outsider) == []

    # Without a tag: every member; a new key is a new notice.
    status, body = await _call(api, "POST", path, host, {"text": "本周六停水"}, key="all-1")
    assert status == 201 and body["notice"]["recipients"] == 3, body
    assert len(await _notices_of(api, other)) == 1 and len(await _notices_of(api, baker)) == 2

    # Limits: empty, too long, unknown tag, no key; and the daily count, under concurrency.
    for payload, key in (({"text": "   "}, "e"), ({"text": "字" * (MAX_CHARS + 1)}, "l"),
                         ({"text": "hi", "tag": "nope"}, "t"), ({"text": "hi"}, None)):
        status, body = await _call(api, "POST", path, host, payload, key=key)
        assert status == 400, (payload, body)
    burst = await asyncio.gather(*[_call(api, "POST", path, host, {"text": f"第{i}条"},
                                         key=f"burst-{i}") for i in range(N)])
    assert sum(status == 201 for status, _ in burst) == PER_DAY - 2
    assert {body["error"]["code"] for status, body in burst if status != 201} == {"rate_limited"}
    async with api.app[database_key].session() as db:
        count = (await db.execute(select(func.count()).select_from(CommunityNotice).where(
            CommunityNotice.community_id == cid))).scalar_one()
    assert count == PER_DAY
    status, listed = await _call(api, "GET", path, leader_token)
    assert status == 200 and len(listed["items"]) == PER_DAY
