"""Limits that must hold when the same request arrives many times at once, on SQLite and
PostgreSQL: each test fires N >= 20 identical requests together through the real app and checks
that the limit or the uniqueness held (no extra success, no 500).

Login lockout, unique usernames, community names and batch codes, community joins and
approvals, group-buys per community (and the sale's community list they extend), the hourly
upload cap, one review and one survey per order, one upvote per person.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select

from commerce.accounts import Membership, User
from commerce.errors import DomainError
from infra.settings import Settings
from realtime import questions
from server.keys import database_key
from server.routes.trust import UPLOADS_PER_HOUR
from tests.conftest import Api, AppFactory
from tests.realtime_support import make_room
from tests.trust_support import PNG

# Each test fires one request twenty (or more) times at once: `make test` runs them, the fast
# lane does not.
pytestmark = pytest.mark.races

NAT = "203.0.113.7"  # documentation addresses (RFC 5737)
OTHER = "198.51.100.20"
N = 40


def xff(ip: str) -> dict[str, str]:
    return {"X-Forwarded-For": ip}


async def _login(api: Api, username: str, password: str, ip: str) -> tuple[int, dict[str, Any]]:
    resp = await api.client.post("/api/auth/token", json={"username": username,
                                                          "password": password}, headers=xff(ip))
    return resp.status, await resp.json()


# --- login lockout ----------------------------------------------------------------------------

async def test_parallel_wrong_passwords_reach_argon2_only_the_free_times(any_db_api: Api) -> None:
    api = any_db_api
    name = f"victim_{uuid.uuid4().hex[:6]}"
    await api.user("viewer", name)
    results = await asyncio.gather(*(_login(api, name, f"wrong-guess-{i}", NAT) for i in range(N)))
    statuses = Counter(status for status, _ in results)
    # 5 free attempts (the default) are checked; every other one is refused before argon2.
    assert statuses == {401: 5, 429: N - 5}, statuses
    locked = [body for status, body in results if status == 429]
    assert {b["error"]["reason"] for b in locked} == {"login_locked"}
    # The right password during the lock gets no token, from this address or any other.
    for ip in (NAT, OTHER):
        status, body = await _login(api, name, "password-" + name, ip)
        assert status == 429 and "token" not in body, body


async def test_parallel_guesses_across_accounts_hold_the_address_limit(
        make_api: AppFactory, any_db_settings: Settings) -> None:
    api = await make_api(any_db_settings.with_(login_free_failures_per_ip=10))
    results = await asyncio.gather(*(_login(api, f"nobody_{i}", "guess-guess", NAT)
                                     for i in range(N)))
    statuses = Counter(status for status, _ in results)
    assert statuses == {401: 10, 429: N - 10}, statuses


async def test_parallel_right_passwords_give_back_their_slots(
        make_api: AppFactory, any_db_settings: Settings) -> None:
    """Successes use none of the address's free failures: a 小区 behind one NAT signs in at once."""
    api = await make_api(any_db_settings.with_(login_free_failures_per_ip=25))
    names = [f"neighbour_{i}_{uuid.uuid4().hex[:4]}" for i in range(25)]
    for name in names:
        await api.user("viewer", name)
    results = await asyncio.gather(*(_login(api, name, "password-" + name, NAT) for name in names))
    assert [status for status, _ in results] == [200] * len(names)
    again = await asyncio.gather(*(_login(api, f"ghost_{i}", "guess-guess", NAT) for i in range(N)))
    assert Counter(status for status, _ in again) == {401: 25, 429: N - 25}


# --- uniqueness: one winner, the others a clean 409 -------------------------------------------

async def _same_request(api: Api, method: str, path: str, token: str,
                        body: dict[str, Any] | None = None, n: int = 20) -> Counter[int]:
    async def one() -> int:
        resp = await api.client.request(method, path, json=body, headers=api.auth(token))
        await resp.read()
        return resp.status

    return Counter(await asyncio.gather(*(one() for _ in range(n))))


async def test_one_username_signed_up_at_once_twenty_times(any_db_api: Api) -> None:
    api = any_db_api
    statuses = await _same_request(api, "POST", "/api/users", api.admin_token,
                                   {"username": "twin_li", "password": "password-twin_li"})
    assert statuses == {201: 1, 409: 19}, statuses
    async with api.app[database_key].session() as db:
        count = await db.scalar(select(func.count()).select_from(User)
                                .where(User.username == "twin_li"))
    assert count == 1


async def test_one_community_name_created_at_once_twenty_times(any_db_api: Api) -> None:
    api = any_db_api
    _, host = await api.user("host")
    statuses = await _same_request(api, "POST", "/api/communities", host, {"name": "同名花园"})
    assert statuses == {201: 1, 409: 19}, statuses


async def test_one_batch_code_registered_at_once_twenty_times(any_db_api: Api) -> None:
    api = any_db_api
    _, host = await api.user("host")
    statuses = await _same_request(api, "POST", "/api/batches", host,
                                   {"code": "TWIN-2026-01", "farm": "老张农场"})
    assert statuses == {201: 1, 409: 19}, statuses


# --- memberships: a join or an approval sent twenty times makes one row ---------------------

async def _memberships(api: Api, community_id: int, user_id: int) -> list[str]:
    async with api.app[database_key].session() as db:
        rows = await db.execute(select(Membership.status).where(
            Membership.community_id == community_id, Membership.user_id == user_id))
        return [row[0] for row in rows]


async def test_joining_and_approving_at_once(any_db_api: Api) -> None:
    api = any_db_api
    _, host = await api.user("host")
    resp = await api.client.post("/api/communities", json={"name": "并发小区"},
                                 headers=api.auth(host))
    cid = (await resp.json())["id"]
    viewer_id, viewer = await api.user("viewer")
    statuses = await _same_request(api, "POST", f"/api/communities/{cid}/join", viewer)
    assert statuses == {202: 20}, statuses
    assert await _memberships(api, cid, viewer_id) == ["pending"]
    statuses = await _same_request(api, "POST", f"/api/communities/{cid}/members", host,
                                   {"user_id": viewer_id})
    assert statuses == {201: 20}, statuses
    assert await _memberships(api, cid, viewer_id) == ["approved"]
    # Approving someone who never asked, twenty times at once: one approved membership.
    other_id, _ = await api.user("viewer")
    statuses = await _same_request(api, "POST", f"/api/communities/{cid}/members", host,
                                   {"user_id": other_id})
    assert statuses == {201: 20}, statuses
    assert await _memberships(api, cid, other_id) == ["approved"]


# --- per-user caps and one-per-order records --------------------------------------------------

async def test_uploads_at_once_hold_the_hourly_cap(any_db_api: Api) -> None:
    api = any_db_api
    _, viewer = await api.user("viewer")

    async def one() -> int:
        resp = await api.client.post("/api/uploads?purpose=review", data=PNG,
                                     headers={**api.auth(viewer), "Content-Type": "image/png"})
        await resp.read()
        return resp.status

    statuses = Counter(await asyncio.gather(*(one() for _ in range(UPLOADS_PER_HOUR + 20))))
    assert statuses == {201: UPLOADS_PER_HOUR, 429: 20}, statuses


async def test_one_upvote_per_person_at_once(any_db_api: Api) -> None:
    """Upvotes come over the socket; the rule lives in questions.upvote, raced here directly."""
    api = any_db_api
    room = await make_room(api)
    database = api.app[database_key]
    async with database.session() as db:
        asked = await questions.ask(db, room.session_id, room.viewer_id, "邻居", "几点发货?")
        await questions.review(db, room.session_id, asked.id, True, room.host_id)
    voter_id, _ = await api.user("viewer")

    async def vote() -> str:
        try:
            async with database.session() as db:
                await questions.upvote(db, room.session_id, asked.id, voter_id)
        except DomainError as refused:
            return str(refused.details.get("reason", refused.code))
        return "ok"

    outcomes = Counter(await asyncio.gather(*(vote() for _ in range(20))))
    assert outcomes == {"ok": 1, "already_voted": 19}, outcomes
    async with database.session() as db:
        assert (await questions.get(db, room.session_id, asked.id)).votes == 1
