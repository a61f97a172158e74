"""WeChat sign-in (网页授权) end to end against a local server speaking WeChat's OAuth protocol:
the browser's trip to the authorize page and back, the code traded for a token and a profile,
the account bound to the openid, the invite joined; and every way it must refuse."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from sqlalchemy import func, select

from commerce.identities import WechatIdentity
from infra.settings import Settings
from server.keys import database_key
from tests.conftest import Api, AppFactory
from tests.test_invites import community, make_invite
from tests.wechat_protocol import APP_ID, APP_SECRET, Person, WechatProtocolServer, wechat_server


@pytest.fixture
async def wechat() -> AsyncIterator[WechatProtocolServer]:
    async with wechat_server() as server:
        yield server


def with_wechat(settings: Settings, wechat: WechatProtocolServer, **extra: Any) -> Settings:
    return settings.with_(**{"wechat_app_id": APP_ID, "wechat_app_secret": APP_SECRET,
                             "wechat_authorize_url": wechat.authorize_url,
                             "wechat_api_base": wechat.base, **extra})


async def start(api: Api, invite: str | None = None) -> dict[str, Any]:
    resp = await api.client.post("/api/auth/wechat/start",
                                 json={"invite_code": invite} if invite else {})
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def consent(started: dict[str, Any]) -> tuple[str, str]:
    """What the browser does: open the authorize URL, follow WeChat's redirect back to us."""
    url = started["authorize_url"]
    assert url.endswith("#wechat_redirect")
    async with aiohttp.ClientSession() as http, \
            http.get(url.split("#")[0], allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        back = urlsplit(resp.headers["Location"])
    assert back.path == "/auth/wechat/callback"
    query = parse_qs(back.query)
    return query["code"][0], query["state"][0]


async def finish(api: Api, code: str, state: str, browser_key: str) -> tuple[int, dict[str, Any]]:
    resp = await api.client.post("/api/auth/wechat/callback", json={
        "code": code, "state": state, "browser_key": browser_key})
    return resp.status, dict(await resp.json())


async def test_wechat_sign_in_makes_one_account_and_joins_the_invite(
        make_api: AppFactory, any_db_settings: Settings, wechat: WechatProtocolServer) -> None:
    api = await make_api(with_wechat(any_db_settings, wechat))
    _, host = await api.user("host")
    cid = await community(api, host)
    invite = (await make_invite(api, host, cid, max_uses=10))["code"]
    assert (await (await api.client.get("/api/auth/providers")).json()) == {"wechat": True}
    assert (await (await api.client.get(f"/api/invites/{invite}")).json())["wechat"] is True

    wechat.next_person = Person("o_liayi_0001", "李阿姨", unionid="u_liayi")
    started = await start(api, invite)
    query = parse_qs(urlsplit(started["authorize_url"]).query)
    assert query["appid"] == [APP_ID] and query["scope"] == ["snsapi_userinfo"]
    assert query["state"] == [started["state"]]
    code, state = await consent(started)
    status, body = await finish(api, code, state, started["browser_key"])
    assert status == 200, body
    assert body["created"] is True and body["user"]["display_name"] == "李阿姨"
    assert body["membership"] == {"community_id": cid, "status": "approved"}
    me = await (await api.client.get("/api/me", headers=api.auth(body["token"]))).json()
    assert me["communities"] == [cid] and me["role"] == "viewer"
    # The secret travelled to WeChat only, as a query parameter of the token exchange.
    exchange = next(params for name, params in wechat.calls if name == "access_token")
    assert exchange == {"appid": APP_ID, "secret": APP_SECRET, "code": code,
                        "grant_type": "authorization_code"}

    # The account has no password: no password opens it, not even the server's dummy one.
    for guess in ("linli-no-such-user", "!provider-only", ""):
        resp = await api.client.post("/api/auth/token", json={
            "username": body["user"]["username"], "password": guess or "x"})
        assert resp.status == 401, guess

    # Next time the same person signs in to the same account (no invite this time).
    again = await start(api)
    code, state = await consent(again)
    status, second = await finish(api, code, state, again["browser_key"])
    assert status == 200 and second["created"] is False, second
    assert second["user"]["id"] == body["user"]["id"] and "membership" not in second


async def test_a_state_from_another_browser_or_used_twice_is_refused(
        make_api: AppFactory, settings: Settings, wechat: WechatProtocolServer) -> None:
    api = await make_api(with_wechat(settings, wechat))
    victim, attacker = await start(api), await start(api)
    code, state = await consent(victim)
    # A login-CSRF: the victim's code and state, replayed with another browser's key.
    status, body = await finish(api, code, state, attacker["browser_key"])
    assert (status, body["error"]["code"], body["error"]["reason"]) == (
        403, "oauth_state_invalid", "other_browser")
    # The state was spent by that attempt: not even the right browser can use it now.
    status, body = await finish(api, code, state, victim["browser_key"])
    assert (status, body["error"]["reason"]) == (403, "unknown_state")
    for state in ("made-up-state", "x" * 64):
        status, body = await finish(api, code, state, victim["browser_key"])
        assert (status, body["error"]["code"]) == (403, "oauth_state_invalid")
    async with api.app[database_key].session() as db:
        assert await db.scalar(select(func.count()).select_from(WechatIdentity)) == 0


async def test_wechat_errcodes_are_refusals_not_crashes(
        make_api: AppFactory, settings: Settings, wechat: WechatProtocolServer) -> None:
    api = await make_api(with_wechat(settings, wechat))
    started = await start(api)
    status, body = await finish(api, "no-such-code", started["state"], started["browser_key"])
    assert (status, body["error"]["code"], body["error"]["errcode"]) == (401, "wechat_refused",
                                                                          40029)
    # A code WeChat already redeemed (a reloaded callback page).
    first, second = await start(api), await start(api)
    code, state = await consent(first)
    assert (await finish(api, code, state, first["browser_key"]))[0] == 200
    status, body = await finish(api, code, second["state"], second["browser_key"])
    assert (status, body["error"]["errcode"]) == (401, 40163)

    # A wrong app secret is WeChat's 40125.
    api = await make_api(with_wechat(settings, wechat).with_(wechat_app_secret="wrong-secret"))
    started = await start(api)
    code, state = await consent(started)
    status, body = await finish(api, code, state, started["browser_key"])
    assert (status, body["error"]["code"], body["error"]["errcode"]) == (401, "wechat_refused",
                                                                          40125)


async def test_an_unreachable_wechat_is_a_502(make_api: AppFactory, settings: Settings,
                                              wechat: WechatProtocolServer) -> None:
    api = await make_api(with_wechat(settings, wechat, wechat_api_base="http://127.0.0.1:9"))
    started = await start(api)
    code, state = await consent(started)
    status, body = await finish(api, code, state, started["browser_key"])
    assert (status, body["error"]["code"]) == (502, "wechat_unavailable")


async def test_wechat_is_off_unless_configured(api: Api) -> None:
    assert (await (await api.client.get("/api/auth/providers")).json()) == {"wechat": False}
    for path, body in (("/api/auth/wechat/start", {}),
                       ("/api/auth/wechat/callback", {"code": "c", "state": "s",
                                                      "browser_key": "k"})):
        resp = await api.client.post(path, json=body)
        assert (resp.status, (await resp.json())["error"]["code"]) == (404,
                                                                       "wechat_not_configured")


@pytest.mark.races
async def test_twenty_first_sign_ins_of_one_person_at_once_make_one_account(
        make_api: AppFactory, any_db_settings: Settings, wechat: WechatProtocolServer) -> None:
    api = await make_api(with_wechat(any_db_settings, wechat))
    wechat.next_person = Person(f"o_{uuid.uuid4().hex[:10]}", "王叔叔")
    flows = [await start(api) for _ in range(20)]
    trips = [await consent(flow) for flow in flows]
    results = await asyncio.gather(*(finish(api, code, state, flow["browser_key"])
                                     for flow, (code, state) in zip(flows, trips, strict=True)))
    assert [status for status, _ in results] == [200] * 20, results
    assert len({body["user"]["id"] for _, body in results}) == 1
    assert sum(body["created"] for _, body in results) == 1
    async with api.app[database_key].session() as db:
        assert await db.scalar(select(func.count()).select_from(WechatIdentity)) == 1
