"""Tokens, users, communities and memberships."""

from __future__ import annotations

import asyncio

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import select

from commerce import accounts
from commerce.accounts import Role
from commerce.errors import Unauthorized
from server.api import PUBLIC, USER, Api, Id, json_response, path_int, principal, read_json
from server.keys import database_key, redis_key, settings_key, tokens_key
from server.login_guard import LoginGuard, Outcome
from server.password_policy import check_password
from server.passwords import passwords_key
from server.rate_limits import rate_limiter_key
from server.revocations import revocations_key

api = Api()

USERNAME = r"^[A-Za-z0-9_.\-]{3,32}$"


class TokenRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class UserCreate(BaseModel):
    username: str = Field(pattern=USERNAME)
    # Length and strength are the password policy's (400 `weak_password` with a reason).
    password: str = Field(max_length=256)
    role: Role = Role.VIEWER
    display_name: str = Field(default="", max_length=64)


class UserUpdate(BaseModel):
    role: Role | None = None
    disabled: bool | None = None
    display_name: str | None = Field(default=None, max_length=64)
    password: str | None = Field(default=None, max_length=256)


class CommunityCreate(BaseModel):
    name: str = Field(min_length=1, max_length=80)
    join_policy: accounts.JoinPolicy = accounts.JoinPolicy.OPEN


class MemberAdd(BaseModel):
    user_id: Id


@api.route("POST", "/api/auth/token", summary="Exchange username and password for a bearer token",
           tag="auth", auth=PUBLIC, body=TokenRequest,
           responses={401: "Wrong credentials", 429: "Too many failed attempts"})
async def issue_token(request: web.Request) -> web.Response:
    body = await read_json(request, TokenRequest)
    settings, limiter = request.app[settings_key], request.app[rate_limiter_key]
    ip = limiter.request_ip(request)
    # Every attempt costs an argon2 verification: an address gets so many per minute.
    limiter.hit([(limiter.login_ip, ip)])
    guard = LoginGuard(request.app[redis_key], settings.login_free_failures,
                       settings.login_free_failures_per_ip, limit_ip=not limiter.is_exempt(ip))
    # The slot is taken before argon2: parallel guesses cannot all slip past the count.
    await guard.reserve(body.username, ip)
    outcome: Outcome = "abort"
    try:
        async with request.app[database_key].session() as db:
            user = await accounts.find_user(db, body.username)
        # Verify even for unknown users, and for accounts with no password (made through
        # WeChat), so timing does not reveal which usernames exist or how they sign in.
        passwords = request.app[passwords_key]
        has_password = user is not None and not user.password_hash.startswith("!")
        hashed = user.password_hash if user is not None and has_password else passwords.dummy_hash
        ok = await passwords.verify_async(hashed, body.password)
        outcome = "ok" if user is not None and has_password and ok and not user.disabled else "fail"
    finally:
        await guard.done(body.username, ip, outcome)
    if outcome != "ok" or user is None:
        raise Unauthorized("用户名或密码错误 / Wrong username or password", reason="bad_credentials")
    principal_ = user.principal()
    token = request.app[tokens_key].issue(principal_)
    async with request.app[database_key].session() as db:
        leads = await accounts.led_communities(db, user.id)
    return json_response(
        {"token": token, "user": {"id": user.id, "username": user.username, "role": user.role,
                                  "display_name": user.display_name, "leads": leads},
         "expires_in": request.app[tokens_key].ttl_s}
    )


@api.route("GET", "/api/me", summary="Who am I, and my communities", tag="auth", auth=USER)
async def me(request: web.Request) -> web.Response:
    who = principal(request)
    async with request.app[database_key].session() as db:
        user = await accounts.get_user(db, who.user_id)
        communities = await accounts.member_communities(db, who.user_id)
        leads = await accounts.led_communities(db, who.user_id)
    return json_response({"id": user.id, "username": user.username, "role": user.role,
                          "display_name": user.display_name, "communities": communities,
                          "leads": leads})


@api.route("POST", "/api/users", summary="Create a user (admin)", tag="accounts",
           auth=(Role.ADMIN,), body=UserCreate,
           responses={201: "Created: {id}", 400: "weak_password (with reason)", 409: "Username taken"})
async def create_user(request: web.Request) -> web.Response:
    body = await read_json(request, UserCreate)
    await asyncio.to_thread(check_password, body.password, body.username)
    hashed = await request.app[passwords_key].hash_async(body.password)
    async with request.app[database_key].session() as db:
        user = await accounts.create_user(db, body.username, hashed, body.role, body.display_name)
    return json_response({"id": user.id, "username": user.username, "role": user.role}, status=201)


@api.route("PATCH", "/api/users/{id}",
           summary="Change a user's role or password, disable or re-enable (admin)",
           tag="accounts", auth=(Role.ADMIN,), body=UserUpdate,
           responses={400: "weak_password (with reason)", 404: "No such user",
                      409: "self_lockout: an admin cannot disable or demote themselves"})
async def update_user(request: web.Request) -> web.Response:
    """Disabling, a role change or a new password ends the user's tokens and sockets everywhere
    within ~1 s."""
    user_id = path_int(request, "id")
    body = await read_json(request, UserUpdate)
    password_hash = None
    if body.password is not None:
        async with request.app[database_key].session() as db:
            username = (await accounts.get_user(db, user_id)).username
        await asyncio.to_thread(check_password, body.password, username)
        password_hash = await request.app[passwords_key].hash_async(body.password)
    async with request.app[database_key].session() as db:
        user, revoke = await accounts.update_user(
            db, user_id, principal(request), role=body.role, disabled=body.disabled,
            display_name=body.display_name, password_hash=password_hash,
        )
        shown = {"id": user.id, "username": user.username, "role": user.role,
                 "disabled": user.disabled, "display_name": user.display_name}
    # After the commit: a login racing this reads the new row, so no token minted with the old
    # role or standing outlives the cut-off.
    if revoke:
        await request.app[revocations_key].revoke(user_id)
    return json_response(shown)


@api.route("POST", "/api/communities", summary="Create a community (小区)", tag="accounts",
           auth=(Role.ADMIN, Role.HOST), body=CommunityCreate,
           responses={201: "Created: {id}"})
async def create_community(request: web.Request) -> web.Response:
    body = await read_json(request, CommunityCreate)
    async with request.app[database_key].session() as db:
        community = await accounts.create_community(db, body.name, principal(request).user_id,
                                                    body.join_policy)
    return json_response(community.public_dict(), status=201)


@api.route("GET", "/api/communities", summary="List communities", tag="accounts", auth=PUBLIC)
async def list_communities(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        rows = (await db.execute(select(accounts.Community).order_by(accounts.Community.id))).scalars()
        return json_response([c.public_dict() for c in rows])


@api.route("POST", "/api/communities/{id}/members", summary="Add an approved member",
           tag="accounts", auth=(Role.ADMIN, Role.HOST), body=MemberAdd,
           responses={201: "Added"})
async def add_member(request: web.Request) -> web.Response:
    community_id = path_int(request, "id")
    body = await read_json(request, MemberAdd)
    async with request.app[database_key].session() as db:
        membership = await accounts.add_member(
            db, community_id, body.user_id, approved_by=principal(request).user_id,
            manager=principal(request),
        )
    return json_response(
        {"community_id": community_id, "user_id": body.user_id, "status": membership.status},
        status=201,
    )


@api.route("POST", "/api/communities/{id}/join", summary="Ask to join a community (pending)",
           tag="accounts", auth=USER, responses={202: "Asked (or already a member)"})
async def join_community(request: web.Request) -> web.Response:
    community_id = path_int(request, "id")
    who = principal(request)
    async with request.app[database_key].session() as db:
        membership = await accounts.request_membership(db, community_id, who.user_id)
    return json_response({"community_id": community_id, "status": membership.status}, status=202)
