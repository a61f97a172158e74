"""A guest on camera (连线): the host invites a signed-in user, who publishes from a phone page.

The invitation lives with the session's media (this process owns it: requests for these
routes are forwarded to the media owner, server/cluster_routing.py), so the session must be
live to invite. Only the session's host (or an admin) invites and ends; only the invited user
publishes. Pictures are put together on the server (media/guest.py, docs/GUEST.md).
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from commerce import accounts, live_sessions
from commerce.accounts import Principal, Role
from commerce.errors import Forbidden, InvalidInput, NotFound
from commerce.live_sessions import LiveSession
from commerce.notifications import NoticeKind
from media.errors import NotLive
from media.hub import MediaHub
from media.keys import media_hub_key
from server.api import USER, Api, Id, json_response, path_int, principal, read_json
from server.keys import database_key, settings_key
from server.notify import tell
from server.routes.signalling import public_ice_links, read_offer

api = Api()


class GuestInvite(BaseModel):
    """Who: by id, or by the username the host was told (one of the two)."""

    user_id: Id | None = None
    username: str | None = Field(default=None, min_length=1, max_length=64)


def _hub(request: web.Request) -> MediaHub:
    hub = request.app.get(media_hub_key)
    if hub is None:
        raise NotLive()
    return hub


async def _ensure_host(request: web.Request, session_id: int) -> tuple[Principal, LiveSession]:
    actor = principal(request)
    async with request.app[database_key].session() as db:
        session = await live_sessions.get_session(db, session_id)
    live_sessions.ensure_owner(session, actor)
    return actor, session


async def _notify_guest(request: web.Request, user_id: int, session: LiveSession) -> None:
    """The invited user's notification: stored, then delivered live to her open pages by the
    notices component (server/notices_component.py), in whichever process holds her sockets."""
    await tell(request.app, user_id, NoticeKind.GUEST_INVITE,
               {"session_id": session.id, "title": session.title}, _page(session.id),
               f"guest:{session.id}", session_id=session.id)


def _page(session_id: int) -> str:
    return f"/guest/{session_id}"


@api.route("POST", "/api/sessions/{id}/guest",
           summary="Invite a signed-in user on camera (连线) in a live session (its host)",
           tag="sessions", auth=(Role.HOST, Role.ADMIN), body=GuestInvite,
           responses={201: "{user_id, page}: the page the guest opens on a phone",
                      403: "Not your session, or the user may not be a guest",
                      404: "No such session or user",
                      409: "Not live here yet (not_live), or the host streams over RTMP"})
async def invite_guest(request: web.Request) -> web.Response:
    session_id = path_int(request, "id")
    body = await read_json(request, GuestInvite)
    actor, session = await _ensure_host(request, session_id)
    async with request.app[database_key].session() as db:
        if body.user_id is not None:
            user = await accounts.get_user(db, body.user_id)
        elif body.username is not None:
            found = await accounts.find_user(db, body.username.strip())
            if found is None:
                raise NotFound("用户不存在 / No such user")
            user = found
        else:
            raise InvalidInput("请填写用户 / Name the user (user_id or username)")
    if user.disabled or user.id == actor.user_id:
        raise Forbidden("不能邀请该用户连线 / This user cannot be invited on camera",
                        reason="guest_not_allowed")
    _hub(request).invite_guest(session_id, user.id)
    await _notify_guest(request, user.id, session)
    return json_response({"user_id": user.id, "username": user.username, "page": _page(session_id)},
                         status=201)


@api.route("GET", "/api/sessions/{id}/guest", summary="Who is invited on camera (its host)",
           tag="sessions", auth=(Role.HOST, Role.ADMIN),
           responses={200: "{guest: null | {user_id, username, connected, on_air}}",
                      403: "Not your session", 404: "No such session"})
async def guest_status(request: web.Request) -> web.Response:
    session_id = path_int(request, "id")
    await _ensure_host(request, session_id)
    hub = request.app.get(media_hub_key)
    guest = hub.guest_info(session_id) if hub is not None else None
    if guest is not None:
        async with request.app[database_key].session() as db:
            guest["username"] = (await accounts.get_user(db, guest["user_id"])).username
    return json_response({"guest": guest})


@api.route("DELETE", "/api/sessions/{id}/guest",
           summary="End the guest's part (its host): the guest's publisher is cut at once",
           tag="sessions", auth=(Role.HOST, Role.ADMIN),
           responses={200: "{ended}: false when nobody was invited", 403: "Not your session",
                      404: "No such session"})
async def end_guest(request: web.Request) -> web.Response:
    session_id = path_int(request, "id")
    await _ensure_host(request, session_id)
    hub = request.app.get(media_hub_key)
    ended = hub.end_guest(session_id) if hub is not None else False
    return json_response({"ended": ended})


@api.route("POST", "/api/sessions/{id}/guest/whip",
           summary="The invited guest publishes a camera (WHIP offer in, answer out)",
           tag="sessions", auth=USER, request_content_type="application/sdp",
           response_content_type="application/sdp",
           responses={201: "SDP answer", 403: "Not the invited guest (not_invited)",
                      404: "No such session", 409: "The session is not live (not_live)",
                      413: "SDP offer too large", 415: "not application/sdp",
                      422: "no H.264/VP8 video"})
async def guest_publish(request: web.Request) -> web.Response:
    session_id = path_int(request, "id")
    actor = principal(request)
    offer = await read_offer(request)
    hub = _hub(request)
    if hub.guest_invites.get(session_id) != actor.user_id:
        async with request.app[database_key].session() as db:
            await live_sessions.get_session(db, session_id)  # 404 before 403
    _, answer = await hub.publish_guest(session_id, actor.user_id, offer)
    response = web.Response(status=201, text=answer, content_type="application/sdp")
    for link in public_ice_links(request.app[settings_key].stun_urls):
        response.headers.add("Link", link)
    return response
