"""REST twins of the live room's actions: product pin (讲解中), Q&A list, moderation.

The socket events are primary (the consoles use them); these routes serve scripts, the replay
page and anyone without a socket. Same actions, same role checks (realtime/actions.py).
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from commerce import live_sessions
from commerce.accounts import Role
from realtime import questions
from realtime.actions import RoomActions
from server.api import (
    PUBLIC,
    Api,
    Id,
    json_response,
    optional_principal,
    path_int,
    principal,
    read_json,
)
from server.keys import database_key

api = Api()
STAFF = (Role.HOST, Role.ASSISTANT, Role.ADMIN)


# Set by server.realtime_component when the hub starts.
actions_key = web.AppKey("realtime_actions", RoomActions)


def _actions(request: web.Request) -> RoomActions:
    return request.app[actions_key]


class PinBody(BaseModel):
    product_id: Id


class SanctionBody(BaseModel):
    user_id: Id
    duration_s: int | None = Field(default=None, ge=1, le=30 * 24 * 3600)
    reason: str = Field(default="", max_length=200)


@api.route("POST", "/api/sessions/{id}/pin", summary="Pin the product being explained (its host)",
           tag="live", auth=(Role.HOST, Role.ADMIN), body=PinBody)
async def pin(request: web.Request) -> web.Response:
    body = await read_json(request, PinBody)
    result = await _actions(request).pin_product(path_int(request, "id"), principal(request),
                                                 body.product_id)
    return json_response(result)


@api.route("DELETE", "/api/sessions/{id}/pin", summary="Unpin the product (its host)", tag="live",
           auth=(Role.HOST, Role.ADMIN))
async def unpin(request: web.Request) -> web.Response:
    result = await _actions(request).pin_product(path_int(request, "id"), principal(request), None)
    return json_response(result)


@api.route("GET", "/api/sessions/{id}/questions",
           summary="Questions of a session: approved ones for anyone, all for its staff",
           tag="live", auth=PUBLIC)
async def list_questions(request: web.Request) -> web.Response:
    session_id = path_int(request, "id")
    who = optional_principal(request)
    async with request.app[database_key].session() as db:
        session = await live_sessions.get_session(db, session_id)
        staff = False
        if who is not None and who.is_staff:
            try:
                live_sessions.ensure_staff_of(session, who)
                staff = True
            except Exception:
                staff = False
        listed = await questions.for_session(db, session_id, public=not staff)
        return json_response([q.public_dict() for q in listed])


@api.route("GET", "/api/sessions/{id}/moderation",
           summary="Moderation state: slow mode, banned words, mutes, bans (staff)", tag="live",
           auth=STAFF)
async def moderation_state(request: web.Request) -> web.Response:
    session_id = path_int(request, "id")
    actions = _actions(request)
    await actions._staff(session_id, principal(request))
    return json_response(await actions.hub.moderation.status(session_id))


@api.route("POST", "/api/sessions/{id}/mutes", summary="Mute a user (timed or permanent; staff)",
           tag="live", auth=STAFF, body=SanctionBody, responses={201: "Muted"})
async def mute(request: web.Request) -> web.Response:
    body = await read_json(request, SanctionBody)
    result = await _actions(request).sanction(path_int(request, "id"), principal(request), "mute",
                                              body.model_dump(exclude_none=True))
    return json_response(result, status=201)


@api.route("POST", "/api/sessions/{id}/bans", summary="Ban a user from the room (staff)",
           tag="live", auth=STAFF, body=SanctionBody, responses={201: "Banned"})
async def ban(request: web.Request) -> web.Response:
    body = await read_json(request, SanctionBody)
    result = await _actions(request).sanction(path_int(request, "id"), principal(request), "ban",
                                              body.model_dump(exclude_none=True))
    return json_response(result, status=201)


@api.route("DELETE", "/api/sessions/{id}/mutes/{user_id}", summary="Lift a mute (staff)",
           tag="live", auth=STAFF)
async def unmute(request: web.Request) -> web.Response:
    result = await _actions(request).lift(path_int(request, "id"), principal(request), "mute",
                                          {"user_id": path_int(request, "user_id")})
    return json_response(result)


@api.route("DELETE", "/api/sessions/{id}/bans/{user_id}", summary="Lift a ban (staff)",
           tag="live", auth=STAFF)
async def unban(request: web.Request) -> web.Response:
    result = await _actions(request).lift(path_int(request, "id"), principal(request), "ban",
                                          {"user_id": path_int(request, "user_id")})
    return json_response(result)


@api.route("DELETE", "/api/sessions/{id}/comments/{seq}",
           summary="Delete a comment for everyone and from history (staff)", tag="live", auth=STAFF)
async def delete_comment(request: web.Request) -> web.Response:
    result = await _actions(request).delete_comment(path_int(request, "id"), principal(request),
                                                    {"seq": path_int(request, "seq")})
    return json_response(result)
