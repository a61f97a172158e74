"""Live sessions: schedule, read, list, end."""

from __future__ import annotations

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, Field

from commerce import live_sessions
from commerce.accounts import Role
from commerce.errors import InvalidInput
from commerce.event_payloads import SessionEnded
from commerce.events import DomainEvent
from commerce.flash_sale import lifecycle
from media.keys import media_hub_key
from server.api import (
    PUBLIC,
    Api,
    json_response,
    optional_principal,
    parse_id,
    path_int,
    principal,
    read_json,
)
from server.commerce_keys import checkout_key
from server.keys import database_key, events_key

api = Api()


class SessionCreate(BaseModel):
    title: str = Field(min_length=1, max_length=120)
    farm: str = Field(default="", max_length=120)
    origin: str = Field(default="", max_length=200)
    preview_text: str = Field(default="", max_length=2000)
    # With its offset: "20:00" alone would mean 20:00 UTC to the server, 04:00 in Shanghai.
    scheduled_at: AwareDatetime | None = None


class StreamKeyRotate(BaseModel):
    # Also stop a publisher already live with the old key (it may publish again with the new
    # key within the reconnect grace).
    disconnect: bool = False


def _with_key(session: live_sessions.LiveSession) -> dict[str, object]:
    data = session.public_dict()
    data["stream_key"] = session.stream_key
    return data


@api.route("POST", "/api/sessions", summary="Schedule a live session (host)", tag="sessions",
           auth=(Role.HOST, Role.ADMIN), body=SessionCreate,
           responses={201: "Created: {id, stream_key, status}"})
async def create_session(request: web.Request) -> web.Response:
    body = await read_json(request, SessionCreate)
    async with request.app[database_key].session() as db:
        session = await live_sessions.create_session(
            db, principal(request), body.title, body.farm, body.origin, body.preview_text,
            body.scheduled_at,
        )
    return json_response(_with_key(session), status=201)


@api.route("GET", "/api/sessions", summary="List live sessions", tag="sessions", auth=PUBLIC,
           query={"status": "scheduled | live | ended",
                  "host_id": "only this host's sessions (a host's back office lists his own)"})
async def list_sessions(request: web.Request) -> web.Response:
    status = request.query.get("status")
    if status is not None and status not in {s.value for s in live_sessions.SessionStatus}:
        status = None
    host_id = None
    if "host_id" in request.query:
        host_id = parse_id(request.query["host_id"])
        if host_id is None:
            raise InvalidInput("host_id 无效 / Invalid host_id", field="host_id")
    async with request.app[database_key].session() as db:
        sessions = await live_sessions.list_sessions(db, status, host_id=host_id)
    return json_response([s.public_dict() for s in sessions])


@api.route("GET", "/api/sessions/{id}", summary="One live session (stream key for its host)",
           tag="sessions", auth=PUBLIC,
           responses={200: "The session; for its host (or an admin) also stream_key and "
                           "publisher: null or {kind: whip | rtmp | demo, since}"})
async def get_session(request: web.Request) -> web.Response:
    session_id = path_int(request, "id")
    who = optional_principal(request)
    async with request.app[database_key].session() as db:
        session = await live_sessions.get_session(db, session_id)
    if not live_sessions.may_see_stream_key(session, who):
        return json_response(session.public_dict())
    data = _with_key(session)
    hub = request.app.get(media_hub_key)
    data["publisher"] = hub.publisher_info(session_id) if hub is not None else None
    return json_response(data)


@api.route("POST", "/api/sessions/{id}/stream-key",
           summary="A new stream key (its host); the old one stops at once", tag="sessions",
           auth=(Role.HOST, Role.ADMIN), body=StreamKeyRotate,
           responses={200: "{stream_key, disconnected}: disconnected is true when a live "
                           "publisher was stopped ({\"disconnect\": true})",
                      403: "Not your session", 404: "No such session"})
async def rotate_stream_key(request: web.Request) -> web.Response:
    session_id = path_int(request, "id")
    body = (await read_json(request, StreamKeyRotate) if request.can_read_body
            else StreamKeyRotate())
    hub = request.app.get(media_hub_key)
    async with request.app[database_key].session() as db:
        key = await live_sessions.rotate_stream_key(db, session_id, principal(request))
    disconnected = False
    if hub is not None and body.disconnect:
        disconnected = await hub.kick(session_id, "stream key rotated")
    return json_response({"stream_key": key, "disconnected": disconnected})


@api.route("POST", "/api/sessions/{id}/end", summary="End a live session (its host); its sales "
           "close (holds already made keep their payment window)",
           tag="sessions", auth=(Role.HOST, Role.ADMIN))
async def end_session(request: web.Request) -> web.Response:
    session_id = path_int(request, "id")
    checkout = request.app.get(checkout_key)
    if checkout is not None:
        session = await lifecycle.end_session_and_sales(checkout, session_id, principal(request))
    else:
        async with request.app[database_key].session() as db:
            session = await live_sessions.end_session(db, session_id, principal(request))
    await request.app[events_key].publish(
        DomainEvent("session_ended", session_id, SessionEnded(ended_at=session.ended_at))
    )
    return json_response(session.public_dict())
