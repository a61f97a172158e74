"""WeChat subscription messages against a local server speaking WeChat's protocol.

The server below behaves as api.weixin.qq.com does for the two calls we make: access tokens
from `/cgi-bin/token` (wrong secret → 40125), `/cgi-bin/message/subscribe/send` checking the
token (unknown → 40001, expired → 42001), the template and the openid's subscription
(none → 43101).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from commerce.identities import WechatIdentity
from infra.settings import Settings
from server.keys import database_key
from server.wechat_messages import WeChatConfig, WeChatError, WeChatSubscribeMessages
from tests.conftest import AppFactory
from tests.webrtc_clients import publish

pytestmark = pytest.mark.asyncio

APP_ID = "wx0123456789abcdef"
SECRET = "s3cr3t-" + secrets.token_hex(8)
TEMPLATE = "tmpl-live-reminder"
TITLE = "今晚八点 塘栖白沙枇杷现摘现发 快检报告现场看"


@dataclass
class FakeWeChat:
    """State of the local WeChat: issued tokens, subscribed openids, messages accepted."""

    subscribed: set[str] = field(default_factory=set)
    valid: set[str] = field(default_factory=set)
    expired: set[str] = field(default_factory=set)
    token_calls: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/cgi-bin/token", self.token)
        app.router.add_post("/cgi-bin/message/subscribe/send", self.send)
        return app

    async def token(self, request: web.Request) -> web.Response:
        q = request.query
        self.token_calls += 1
        if q.get("grant_type") != "client_credential":
            return web.json_response({"errcode": 40002, "errmsg": "invalid grant_type"})
        if q.get("appid") != APP_ID or q.get("secret") != SECRET:
            return web.json_response({"errcode": 40125, "errmsg": "invalid appsecret"})
        token = secrets.token_urlsafe(24)
        self.valid.add(token)
        return web.json_response({"access_token": token, "expires_in": 7200})

    async def send(self, request: web.Request) -> web.Response:
        token = request.query.get("access_token", "")
        if token in self.expired:
            return web.json_response({"errcode": 42001, "errmsg": "access_token expired"})
        if token not in self.valid:
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential"})
        body = await request.json()
        if body.get("template_id") != TEMPLATE:
            return web.json_response({"errcode": 40037, "errmsg": "invalid template_id"})
        if not isinstance(body.get("data"), dict) or not all(
                isinstance(v, dict) and "value" in v for v in body["data"].values()):
            return web.json_response({"errcode": 47003, "errmsg": "argument invalid! data.*"})
        if body.get("touser") not in self.subscribed:
            return web.json_response({"errcode": 43101, "errmsg": "user refuse to accept the msg"})
        self.sent.append(body)
        self.arrived.set()
        return web.json_response({"errcode": 0, "errmsg": "ok"})


@pytest_asyncio.fixture
async def wechat() -> AsyncIterator[tuple[FakeWeChat, str]]:
    fake = FakeWeChat()
    server = TestServer(fake.app())
    await server.start_server()
    try:
        yield fake, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def test_protocol_token_cache_refresh_and_refusals(wechat: tuple[FakeWeChat, str]) -> None:
    fake, base = wechat
    fake.subscribed.add("o-fan")
    sender = WeChatSubscribeMessages(WeChatConfig(APP_ID, SECRET, TEMPLATE, base_url=base))
    try:
        assert await sender.send("o-fan", {"thing1": "枇杷专场"}, "pages/live/index?session_id=1")
        assert await sender.send("o-fan", {"thing1": "枇杷专场"})
        assert fake.token_calls == 1  # cached
        assert fake.sent[0] == {"touser": "o-fan", "template_id": TEMPLATE,
                                "page": "pages/live/index?session_id=1",
                                "data": {"thing1": {"value": "枇杷专场"}}}
        # WeChat forgets the token (another server fetched a new one): 40001 → one refresh.
        fake.valid.clear()
        assert await sender.send("o-fan", {"thing1": "x"})
        assert fake.token_calls == 2
        # Expired before our own clock said so: 42001 → one refresh.
        fake.expired |= fake.valid
        assert await sender.send("o-fan", {"thing1": "x"})
        assert fake.token_calls == 3
        # No subscription left for this user: not sent, no error, no refresh.
        assert await sender.send("o-stranger", {"thing1": "x"}) is False
        assert fake.token_calls == 3
        # Many sends needing a new token at once make one token call.
        fake.valid.clear()
        results = await asyncio.gather(*(sender.send("o-fan", {"thing1": "x"}) for _ in range(10)))
        assert all(results) and fake.token_calls == 4
    finally:
        await sender.close()
    wrong = WeChatSubscribeMessages(WeChatConfig(APP_ID, "wrong", TEMPLATE, base_url=base))
    try:
        with pytest.raises(WeChatError) as err:
            await wrong.send("o-fan", {"thing1": "x"})
        assert err.value.errcode == 40125
    finally:
        await wrong.close()


async def test_off_unless_configured() -> None:
    assert WeChatConfig.from_settings(Settings()) is None
    assert WeChatConfig.from_settings(Settings(wechat_app_id="a", wechat_app_secret="b")) is None
    config = WeChatConfig.from_settings(Settings(
        wechat_app_id="a", wechat_app_secret="b", wechat_template_id="t",
        wechat_api_base="http://127.0.0.1:9"))
    assert config is not None and config.base_url == "http://127.0.0.1:9"
    notices_only = WeChatConfig.from_settings(Settings(
        wechat_app_id="a", wechat_app_secret="b", wechat_notice_template_id="n"))
    assert notices_only is not None
    assert (notices_only.template_id, notices_only.notice_template_id) == ("", "n")


async def test_going_live_sends_wechat_to_subscribers_with_an_openid(
        wechat: tuple[FakeWeChat, str], make_api: AppFactory, settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake, base = wechat
    api = await make_api(settings.model_copy(update={
        "wechat_app_id": APP_ID, "wechat_app_secret": SecretStr(SECRET),
        "wechat_template_id": TEMPLATE, "wechat_api_base": base}))
    _, host = await api.user("host")
    resp = await api.client.post("/api/sessions", headers=api.auth(host), json={
        "title": TITLE, "scheduled_at": "2030-01-01T20:00:00+08:00"})
    made = await resp.json()
    fan_id, fan = await api.user("viewer")
    no_openid_id, no_openid = await api.user("viewer")
    for token in (fan, no_openid):
        resp = await api.client.post(f"/api/sessions/{made['id']}/subscribe",
                                     headers=api.auth(token))
        assert resp.status == 200
    # WeChat sign-in keeps each person's openid (commerce/identities.py); the fan signed in so.
    async with api.app[database_key].session() as db:
        db.add(WechatIdentity(user_id=fan_id, app_id=APP_ID, openid="o-fan"))
        await db.commit()
    fake.subscribed.add("o-fan")
    pub = await publish(api.client, made["id"], made["stream_key"])
    try:
        assert pub.status == 201, pub.body
        await asyncio.wait_for(fake.arrived.wait(), 10)
        (message,) = fake.sent
        assert message["touser"] == "o-fan" and message["template_id"] == TEMPLATE
        assert message["page"].endswith(f"session_id={made['id']}")
        # WeChat refuses a `thing` longer than 20 characters.
        assert message["data"]["thing1"]["value"] == TITLE[:20] != TITLE
        assert len(message["data"]["time2"]["value"]) == len("2030-01-01 20:00")
        assert no_openid_id > 0
    finally:
        await pub.pc.close()


async def test_a_community_notice_goes_to_members_through_wechat(
        wechat: tuple[FakeWeChat, str], make_api: AppFactory, settings: Settings) -> None:
    fake, base = wechat
    # Only the notice template: going-live reminders stay in-app, notices go out.
    api = await make_api(settings.model_copy(update={
        "wechat_app_id": APP_ID, "wechat_app_secret": SecretStr(SECRET),
        "wechat_template_id": None, "wechat_notice_template_id": TEMPLATE,
        "wechat_api_base": base}))
    _, host = await api.user("host")
    resp = await api.client.post("/api/communities", headers=api.auth(host),
                                 json={"name": "阳光花园"})
    cid = (await resp.json())["id"]
    baker_id, _ = await api.user("viewer")
    plain_id, _ = await api.user("viewer")
    for uid in (baker_id, plain_id):
        resp = await api.client.post(f"/api/communities/{cid}/members", headers=api.auth(host),
                                     json={"user_id": uid})
        assert resp.status == 201
    async with api.app[database_key].session() as db:
        db.add(WechatIdentity(user_id=baker_id, app_id=APP_ID, openid="o-baker"))
        db.add(WechatIdentity(user_id=plain_id, app_id=APP_ID, openid="o-plain"))
        await db.commit()
    fake.subscribed.update({"o-baker", "o-plain"})
    resp = await api.client.put(f"/api/communities/{cid}/members/{baker_id}/tags",
                                headers=api.auth(host), json={"tags": ["baking"]})
    assert resp.status == 200
    text = "明早九点烘焙原料到货,请到三号楼门卫室自取,记得带上购物袋"
    resp = await api.client.post(f"/api/communities/{cid}/notices", json={
        "text": text, "tag": "baking"}, headers={**api.auth(host), "Idempotency-Key": "n-1"})
    assert resp.status == 201, await resp.text()
    await asyncio.wait_for(fake.arrived.wait(), 10)
    await asyncio.sleep(0.3)  # a second message, were one wrongly sent, would land by now
    (message,) = fake.sent
    assert message["touser"] == "o-baker" and message["template_id"] == TEMPLATE
    assert message["data"]["thing1"]["value"] == "阳光花园"
    assert message["data"]["thing2"]["value"] == text[:20] != text
    assert len(message["data"]["time3"]["value"]) == len("2030-01-01 20:00")
    assert message["page"] == "pages/me/index"
    # The same key again: nothing more is sent.
    resp = await api.client.post(f"/api/communities/{cid}/notices", json={
        "text": text, "tag": "baking"}, headers={**api.auth(host), "Idempotency-Key": "n-1"})
    assert resp.status == 200 and (await resp.json())["replayed"] is True
    await asyncio.sleep(0.3)
    assert len(fake.sent) == 1
