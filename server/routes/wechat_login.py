"""Sign in with WeChat (网页授权), optionally joining an invite's community on the way."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from commerce import accounts, identities, invites
from commerce.errors import DomainError, Unauthorized
from server import wechat_oauth
from server.api import PUBLIC, Api, json_response, optional_principal, read_json
from server.keys import database_key, settings_key, tokens_key
from server.rate_limits import rate_limiter_key
from server.routes import invites as invite_routes
from server.routes.invites import joined_dict, user_dict

api = Api()

CALLBACK_PATH = "/auth/wechat/callback"


class WechatStart(BaseModel):
    invite_code: str | None = Field(default=None, min_length=1, max_length=64)
    # true (signed in): bind the WeChat person to the caller's account instead of signing in
    # as the account bound to it (绑定微信, so the shop can pay her through WeChat).
    link: bool = False


class WechatCallback(BaseModel):
    code: str = Field(min_length=1, max_length=512)
    state: str = Field(min_length=1, max_length=wechat_oauth.MAX_STATE_LENGTH)
    browser_key: str = Field(min_length=1, max_length=128)


@api.route("GET", "/api/auth/providers", summary="Which outside sign-ins are set up here",
           tag="auth", auth=PUBLIC)
async def providers(request: web.Request) -> web.Response:
    return json_response({"wechat": wechat_oauth.enabled(request.app)})


@api.route("POST", "/api/auth/wechat/start", summary="Begin WeChat sign-in: where to send the "
           "browser, and the key this browser keeps for the callback", tag="auth", auth=PUBLIC,
           body=WechatStart, responses={404: "wechat_not_configured, invite_not_found",
                                        401: "login_required (link without signing in)"})
async def wechat_start(request: web.Request) -> web.Response:
    provider = wechat_oauth.provider(request.app)
    body = await read_json(request, WechatStart)
    limiter = request.app[rate_limiter_key]
    limiter.hit([(limiter.login_ip, limiter.request_ip(request))])
    if body.invite_code is not None:
        async with request.app[database_key].session() as db:
            invites.ensure_usable(await invites.find_invite(db, body.invite_code))
    link: int | None = None
    if body.link:
        who = optional_principal(request)
        if who is None:
            raise Unauthorized(reason="login_required")
        link = who.user_id
    state, browser_key = await wechat_oauth.states(request.app).begin(
        {"invite": body.invite_code, "link": link})
    redirect_uri = request.app[settings_key].base_url + CALLBACK_PATH
    return json_response({"authorize_url": provider.authorize_url(redirect_uri, state),
                          "state": state, "browser_key": browser_key})


@api.route("POST", "/api/auth/wechat/callback", summary="Finish WeChat sign-in: the code and "
           "state WeChat sent back, with this browser's key → {token}", tag="auth", auth=PUBLIC,
           body=WechatCallback,
           responses={401: "wechat_refused (WeChat's errcode)", 403: "oauth_state_invalid",
                      409: "wechat_bound_elsewhere (linking a WeChat bound to another account)",
                      429: "rate_limited", 502: "wechat_unavailable"})
async def wechat_callback(request: web.Request) -> web.Response:
    provider = wechat_oauth.provider(request.app)
    body = await read_json(request, WechatCallback)
    limiter = request.app[rate_limiter_key]
    # A first sign-in makes an account: the same allowance as signing up.
    limiter.hit([(limiter.signup_ip, limiter.request_ip(request))])
    started = await wechat_oauth.states(request.app).finish(body.state, body.browser_key)
    profile = await provider.profile(body.code)
    database = request.app[database_key]
    link = started.get("link")
    if isinstance(link, int):
        async with database.session() as db:
            await identities.link_wechat(db, link, profile.app_id, profile.openid,
                                         profile.unionid)
            user = await accounts.get_user(db, link)
            if user.disabled:
                raise Unauthorized("账号已停用 / This account is disabled", reason="disabled")
            answer = {"user": user_dict(user), "created": False, "linked": True}
            principal_ = user.principal()
        return json_response({"token": request.app[tokens_key].issue(principal_), **answer})
    async with database.session() as db:
        user, created = await identities.wechat_user(db, profile.app_id, profile.openid,
                                                     profile.unionid, profile.nickname)
        if user.disabled:
            raise Unauthorized("账号已停用 / This account is disabled", reason="disabled")
        shown: dict[str, Any] = {"user": user_dict(user), "created": created}
        principal_ = user.principal()
    invite_code = started.get("invite")
    if isinstance(invite_code, str):
        # Signed in either way; a link that died meanwhile is reported, not a failed sign-in.
        try:
            async with database.session() as db:
                invite = await invites.find_invite(db, invite_code)
                membership, _took = await invites.join_with_invite(db, invite, user.id)
                community = await db.get(accounts.Community, invite.community_id)
                assert community is not None
                shown |= joined_dict(membership, community,
                                     await invites.community_live_session(db, community))
            await invite_routes.open_sales_see(request, membership, invite.community_id, user.id)
        except DomainError as exc:
            shown["join_error"] = {"code": exc.code, "message": exc.message}
    token = request.app[tokens_key].issue(principal_)
    return json_response({"token": token, **shown})
