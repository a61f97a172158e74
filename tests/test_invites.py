"""Getting in from a group link: invites, sign-up with one, accepting one, on SQLite and
PostgreSQL. The use limit is fired at with 25 requests at once (exactly the limit get in)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from commerce.accounts import Membership, User
from commerce.invites import Invite
from infra.settings import Settings
from server.keys import database_key
from tests.commerce_support import hold, make_shop
from tests.conftest import Api, AppFactory

NAT = "203.0.113.40"  # a documentation address (RFC 5737), not exempt from per-address limits


def password_for(username: str) -> str:
    return f"loquat-harvest-{username}-sunny"


async def community(api: Api, token: str, policy: str = "open") -> int:
    resp = await api.client.post("/api/communities", headers=api.auth(token), json={
        "name": f"阳光花园-{uuid.uuid4().hex[:6]}", "join_policy": policy})
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert body["join_policy"] == policy
    return int(body["id"])


async def make_invite(api: Api, token: str, community_id: int, **body: Any) -> dict[str, Any]:
    resp = await api.client.post(f"/api/communities/{community_id}/invites", json=body,
                                 headers=api.auth(token))
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def signup(api: Api, code: str, username: str | None = None, *,
                 password: str | None = None, display_name: str = "",
                 headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    username = username or f"nb_{uuid.uuid4().hex[:8]}"
    resp = await api.client.post("/api/signup", headers=headers or {}, json={
        "username": username, "password": password or password_for(username),
        "invite_code": code, "display_name": display_name})
    return resp.status, dict(await resp.json())


async def uses(api: Api, code: str) -> int:
    async with api.app[database_key].session() as db:
        return int(await db.scalar(select(Invite.uses).where(Invite.code == code)) or 0)


async def members(api: Api, community_id: int) -> Counter[str]:
    async with api.app[database_key].session() as db:
        rows = await db.execute(select(Membership.status)
                                .where(Membership.community_id == community_id))
        return Counter(status for (status,) in rows)


def error(body: dict[str, Any]) -> str:
    return str(body["error"]["code"])


async def test_a_neighbour_signs_up_from_the_link_and_is_in(any_db_api: Api) -> None:
    api = any_db_api
    _, host = await api.user("host")
    cid = await community(api, host)
    made = await make_invite(api, host, cid, max_uses=3)
    code = made["code"]
    assert len(code) >= 16 and made["url"].endswith(f"/join/{code}") and made["uses"] == 0

    shown = await (await api.client.get(f"/api/invites/{code}")).json()
    assert shown["valid"] is True and shown["reason"] is None and shown["uses_left"] == 3
    assert shown["community"]["id"] == cid and shown["community"]["name"].startswith("阳光花园")
    assert shown["inviter"]["display_name"] and "code" in shown and shown["wechat"] is False

    status, body = await signup(api, code, "li_ayi", display_name="李阿姨")
    assert status == 201, body
    assert body["membership"] == {"community_id": cid, "status": "approved"}
    assert body["user"]["role"] == "viewer" and body["user"]["display_name"] == "李阿姨"
    assert body["live_session_id"] is None
    me = await (await api.client.get("/api/me", headers=api.auth(body["token"]))).json()
    assert me["username"] == "li_ayi" and me["communities"] == [cid]
    # The new account signs in like any other.
    assert await api.login("li_ayi", password_for("li_ayi"))
    assert await uses(api, code) == 1
    listed = await (await api.client.get(f"/api/communities/{cid}/invites",
                                         headers=api.auth(host))).json()
    assert [(i["code"], i["uses"], i["state"]) for i in listed["items"]] == [(code, 1, "valid")]


async def test_an_approval_community_leaves_the_newcomer_pending(any_db_api: Api) -> None:
    api = any_db_api
    _, host = await api.user("host")
    cid = await community(api, host)
    resp = await api.client.patch(f"/api/communities/{cid}", json={"join_policy": "approval"},
                                  headers=api.auth(host))
    assert resp.status == 200 and (await resp.json())["join_policy"] == "approval"
    code = (await make_invite(api, host, cid))["code"]
    status, body = await signup(api, code)
    assert status == 201 and body["membership"]["status"] == "pending", body
    me = await (await api.client.get("/api/me", headers=api.auth(body["token"]))).json()
    assert me["communities"] == []  # no community price until the host approves
    resp = await api.client.post(f"/api/communities/{cid}/members",
                                 json={"user_id": body["user"]["id"]}, headers=api.auth(host))
    assert resp.status == 201
    assert await members(api, cid) == {"approved": 1}


async def test_dead_links_are_refused_with_stable_codes(any_db_api: Api) -> None:
    api = any_db_api
    _, host = await api.user("host")
    cid = await community(api, host)
    expired = (await make_invite(api, host, cid))["code"]
    async with api.app[database_key].session() as db:
        await db.execute(update(Invite).where(Invite.code == expired)
                         .values(expires_at=datetime.now(UTC) - timedelta(minutes=1)))
    revoked = (await make_invite(api, host, cid))["code"]
    resp = await api.client.delete(f"/api/invites/{revoked}", headers=api.auth(host))
    assert resp.status == 200 and (await resp.json())["state"] == "revoked"
    once = (await make_invite(api, host, cid, max_uses=1))["code"]
    status, first = await signup(api, once)
    assert status == 201

    for code, status, reason in ((expired, 410, "expired"), (revoked, 410, "revoked"),
                                 (once, 409, "used_up")):
        shown = await (await api.client.get(f"/api/invites/{code}")).json()
        assert (shown["valid"], shown["reason"]) == (False, reason), shown
        got, body = await signup(api, code, f"late_{reason}")
        assert (got, error(body)) == (status, f"invite_{reason}"), body
        _, viewer = await api.user("viewer")
        resp = await api.client.post(f"/api/invites/{code}/accept", headers=api.auth(viewer))
        assert (resp.status, error(await resp.json())) == (status, f"invite_{reason}")
    for unknown in ("nope", "x" * 33, "no%20such"):
        resp = await api.client.get(f"/api/invites/{unknown}")
        assert (resp.status, error(await resp.json())) == (404, "invite_not_found"), unknown
        got, body = await signup(api, unknown)
        assert got in (400, 404), body
    # The one who used the link, tapping it again later, is simply in.
    resp = await api.client.post(f"/api/invites/{once}/accept", headers=api.auth(first["token"]))
    assert resp.status == 200 and (await resp.json())["membership"]["status"] == "approved"
    async with api.app[database_key].session() as db:
        late = await db.scalar(select(func.count()).select_from(User)
                               .where(User.username.like("late_%")))
    assert late == 0  # a refused sign-up makes no account
    assert await members(api, cid) == {"approved": 1}


async def test_a_taken_username_or_weak_password_costs_no_use(any_db_api: Api) -> None:
    api = any_db_api
    _, host = await api.user("host")
    cid = await community(api, host)
    code = (await make_invite(api, host, cid, max_uses=2))["code"]
    assert (await signup(api, code, "wang_shu"))[0] == 201
    status, body = await signup(api, code, "wang_shu")
    assert (status, error(body)) == (409, "username_taken"), body
    assert body["error"]["field"] == "username"
    status, body = await signup(api, code, "zhao_jie", password="12345678")
    assert (status, error(body), body["error"]["reason"]) == (400, "weak_password", "too_short")
    status, body = await signup(api, code, "bad name!")
    assert (status, error(body)) == (400, "validation_failed")
    assert await uses(api, code) == 1
    assert (await signup(api, code, "zhao_jie"))[0] == 201
    assert await uses(api, code) == 2


async def test_an_existing_neighbour_joins_in_one_step(any_db_api: Api) -> None:
    api = any_db_api
    _, host = await api.user("host")
    cid = await community(api, host)
    code = (await make_invite(api, host, cid, max_uses=5))["code"]
    viewer_id, viewer = await api.user("viewer")
    # Asked to join before (pending); the open community's link approves it.
    resp = await api.client.post(f"/api/communities/{cid}/join", headers=api.auth(viewer))
    assert (await resp.json())["status"] == "pending"
    answers = await asyncio.gather(*(
        api.client.post(f"/api/invites/{code}/accept", headers=api.auth(viewer))
        for _ in range(20)))
    assert [a.status for a in answers] == [200] * 20
    assert {(await a.json())["membership"]["status"] for a in answers} == {"approved"}
    assert await uses(api, code) == 1  # one person, one use, however often they tap
    assert await members(api, cid) == {"approved": 1}
    me = await (await api.client.get("/api/me", headers=api.auth(viewer))).json()
    assert me["id"] == viewer_id and me["communities"] == [cid]


@pytest.mark.races
async def test_twenty_five_signups_at_once_on_a_five_use_link_make_five(
        any_db_api: Api) -> None:
    api = any_db_api
    _, host = await api.user("host")
    cid = await community(api, host)
    code = (await make_invite(api, host, cid, max_uses=5))["code"]
    names = [f"rush_{i}_{uuid.uuid4().hex[:4]}" for i in range(25)]
    results = await asyncio.gather(*(signup(api, code, name) for name in names))
    statuses = Counter(status for status, _ in results)
    assert statuses == {201: 5, 409: 20}, statuses
    assert {error(body) for status, body in results if status == 409} == {"invite_used_up"}
    assert await uses(api, code) == 5
    assert await members(api, cid) == {"approved": 5}
    async with api.app[database_key].session() as db:
        made = await db.scalar(select(func.count()).select_from(User)
                               .where(User.username.like("rush_%")))
    assert made == 5  # the refused ones left no account behind


@pytest.mark.races
async def test_twenty_five_accepts_at_once_on_a_five_use_link_make_five(any_db_api: Api) -> None:
    api = any_db_api
    _, host = await api.user("host")
    cid = await community(api, host)
    code = (await make_invite(api, host, cid, max_uses=5))["code"]
    tokens = [(await api.user("viewer"))[1] for _ in range(25)]
    answers = await asyncio.gather(*(
        api.client.post(f"/api/invites/{code}/accept", headers=api.auth(token))
        for token in tokens))
    statuses = Counter(a.status for a in answers)
    assert statuses == {200: 5, 409: 20}, statuses
    assert await uses(api, code) == 5
    assert await members(api, cid) == {"approved": 5}


async def test_signups_are_rate_limited_per_address(make_api: AppFactory,
                                                    settings: Settings) -> None:
    api = await make_api(settings.with_(rate_signup_per_ip=(3, 600)))
    _, host = await api.user("host")
    code = (await make_invite(api, host, await community(api, host)))["code"]
    results = [await signup(api, code, headers={"X-Forwarded-For": NAT}) for _ in range(4)]
    assert [status for status, _ in results] == [201, 201, 201, 429]
    assert results[3][1]["error"]["reason"] == "signup_per_ip"
    # Another address is its own allowance.
    assert (await signup(api, code, headers={"X-Forwarded-For": "198.51.100.41"}))[0] == 201


async def test_the_login_lockout_holds_for_accounts_made_by_signup(any_db_api: Api) -> None:
    api = any_db_api
    _, host = await api.user("host")
    code = (await make_invite(api, host, await community(api, host)))["code"]
    assert (await signup(api, code, "lock_me"))[0] == 201
    tries = [await api.client.post("/api/auth/token", json={
        "username": "lock_me", "password": f"wrong-{i}"}) for i in range(6)]
    assert [t.status for t in tries] == [401] * 5 + [429]
    resp = await api.client.post("/api/auth/token", json={
        "username": "lock_me", "password": password_for("lock_me")})
    assert resp.status == 429 and (await resp.json())["error"]["reason"] == "login_locked"


async def test_invite_limits_and_the_qr_poster(api: Api) -> None:
    _, host = await api.user("host")
    cid = await community(api, host)
    for body in ({"max_uses": 0}, {"max_uses": 10_001},
                 {"expires_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat()},
                 {"expires_at": (datetime.now(UTC) + timedelta(days=91)).isoformat()}):
        resp = await api.client.post(f"/api/communities/{cid}/invites", json=body,
                                     headers=api.auth(host))
        assert resp.status == 400, (body, await resp.text())
    made = await make_invite(api, host, cid, max_uses=30,
                             expires_at=(datetime.now(UTC) + timedelta(days=7)).isoformat())
    assert datetime.fromisoformat(made["expires_at"]).utcoffset() is not None
    resp = await api.client.get(made["qr_svg"])
    assert resp.status == 200 and resp.content_type == "image/svg+xml"
    assert resp.headers["Content-Security-Policy"] == "default-src 'none'"
    assert "no-store" in resp.headers["Cache-Control"]
    assert (await resp.text()).lstrip().startswith("<svg")
    await api.client.delete(f"/api/invites/{made['code']}", headers=api.auth(host))
    shown = await (await api.client.get(f"/api/invites/{made['code']}")).json()
    assert shown["reason"] == "revoked"
    resp = await api.client.get(made["qr_svg"])
    assert (resp.status, error(await resp.json())) == (410, "invite_revoked")


@pytest.mark.parametrize("n", [20])
@pytest.mark.races
async def test_invites_made_at_once_stop_at_the_cap(any_db_api: Api, n: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from commerce import invites

    monkeypatch.setattr(invites, "MAX_ACTIVE_PER_COMMUNITY", 7)
    api = any_db_api
    _, host = await api.user("host")
    cid = await community(api, host)
    answers = await asyncio.gather(*(
        api.client.post(f"/api/communities/{cid}/invites", json={}, headers=api.auth(host))
        for _ in range(n)))
    assert Counter(a.status for a in answers) == {201: 7, 409: n - 7}


async def test_a_newcomer_lands_in_the_communitys_live_room(any_db_api: Api) -> None:
    from commerce import live_sessions

    api = any_db_api
    _, host = await api.user("host")
    _, stranger = await api.user("host")
    cid = await community(api, host)
    code = (await make_invite(api, host, cid))["code"]
    mine = (await (await api.client.post("/api/sessions", json={"title": "枇杷专场"},
                                         headers=api.auth(host))).json())["id"]
    theirs = (await (await api.client.post("/api/sessions", json={"title": "别家直播"},
                                           headers=api.auth(stranger))).json())["id"]
    async with api.app[database_key].session() as db:
        await live_sessions.mark_live(db, theirs)  # live, but not this community's
    assert (await signup(api, code))[1]["live_session_id"] is None
    async with api.app[database_key].session() as db:
        await live_sessions.mark_live(db, mine)
    status, body = await signup(api, code)
    assert status == 201 and body["live_session_id"] == mine, body
    shown = await (await api.client.get(f"/api/invites/{code}")).json()
    assert shown["live_session_id"] == mine


async def test_the_demo_prints_one_working_invite_link(api: Api) -> None:
    import warnings

    from server.demo import seed_demo

    lines = []
    for _ in range(2):  # a restart of `make run` reuses the link
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            info = await seed_demo(api.app)
        lines += [line for line in info.lines if "/join/" in line]
    assert len(lines) == 2 and lines[0] == lines[1], lines
    code = lines[0].rsplit("/join/", 1)[1]
    shown = await (await api.client.get(f"/api/invites/{code}")).json()
    assert shown["valid"] is True and shown["community"]["name"] == "阳光花园"


async def test_migration_0405_goes_down_and_up_with_communities_in_use(any_db_api: Api) -> None:
    """Communities already referred to by members and pickup points survive both ways (SQLite
    would refuse to copy-and-drop them); those from before the column are open."""
    from sqlalchemy import text

    from tests.test_pickup_tenancy import _alembic

    api = any_db_api
    _, host = await api.user("host")
    cid = await community(api, host, policy="approval")
    code = (await make_invite(api, host, cid))["code"]
    assert (await signup(api, code))[0] == 201
    await api.client.post(f"/api/communities/{cid}/pickup-points", json={"name": "北门"},
                          headers=api.auth(host))
    async with api.app[database_key].engine.begin() as conn:
        await conn.run_sync(_alembic, "downgrade", "0403")
        await conn.run_sync(_alembic, "upgrade", "heads")
        policy = (await conn.execute(text("SELECT join_policy FROM communities WHERE id = :c"),
                                     {"c": cid})).scalar_one()
        left = (await conn.execute(text("SELECT count(*) FROM invites"))).scalar_one()
    assert (policy, left) == ("open", 0)
    assert await members(api, cid) == {"pending": 1}


async def test_a_newcomer_pays_her_communitys_price_in_a_sale_already_open(
        any_db_api: Api) -> None:
    """The card quotes the community price the moment she is in; the hold must charge it too
    (open sales keep their members in Redis, loaded when they opened, before she joined)."""
    api = any_db_api
    shop = await make_shop(api)
    cid = await community(api, shop.host_token)
    sale = await shop.sale(price_fen=6800, community_ids=[cid], community_price_fen=5800)
    code = (await make_invite(api, shop.host_token, cid))["code"]
    status, made = await signup(api, code)
    assert status == 201, made
    card = await (await api.client.get(f"/api/sales/{sale['id']}",
                                       headers=api.auth(made["token"]))).json()
    assert card["your_price_fen"] == 5800
    status, held = await hold(api, sale["id"], made["token"], 2)
    assert status == 201, held
    assert held["unit_price_fen"] == 5800
