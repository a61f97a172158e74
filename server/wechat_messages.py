"""WeChat subscription messages (订阅消息): "the session you booked is live", and a community's
notice to its members, on the phone.

Off unless LINLI_WECHAT_APP_ID, LINLI_WECHAT_APP_SECRET and a template are set
(LINLI_WECHAT_TEMPLATE_ID for going live, LINLI_WECHAT_NOTICE_TEMPLATE_ID for notices; each
kind is sent only when its template is; infra/settings.py). WeChat's own protocol, spoken with aiohttp:

- `GET {base}/cgi-bin/token?grant_type=client_credential&appid=…&secret=…` →
  `{"access_token", "expires_in"}`; the token is cached until shortly before it expires, and
  one refresh at a time is made however many sends need it;
- `POST {base}/cgi-bin/message/subscribe/send?access_token=…` with
  `{"touser", "template_id", "page", "data": {"thing1": {"value": …}, …}}` → `{"errcode": 0}`.
  errcode 40001 (token invalid) / 42001 (token expired) / 40014 drop the cached token and retry
  once with a new one; 43101 (the user has not accepted, or used up, the subscription) is a
  normal "not sent"; anything else is logged and not retried.

Which WeChat user a Linli account is: its openid, read through `OpenIdSource`. The default
reads a table `wechat_identities (user_id, openid)` when it exists (WeChat sign-in owns that
table); without it nobody has an openid and nothing is sent. A deployment keeping openids
elsewhere passes its own source.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import aiohttp
from sqlalchemy import bindparam, text
from sqlalchemy.exc import DBAPIError

from commerce.base import as_utc
from infra.settings import Settings
from server.database import Database

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.weixin.qq.com"
TOKEN_ERRORS = frozenset({40001, 40014, 42001})
NOT_SUBSCRIBED = 43101
# Refresh this long before WeChat's stated expiry (its tokens last 7200 s).
TOKEN_MARGIN_S = 300
REQUEST_TIMEOUT_S = 10
# WeChat limits a `thing` value to 20 characters.
THING_CHARS = 20
SENDS_AT_ONCE = 8


class WeChatError(Exception):
    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"wechat errcode {errcode}: {errmsg}")
        self.errcode = errcode


@dataclass(frozen=True)
class WeChatConfig:
    app_id: str
    app_secret: str
    template_id: str
    base_url: str = DEFAULT_BASE_URL
    # The page of the mini program the message opens (`page`), with the session id appended.
    page: str = "pages/live/index?session_id="
    time_zone: str = "Asia/Shanghai"
    # A community's notice to its members (its own template); "" sends notices in-app only.
    notice_template_id: str = ""
    notice_page: str = "pages/me/index"

    @classmethod
    def from_settings(cls, settings: Settings) -> WeChatConfig | None:
        """Configured when the app id, its secret and a template are set; a template left out
        ("") is a kind of message not sent through WeChat."""
        secret = settings.wechat_app_secret
        templates = (settings.wechat_template_id, settings.wechat_notice_template_id)
        if not (settings.wechat_app_id and secret and any(templates)):
            return None
        return cls(settings.wechat_app_id, secret.get_secret_value(),
                   settings.wechat_template_id or "", base_url=settings.wechat_api_base,
                   notice_template_id=settings.wechat_notice_template_id or "")


class OpenIdSource(Protocol):
    async def openids(self, user_ids: Sequence[int]) -> dict[int, str]: ...


class IdentityTableOpenIds:
    """openids from `wechat_identities (user_id, openid)`; none while that table does not exist."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def openids(self, user_ids: Sequence[int]) -> dict[int, str]:
        if not user_ids:
            return {}
        query = text("SELECT user_id, openid FROM wechat_identities WHERE user_id IN :ids").bindparams(
            bindparam("ids", expanding=True))
        found: dict[int, str] = {}
        try:
            # Its own session: on PostgreSQL a failed statement would spoil a shared transaction.
            async with self.database.session() as db:
                for start in range(0, len(user_ids), 500):
                    rows = await db.execute(query, {"ids": list(user_ids[start:start + 500])})
                    found.update({int(uid): str(oid) for uid, oid in rows.all() if oid})
        except DBAPIError:
            log.info("no wechat_identities table yet: no WeChat messages sent")
            return {}
        return found


class WeChatSubscribeMessages:
    """Sends subscription messages; one access token per process, refreshed when WeChat says."""

    def __init__(self, config: WeChatConfig, http: aiohttp.ClientSession | None = None) -> None:
        self.config = config
        self._http = http
        self._own_http = http is None
        self._token: str | None = None
        self._token_until = 0.0
        self._token_lock = asyncio.Lock()
        self.token_fetches = 0

    async def close(self) -> None:
        if self._own_http and self._http is not None:
            await self._http.close()

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))
        return self._http

    async def access_token(self, *, stale: str | None = None) -> str:
        """The cached token, or a new one. `stale` names a token WeChat refused: it is replaced
        unless another caller already did."""
        async with self._token_lock:
            if self._token is not None and self._token != stale and time.monotonic() < self._token_until:
                return self._token
            params = {"grant_type": "client_credential", "appid": self.config.app_id,
                      "secret": self.config.app_secret}
            async with self._session().get(f"{self.config.base_url}/cgi-bin/token",
                                           params=params) as resp:
                body = await resp.json(content_type=None)
            self.token_fetches += 1
            if not isinstance(body, dict) or not body.get("access_token"):
                raise WeChatError(int(body.get("errcode", -1)) if isinstance(body, dict) else -1,
                                  str(body.get("errmsg", "")) if isinstance(body, dict) else "")
            self._token = str(body["access_token"])
            expires = int(body.get("expires_in", 7200))
            self._token_until = time.monotonic() + max(60, expires - TOKEN_MARGIN_S)
            return self._token

    async def send(self, openid: str, data: dict[str, str], page: str = "",
                   template_id: str | None = None) -> bool:
        """One message; True when WeChat accepted it, False when the user has no subscription
        left (43101). Token errors refresh the token and retry once; other errors raise."""
        payload: dict[str, Any] = {
            "touser": openid, "template_id": template_id or self.config.template_id,
            "data": {key: {"value": value} for key, value in data.items()},
        }
        if page:
            payload["page"] = page
        token = await self.access_token()
        for attempt in (1, 2):
            async with self._session().post(
                    f"{self.config.base_url}/cgi-bin/message/subscribe/send",
                    params={"access_token": token}, json=payload) as resp:
                body = await resp.json(content_type=None)
            code = int(body.get("errcode", 0)) if isinstance(body, dict) else -1
            if code == 0:
                return True
            if code == NOT_SUBSCRIBED:
                return False
            if code in TOKEN_ERRORS and attempt == 1:
                token = await self.access_token(stale=token)
                continue
            raise WeChatError(code, str(body.get("errmsg", "")) if isinstance(body, dict) else "")
        return False

    def live_data(self, title: str, starts: datetime | None) -> dict[str, str]:
        """The template's fields: thing1 the session title, time2 when it started (local)."""
        when = as_utc(starts) if starts is not None else None
        local = when.astimezone(ZoneInfo(self.config.time_zone)) if when else None
        return {"thing1": title[:THING_CHARS],
                "time2": local.strftime("%Y-%m-%d %H:%M") if local else ""}

    async def tell_live(self, openids: Mapping[int, str], session_id: int, title: str,
                        starts: datetime | None) -> int:
        """"Live now" to each openid, a few at a time; returns how many WeChat accepted."""
        if not self.config.template_id:
            return 0
        return await self._fan_out(openids, self.live_data(title, starts),
                                   f"{self.config.page}{session_id}", self.config.template_id)

    def notice_data(self, community: str, text: str, sent: datetime) -> dict[str, str]:
        """The notice template's fields: thing1 the community, thing2 the notice (cut to
        WeChat's 20 characters; the whole text is in the app), time3 when (local)."""
        local = as_utc(sent).astimezone(ZoneInfo(self.config.time_zone))
        return {"thing1": community[:THING_CHARS], "thing2": text[:THING_CHARS],
                "time3": local.strftime("%Y-%m-%d %H:%M")}

    async def tell_notice(self, openids: Mapping[int, str], community: str, text: str,
                          sent: datetime) -> int:
        """A community's notice to each openid; 0 when no notice template is configured."""
        if not self.config.notice_template_id:
            return 0
        return await self._fan_out(openids, self.notice_data(community, text, sent),
                                   self.config.notice_page, self.config.notice_template_id)

    async def _fan_out(self, openids: Mapping[int, str], data: dict[str, str], page: str,
                       template_id: str) -> int:
        """One message to each openid, a few at a time; how many WeChat accepted."""
        gate = asyncio.Semaphore(SENDS_AT_ONCE)

        async def one(openid: str) -> bool:
            async with gate:
                try:
                    return await self.send(openid, data, page, template_id)
                except (WeChatError, aiohttp.ClientError, TimeoutError, ValueError):
                    log.warning("wechat message not sent", exc_info=True,
                                extra={"page": page})
                    return False

        results = await asyncio.gather(*(one(openid) for openid in openids.values()))
        return sum(results)
