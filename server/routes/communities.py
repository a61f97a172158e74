"""The communities a host (an admin, a 团长) serves: their 团长, members' tags, and notices.

Who may do what is decided per community in commerce/accounts.py: its owner (the host who
created it, or an admin) appoints and dismisses its 团长; its owner or a 团长 works its members
and sends its members a notice.
"""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, Field

from commerce import accounts, community_notices, members
from commerce.accounts import Role
from commerce.event_payloads import CommunityNoticeSent
from commerce.events import DomainEvent
from commerce.interest_tags import MAX_TAGS, TAGS
from server.api import USER, Api, json_response, path_int, principal, read_json
from server.keys import database_key, events_key

api = Api()
OWNERS = (Role.HOST, Role.ADMIN)

Tag = Annotated[str, Field(max_length=24)]


class TagsBody(BaseModel):
    tags: list[Tag] = Field(max_length=20)


class NoticeBody(BaseModel):
    # Whitespace is folded before the limit is applied (commerce/community_notices.py).
    text: str = Field(min_length=1, max_length=4 * community_notices.MAX_CHARS)
    tag: Tag | None = None


@api.route("GET", "/api/me/communities", summary="The communities I serve: all for an admin, a "
           "host's own, and those I am 团长 of (role owner | leader)", tag="accounts", auth=USER,
           responses={200: "[{id, name, join_policy, created_by, role}]"})
async def my_communities(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        served = await accounts.served_communities(db, principal(request))
    return json_response([{**c.public_dict(), "role": "owner" if owns else "leader"}
                          for c, owns in served])


@api.route("GET", "/api/communities/{id}/leaders", summary="A community's 团长 (its managers)",
           tag="accounts", auth=USER, responses={403: "Not your community"})
async def list_leaders(request: web.Request) -> web.Response:
    community_id = path_int(request, "id")
    async with request.app[database_key].session() as db:
        await accounts.worked_community(db, community_id, principal(request))
        items = await accounts.leaders_of(db, community_id)
    return json_response({"items": items})


@api.route("PUT", "/api/communities/{id}/leaders/{user_id}", summary="Appoint a user 团长 of "
           "this community, once (its host, or an admin)", tag="accounts", auth=OWNERS,
           responses={403: "Not your community", 404: "No such community or user"})
async def appoint_leader(request: web.Request) -> web.Response:
    community_id, user_id = path_int(request, "id"), path_int(request, "user_id")
    async with request.app[database_key].session() as db:
        await accounts.appoint_leader(db, community_id, user_id, principal(request))
    return json_response({"community_id": community_id, "user_id": user_id, "leader": True})


@api.route("DELETE", "/api/communities/{id}/leaders/{user_id}", summary="Dismiss a 团长 (its "
           "host, or an admin)", tag="accounts", auth=OWNERS,
           responses={403: "Not your community", 404: "Not a 团长 here"})
async def dismiss_leader(request: web.Request) -> web.Response:
    community_id, user_id = path_int(request, "id"), path_int(request, "user_id")
    async with request.app[database_key].session() as db:
        gone = await accounts.dismiss_leader(db, community_id, user_id, principal(request))
    return json_response({"community_id": community_id, "user_id": user_id, "leader": False,
                          "dismissed": gone})


@api.route("PUT", "/api/communities/{id}/members/{user_id}/tags", summary="Set a member's "
           f"interest tags (at most {MAX_TAGS} of the choices; the community's managers)",
           tag="accounts", auth=USER, body=TagsBody,
           responses={200: "{tags, choices}", 403: "Not your community", 404: "Not a member"})
async def tag_member(request: web.Request) -> web.Response:
    community_id, user_id = path_int(request, "id"), path_int(request, "user_id")
    body = await read_json(request, TagsBody)
    async with request.app[database_key].session() as db:
        tags = await members.tag_member(db, community_id, user_id, principal(request), body.tags)
    return json_response({"user_id": user_id, "tags": tags, "choices": list(TAGS)})


@api.route("POST", "/api/communities/{id}/notices", summary="Send the community's members "
           "(those with `tag`, when given) a short notice: in-app, and by WeChat when "
           f"configured; once per Idempotency-Key, at most {community_notices.PER_DAY} a day "
           "(its managers)", tag="notices", auth=USER, body=NoticeBody,
           responses={201: "Sent: {notice, replayed: false}", 200: "The key's earlier notice",
                      403: "Not your community", 429: "rate_limited"})
async def send_notice(request: web.Request) -> web.Response:
    community_id = path_int(request, "id")
    body = await read_json(request, NoticeBody)
    key = request.headers.get("Idempotency-Key")
    who = principal(request)
    async with request.app[database_key].session() as db:
        sent = await community_notices.send(db, community_id, who, body.text, body.tag, key)
        shown = sent.notice.public_dict()
    if not sent.replayed:
        await request.app[events_key].publish(DomainEvent("community_notice", None,
                                                          CommunityNoticeSent(
            notice_id=sent.notice.id, community_id=community_id, sender_id=who.user_id,
            tag=sent.notice.tag, recipients=sent.notice.recipients)))
    return json_response({"notice": shown, "replayed": sent.replayed},
                         status=200 if sent.replayed else 201)


@api.route("GET", "/api/communities/{id}/notices", summary="The notices sent to this community's "
           f"members, newest first (at most {community_notices.LIST_MAX}; its managers)",
           tag="notices", auth=USER, responses={403: "Not your community"})
async def list_notices(request: web.Request) -> web.Response:
    community_id = path_int(request, "id")
    async with request.app[database_key].session() as db:
        rows = await community_notices.recent_notices(db, community_id, principal(request))
        items = [n.public_dict() for n in rows]
    return json_response({"items": items})
