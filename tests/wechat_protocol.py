"""A local server speaking WeChat's OAuth 网页授权 wire protocol, for tests.

It answers as open.weixin.qq.com and api.weixin.qq.com do: the authorize page (here it consents
at once for `next_person`) redirects to `redirect_uri?code=…&state=…`; `sns/oauth2/access_token`
takes appid/secret/code/grant_type as query parameters and answers JSON served as text/plain,
with `{"errcode", "errmsg"}` (HTTP 200) for a wrong secret (40125), an unknown code (40029) or
one used already (40163); `sns/userinfo` takes access_token/openid/lang (40001, 40003).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

APP_ID = "wx0123456789abcdef"
APP_SECRET = "local-test-secret-0123456789abcdef"


@dataclass
class Person:
    openid: str
    nickname: str
    unionid: str | None = None


@dataclass
class WechatProtocolServer:
    base: str = ""
    next_person: Person = field(default_factory=lambda: Person("o_default", "邻居"))
    codes: dict[str, Person] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    tokens: dict[str, Person] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    @property
    def authorize_url(self) -> str:
        return f"{self.base}/connect/oauth2/authorize"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/connect/oauth2/authorize", self.authorize)
        app.router.add_get("/sns/oauth2/access_token", self.access_token)
        app.router.add_get("/sns/userinfo", self.userinfo)
        return app

    def issue_code(self, person: Person) -> str:
        code = secrets.token_hex(16)
        self.codes[code] = person
        return code

    async def authorize(self, request: web.Request) -> web.Response:
        q = request.query
        wanted = ["appid", "redirect_uri", "response_type", "scope", "state"]
        if list(q.keys()) != wanted or q["appid"] != APP_ID or q["response_type"] != "code" \
                or q["scope"] not in ("snsapi_base", "snsapi_userinfo"):
            return web.Response(status=400, text="参数错误")
        code = self.issue_code(self.next_person)
        raise web.HTTPFound(f"{q['redirect_uri']}?code={code}&state={q['state']}")

    async def access_token(self, request: web.Request) -> web.Response:
        q = dict(request.query)
        self.calls.append(("access_token", q))
        if q.get("appid") != APP_ID or q.get("secret") != APP_SECRET:
            return _answer({"errcode": 40125, "errmsg": "invalid appsecret"})
        if q.get("grant_type") != "authorization_code":
            return _answer({"errcode": 40002, "errmsg": "invalid grant_type"})
        code = q.get("code", "")
        if code in self.used:
            return _answer({"errcode": 40163, "errmsg": "code been used"})
        person = self.codes.pop(code, None)
        if person is None:
            return _answer({"errcode": 40029, "errmsg": "invalid code"})
        self.used.add(code)
        token = secrets.token_hex(20)
        self.tokens[token] = person
        body: dict[str, Any] = {"access_token": token, "expires_in": 7200,
                                "refresh_token": secrets.token_hex(20), "openid": person.openid,
                                "scope": "snsapi_userinfo", "is_snapshotuser": 0}
        if person.unionid:
            body["unionid"] = person.unionid
        return _answer(body)

    async def userinfo(self, request: web.Request) -> web.Response:
        q = dict(request.query)
        self.calls.append(("userinfo", q))
        person = self.tokens.get(q.get("access_token", ""))
        if person is None:
            return _answer({"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"})
        if q.get("openid") != person.openid:
            return _answer({"errcode": 40003, "errmsg": "invalid openid"})
        body: dict[str, Any] = {"openid": person.openid, "nickname": person.nickname, "sex": 0,
                                "province": "", "city": "", "country": "",
                                "headimgurl": "", "privilege": []}
        if person.unionid:
            body["unionid"] = person.unionid
        return _answer(body)


def _answer(body: dict[str, Any]) -> web.Response:
    # WeChat serves its JSON as text/plain.
    return web.Response(text=json.dumps(body, ensure_ascii=False), content_type="text/plain")


@asynccontextmanager
async def wechat_server() -> AsyncIterator[WechatProtocolServer]:
    wechat = WechatProtocolServer()
    server = TestServer(wechat.app(), host="127.0.0.1")
    await server.start_server()
    wechat.base = str(server.make_url("")).rstrip("/")
    try:
        yield wechat
    finally:
        await server.close()
