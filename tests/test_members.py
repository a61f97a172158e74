"""A community's join requests and members, worked by its manager: list, approve, reject, search,
remove; another host is refused; 20 approvals (or rejections) at once decide a request once.
On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from commerce.accounts import Membership
from server.keys import database_key
from tests.commerce_support import bulk_buyers, hold, make_shop
from tests.conftest import Api

N = 20


async def _call(api: Api, method: str, path: str, token: str,
                body: Any = None) -> tuple[int, Any]:
    resp = await api.client.request(method, path, json=body, headers=api.auth(token))
    return resp.status, await resp.json()


async def _community(api: Api, token: str, name: str) -> int:
    status, made = await _call(api, "POST", "/api/communities", token, {"name": name})
    assert status == 201, made
    return int(made["id"])


async def _statuses(api: Api, cid: int) -> dict[int, str]:
    async with api.app[database_key].session() as db:
        rows = await db.execute(select(Membership.user_id, Membership.status)
                                .where(Membership.community_id == cid))
        return {uid: status for uid, status in rows}


async def test_manager_works_requests_and_members(any_db_api: Api) -> None:
    api = any_db_api
    _, host = await api.user("host")
    _, other_host = await api.user("host")
    cid = await _community(api, host, "阳光花园")
    people = await bulk_buyers(api, 5)
    for _, token in people:
        status, body = await _call(api, "POST", f"/api/communities/{cid}/join", token)
        assert status == 202 and body["status"] == "pending", body
    ids = [uid for uid, _ in people]
    base = f"/api/communities/{cid}"

    # Another host sees and decides nothing; neither does a viewer.
    for token in (other_host, people[0][1]):
        for method, path in (("GET", f"{base}/join-requests"), ("GET", f"{base}/members"),
                             ("POST", f"{base}/join-requests/{ids[0]}/approve"),
                             ("POST", f"{base}/join-requests/{ids[0]}/reject"),
                             ("DELETE", f"{base}/members/{ids[0]}")):
            status, body = await _call(api, method, path, token)
            assert status == 403, (method, path, body)
    assert set((await _statuses(api, cid)).values()) == {"pending"}

    # The queue, oldest first, in pages.
    status, page = await _call(api, "GET", f"{base}/join-requests?limit=2", host)
    assert status == 200 and [i["user_id"] for i in page["items"]] == ids[:2]
    assert page["items"][0]["display_name"] == "邻居0"
    assert page["items"][0]["requested_at"].endswith("+00:00")
    seen = [i["user_id"] for i in page["items"]]
    while page["next"] is not None:
        status, page = await _call(api, "GET", f"{base}/join-requests?limit=2&cursor={page['next']}",
                                   host)
        seen += [i["user_id"] for i in page["items"]]
    assert seen == ids

    for uid in ids[:3]:
        status, body = await _call(api, "POST", f"{base}/join-requests/{uid}/approve", host)
        assert status == 200 and body["status"] == "approved"
    status, body = await _call(api, "POST", f"{base}/join-requests/{ids[3]}/reject",
                               api.admin_token)
    assert status == 200 and body["status"] == "rejected"
    # Decided once: approving a rejected request (or rejecting an approved one) is refused.
    status, body = await _call(api, "POST", f"{base}/join-requests/{ids[3]}/approve", host)
    assert (status, body["error"]["code"]) == (409, "invalid_state")
    status, body = await _call(api, "POST", f"{base}/join-requests/{ids[0]}/reject", host)
    assert (status, body["error"]["code"]) == (409, "invalid_state")
    status, body = await _call(api, "POST", f"{base}/join-requests/999999/approve", host)
    assert status == 404
    # A rejected neighbour asking again does not come back to the queue.
    status, body = await _call(api, "POST", f"{base}/join", people[3][1])
    assert body["status"] == "rejected"
    status, page = await _call(api, "GET", f"{base}/join-requests", host)
    assert [i["user_id"] for i in page["items"]] == [ids[4]]
    status, me = await _call(api, "GET", "/api/me", people[0][1])
    assert me["communities"] == [cid]

    # Members: searched by name (LIKE wildcards are literal), removed once.
    status, page = await _call(api, "GET", f"{base}/members", host)
    assert [i["user_id"] for i in page["items"]] == ids[:3]
    status, page = await _call(api, "GET", f"{base}/members?q=邻居1", host)
    assert [i["user_id"] for i in page["items"]] == [ids[1]]
    status, page = await _call(api, "GET", f"{base}/members?q=%25", host)
    assert page["items"] == []
    status, body = await _call(api, "GET", f"{base}/members?q={'x' * 65}", host)
    assert status == 400
    status, body = await _call(api, "DELETE", f"{base}/members/{ids[1]}", host)
    assert status == 200 and body["removed"] is True
    status, body = await _call(api, "DELETE", f"{base}/members/{ids[1]}", host)
    assert status == 404
    status, body = await _call(api, "DELETE", f"{base}/members/{ids[4]}", host)
    assert (status, body["error"]["code"]) == (409, "invalid_state")  # still pending
    status, me = await _call(api, "GET", "/api/me", people[1][1])
    assert me["communities"] == []


@pytest.mark.races
async def test_twenty_approvals_decide_once(any_db_api: Api) -> None:
    api = any_db_api
    _, host = await api.user("host")
    cid = await _community(api, host, "翠湖小区")
    (uid, token), (uid2, token2) = await bulk_buyers(api, 2)
    for who in (token, token2):
        await _call(api, "POST", f"/api/communities/{cid}/join", who)

    path = f"/api/communities/{cid}/join-requests/{uid}"
    answers = await asyncio.gather(*[_call(api, "POST", f"{path}/approve", host) for _ in range(N)])
    assert sorted(status for status, _ in answers) == [200] + [409] * (N - 1)
    # Approvals and rejections racing: exactly one decides.
    path2 = f"/api/communities/{cid}/join-requests/{uid2}"
    mixed = await asyncio.gather(*[_call(api, "POST", f"{path2}/{'approve' if i % 2 else 'reject'}",
                                         api.admin_token) for i in range(N)])
    winners = [body["status"] for status, body in mixed if status == 200]
    assert len(winners) == 1 and sum(status == 409 for status, _ in mixed) == N - 1
    assert await _statuses(api, cid) == {uid: "approved", uid2: winners[0]}


async def test_a_removed_member_loses_an_open_sale_at_once(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    cid = await _community(api, shop.host_token, "枫林小区")
    (kept, kept_token), (gone, gone_token) = await bulk_buyers(api, 2)
    for uid in (kept, gone):
        status, body = await _call(api, "POST", f"/api/communities/{cid}/members",
                                   shop.host_token, {"user_id": uid})
        assert status == 201, body
    sale = await shop.sale(stock=10, per_buyer_limit=5, community_ids=[cid],
                           community_price_fen=800, members_only=True)
    status, body = await hold(api, sale["id"], gone_token, community_id=cid)
    assert status == 201 and body["unit_price_fen"] == 800, body

    status, body = await _call(api, "DELETE", f"/api/communities/{cid}/members/{gone}",
                               shop.host_token)
    assert status == 200, body
    status, body = await hold(api, sale["id"], gone_token, community_id=cid)
    assert (status, body["error"]["code"]) == (409, "not_member"), body
    status, body = await hold(api, sale["id"], kept_token, community_id=cid)
    assert status == 201 and body["unit_price_fen"] == 800, body
