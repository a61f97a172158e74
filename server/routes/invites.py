"""Getting in from a group link: invites to a community, sign-up with one, accepting one."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from commerce import accounts, invites, members, referrals
from commerce.accounts import JoinPolicy, Membership, Role, User
from commerce.errors import Conflict
from server import qr_images, wechat_oauth
from server.api import (
    PUBLIC,
    USER,
    Api,
    json_response,
    path_int,
    principal,
    read_json,
)
from server.commerce_keys import checkout_key
from server.keys import database_key, settings_key, tokens_key
from server.password_policy import check_password
from server.passwords import passwords_key
from server.rate_limits import rate_limiter_key
from server.routes.accounts import USERNAME

api = Api()


class UsernameTaken(Conflict):
    code = "username_taken"
    default_message = "用户名已被占用,换一个吧 / That username is taken, choose another"


class InviteCreate(BaseModel):
    expires_at: datetime | None = None
    max_uses: int | None = Field(default=None, ge=1, le=invites.MAX_USES)


class CommunityUpdate(BaseModel):
    join_policy: JoinPolicy


class Signup(BaseModel):
    username: str = Field(pattern=USERNAME)
    # Length and strength are the password policy's (400 `weak_password` with a reason).
    password: str = Field(max_length=256)
    invite_code: str = Field(min_length=1, max_length=64)
    display_name: str = Field(default="", max_length=64)
    # The share code of the neighbour whose link brought her (commerce/referrals.py).
    ref: str | None = Field(default=None, pattern=referrals.CODE_PATTERN)


def invite_url(request: web.Request, code: str) -> str:
    return f"{request.app[settings_key].base_url}/join/{code}"


def user_dict(user: User) -> dict[str, Any]:
    return {"id": user.id, "username": user.username, "role": user.role,
            "display_name": user.display_name}


def joined_dict(membership: Membership, community: accounts.Community,
                live_session_id: int | None) -> dict[str, Any]:
    """Where a newcomer stands and where to take them: the community's live room, if any."""
    return {"community": community.public_dict(),
            "membership": {"community_id": membership.community_id, "status": membership.status},
            "live_session_id": live_session_id}


@api.route("PATCH", "/api/communities/{id}", summary="Set how invitees join: open or approval "
           "(the community's host or an admin)", tag="accounts", auth=(Role.ADMIN, Role.HOST),
           body=CommunityUpdate, responses={404: "No such community"})
async def update_community(request: web.Request) -> web.Response:
    community_id = path_int(request, "id")
    body = await read_json(request, CommunityUpdate)
    async with request.app[database_key].session() as db:
        community = await accounts.set_join_policy(db, community_id, principal(request),
                                                   body.join_policy)
        return json_response(community.public_dict())


@api.route("POST", "/api/communities/{id}/invites", summary="Make an invite link and QR poster "
           "(the community's host or an admin)", tag="invites", auth=(Role.ADMIN, Role.HOST),
           body=InviteCreate, responses={201: "Created: {code, url}"})
async def create_invite(request: web.Request) -> web.Response:
    community_id = path_int(request, "id")
    body = await read_json(request, InviteCreate)
    async with request.app[database_key].session() as db:
        invite = await invites.create_invite(db, community_id, principal(request),
                                             expires_at=body.expires_at, max_uses=body.max_uses)
        shown = _managed(request, invite)
    return json_response(shown, status=201)


def _managed(request: web.Request, invite: invites.Invite) -> dict[str, Any]:
    return {**invite.manager_dict(), "url": invite_url(request, invite.code),
            "qr_svg": f"/api/invites/{invite.code}/qr.svg"}


@api.route("GET", "/api/communities/{id}/invites", summary="The community's invite links "
           "(its host or an admin)", tag="invites", auth=(Role.ADMIN, Role.HOST))
async def list_invites(request: web.Request) -> web.Response:
    community_id = path_int(request, "id")
    async with request.app[database_key].session() as db:
        rows = await invites.list_invites(db, community_id, principal(request))
        return json_response({"items": [_managed(request, row) for row in rows]})


@api.route("DELETE", "/api/invites/{code}", summary="Revoke an invite link at once "
           "(the community's host or an admin)", tag="invites", auth=(Role.ADMIN, Role.HOST),
           responses={404: "invite_not_found"})
async def revoke_invite(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        invite = await invites.revoke_invite(db, request.match_info["code"], principal(request))
        return json_response(_managed(request, invite))


@api.route("GET", "/api/invites/{code}", summary="What an invite link leads to: the community, "
           "who invites, and whether it still works (anyone with the link)", tag="invites",
           auth=PUBLIC, responses={404: "invite_not_found"})
async def preview_invite(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        shown = (await invites.preview(db, request.match_info["code"])).public_dict()
    shown["wechat"] = wechat_oauth.enabled(request.app)
    return json_response(shown)


@api.route("GET", "/api/invites/{code}/qr.svg", summary="QR poster of the invite link (SVG)",
           tag="invites", auth=PUBLIC, response_content_type="image/svg+xml",
           responses={404: "invite_not_found", 409: "invite_used_up",
                      410: "invite_expired, invite_revoked"})
async def invite_qr(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        found = await invites.preview(db, request.match_info["code"])
    # No fresh poster of a dead link.
    invites.ensure_usable(found.invite)
    url = invite_url(request, found.invite.code)
    body = qr_images.qr_svg(url, title=f"加入 {found.community.name} / Join")
    # The code is the key to the community: no shared cache keeps it after a revocation.
    return qr_images.qr_response(body, "svg", cache="private, no-store")


@api.route("POST", "/api/signup", summary="Sign up with an invite link: a viewer account that "
           "joins the invite's community", tag="auth", auth=PUBLIC, body=Signup,
           responses={201: "Created: {token, user, community, membership, live_session_id}",
                      400: "weak_password (with reason)", 409: "username_taken, invite_used_up",
                      410: "invite_expired, invite_revoked", 429: "rate_limited"})
async def signup(request: web.Request) -> web.Response:
    body = await read_json(request, Signup)
    limiter = request.app[rate_limiter_key]
    limiter.hit([(limiter.signup_ip, limiter.request_ip(request))])
    database = request.app[database_key]
    # A dead link is refused before argon2 is paid for; the use itself is taken atomically below.
    async with database.session() as db:
        invites.ensure_usable(await invites.find_invite(db, body.invite_code))
    await asyncio.to_thread(check_password, body.password, body.username)
    hashed = await request.app[passwords_key].hash_async(body.password)
    async with database.session() as db:
        invite = await invites.find_invite(db, body.invite_code)
        try:
            user = await accounts.create_user(db, body.username, hashed, Role.VIEWER,
                                              body.display_name.strip())
        except Conflict:
            raise UsernameTaken(field="username") from None
        # The account, the membership and the use stand or fall together.
        membership, _took = await invites.join_with_invite(db, invite, user.id)
        if body.ref:
            await referrals.record_arrival(db, user.id, body.ref, "signup")
        community = await db.get(accounts.Community, invite.community_id)
        assert community is not None
        shown = {"user": user_dict(user), "created": True,
                 **joined_dict(membership, community,
                               await invites.community_live_session(db, community))}
        principal_ = user.principal()
    await open_sales_see(request, membership, invite.community_id, user.id)
    token = request.app[tokens_key].issue(principal_)
    return json_response({"token": token, **shown}, status=201)


@api.route("POST", "/api/invites/{code}/accept", summary="Join the invite's community as the "
           "signed-in user", tag="invites", auth=USER,
           query={"ref": "the share code of the neighbour whose link brought her"},
           responses={409: "invite_used_up", 410: "invite_expired, invite_revoked"})
async def accept_invite(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        invite = await invites.find_invite(db, request.match_info["code"])
        membership, _took = await invites.join_with_invite(db, invite, principal(request).user_id)
        ref = request.query.get("ref", "")
        if ref and referrals.valid_code(ref):
            await referrals.record_arrival(db, principal(request).user_id, ref, "invite")
        community = await db.get(accounts.Community, invite.community_id)
        assert community is not None
        shown = joined_dict(membership, community,
                            await invites.community_live_session(db, community))
    await open_sales_see(request, membership, invite.community_id, principal(request).user_id)
    return json_response(shown)


async def open_sales_see(request: web.Request, membership: Membership,
                         community_id: int, user_id: int) -> None:
    """A neighbour who just joined (approved at once) pays her community's price in the sales
    already open, from this moment: they hold their members in Redis, loaded when they opened."""
    checkout = request.app.get(checkout_key)
    if checkout is not None and membership.status == "approved":
        await members.resync_open_sales(checkout, community_id, user_id)
