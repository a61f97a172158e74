"""WeChat sign-in (OAuth 2.0 网页授权) behind a provider interface; off unless configured.

The wire protocol is WeChat's own dialect of OAuth 2.0: the browser goes to
`open.weixin.qq.com/connect/oauth2/authorize?appid=…&redirect_uri=…&response_type=code&scope=…
&state=…#wechat_redirect` (parameters in that order), comes back to `redirect_uri?code=…&state=…`,
and the server trades the code at `sns/oauth2/access_token?appid&secret&code&grant_type=
authorization_code` and reads `sns/userinfo?access_token&openid&lang`. Answers are JSON (often
served as text/plain); a failure is `{"errcode": 40029, "errmsg": "invalid code"}` with HTTP 200.

Two plain GETs over aiohttp (already the app's HTTP stack, async, connection-pooled): the PyPI
`wechatpy` last released in 2021 and is synchronous (requests), and a generic OAuth client
(authlib) needs httpx plus hooks renaming every parameter of this dialect.

CSRF: `state` is bound to the browser that started the flow. The start hands that browser a
random key (kept in its sessionStorage) and stores only its SHA-256 under the state, for ten
minutes and one use; the callback page sends state, code and key back, and a state arriving
with another browser's key (or none) is refused. No cookie is set (SECURITY.md: bearer only).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

from commerce.errors import DomainError, NotFound
from server.keys import redis_key, settings_key

STATE_TTL_S = 600
STATE_PREFIX = "oauth:wechat:state:"
MAX_STATE_LENGTH = 64
MAX_ANSWER_BYTES = 64 * 1024
TIMEOUT_S = 10.0
SCOPE = "snsapi_userinfo"


@dataclass(frozen=True)
class ProviderProfile:
    """Who the provider says signed in."""

    app_id: str
    openid: str
    unionid: str | None
    nickname: str


class OAuthProvider(Protocol):
    """What a sign-in provider offers the routes: where to send the browser, and whom a code
    names. WeChat is the one there is; another (Alipay, an OIDC provider) would fit the same."""

    app_id: str

    def authorize_url(self, redirect_uri: str, state: str) -> str: ...

    async def profile(self, code: str) -> ProviderProfile: ...


class WechatNotConfigured(NotFound):
    code = "wechat_not_configured"
    default_message = "未开通微信登录 / WeChat sign-in is not set up here"


class WechatRefused(DomainError):
    """WeChat answered with an errcode (a used or invalid code, a bad app secret, …)."""

    code = "wechat_refused"
    status = 401
    default_message = "微信授权失败,请重试 / WeChat sign-in failed, try again"


class WechatUnavailable(DomainError):
    code = "wechat_unavailable"
    status = 502
    default_message = "暂时连不上微信,请稍后再试 / WeChat cannot be reached, try again later"


class OAuthStateInvalid(DomainError):
    code = "oauth_state_invalid"
    status = 403
    default_message = "登录请求已失效,请重新开始 / This sign-in attempt is not valid, start again"


class WechatOAuth:
    """The WeChat official-account (公众号) web authorization client."""

    def __init__(self, app_id: str, secret: str, authorize_base: str, api_base: str,
                 http: aiohttp.ClientSession) -> None:
        self.app_id = app_id
        self._secret = secret
        self._authorize_base = authorize_base
        self._api_base = api_base.rstrip("/")
        self._http = http

    def authorize_url(self, redirect_uri: str, state: str) -> str:
        # WeChat wants exactly this order and the #wechat_redirect fragment.
        query = urlencode([("appid", self.app_id), ("redirect_uri", redirect_uri),
                           ("response_type", "code"), ("scope", SCOPE), ("state", state)])
        return f"{self._authorize_base}?{query}#wechat_redirect"

    async def profile(self, code: str) -> ProviderProfile:
        token = await self._get("/sns/oauth2/access_token", {
            "appid": self.app_id, "secret": self._secret, "code": code,
            "grant_type": "authorization_code"})
        access_token, openid = _text(token, "access_token"), _text(token, "openid")
        info = await self._get("/sns/userinfo", {
            "access_token": access_token, "openid": openid, "lang": "zh_CN"})
        if _text(info, "openid") != openid:
            raise WechatRefused(reason="openid_mismatch")
        unionid = info.get("unionid") or token.get("unionid")
        return ProviderProfile(
            app_id=self.app_id, openid=openid,
            unionid=unionid if isinstance(unionid, str) and 0 < len(unionid) <= 128 else None,
            nickname=str(info.get("nickname") or "")[:64])

    async def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        try:
            async with self._http.get(self._api_base + path, params=params,
                                      timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as resp:
                raw = await resp.content.read(MAX_ANSWER_BYTES + 1)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError):
            raise WechatUnavailable() from None
        if status != 200 or len(raw) > MAX_ANSWER_BYTES:
            raise WechatUnavailable(status=status)
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise WechatUnavailable(reason="not_json") from None
        if not isinstance(data, dict):
            raise WechatUnavailable(reason="not_json")
        errcode = data.get("errcode")
        if errcode not in (None, 0):
            # errmsg is WeChat's English text; the code is what support looks up.
            raise WechatRefused(errcode=errcode, errmsg=str(data.get("errmsg", ""))[:200])
        return data


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= 512:
        raise WechatUnavailable(reason=f"bad_{name}")
    return value


class OAuthStates:
    """One-use `state` values bound to the browser that started the flow (see the module doc)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def begin(self, payload: dict[str, Any]) -> tuple[str, str]:
        """A new (state, browser key); `payload` comes back from `finish`."""
        state, browser_key = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        record = json.dumps({"bind": _digest(browser_key), **payload})
        await self.redis.set(STATE_PREFIX + state, record, ex=STATE_TTL_S, nx=True)
        return state, browser_key

    async def finish(self, state: str, browser_key: str) -> dict[str, Any]:
        """The payload of `state`, once, when `browser_key` is the key of the browser that began
        it; `OAuthStateInvalid` (403) for an unknown, expired, used or foreign state."""
        if not 0 < len(state) <= MAX_STATE_LENGTH or not state.isascii():
            raise OAuthStateInvalid(reason="unknown_state")
        raw = await self.redis.getdel(STATE_PREFIX + state)
        if raw is None:
            raise OAuthStateInvalid(reason="unknown_state")
        record = json.loads(raw)
        if not hmac.compare_digest(str(record.pop("bind", "")), _digest(browser_key)):
            raise OAuthStateInvalid(reason="other_browser")
        return dict(record)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


wechat_key = web.AppKey("wechat_oauth", WechatOAuth)


def enabled(app: web.Application) -> bool:
    return wechat_key in app


def provider(app: web.Application) -> OAuthProvider:
    if wechat_key not in app:
        raise WechatNotConfigured()
    return app[wechat_key]


async def wechat_ctx(app: web.Application) -> AsyncIterator[None]:
    """The client exists only when LINLI_WECHAT_APP_ID and LINLI_WECHAT_APP_SECRET are set."""
    settings = app[settings_key]
    if not (settings.wechat_app_id and settings.wechat_app_secret):
        yield
        return
    async with aiohttp.ClientSession(raise_for_status=False) as http:
        app[wechat_key] = WechatOAuth(settings.wechat_app_id,
                                      settings.wechat_app_secret.get_secret_value(),
                                      settings.wechat_authorize_url, settings.wechat_api_base, http)
        yield


def states(app: web.Application) -> OAuthStates:
    return OAuthStates(app[redis_key])
