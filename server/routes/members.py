"""A community's join requests (list, approve, reject) and members (search, remove), for the
community's managers: its host, an admin, or its 团长."""

from __future__ import annotations

from aiohttp import web

from commerce import members
from commerce.errors import InvalidInput
from server.api import USER, Api, json_response, parse_id, path_int, principal
from server.commerce_keys import checkout_key
from server.keys import database_key

api = Api()
MANAGERS = USER  # any account: its host, an admin or its 团长 (checked per community)
PAGE_QUERY = {"cursor": "the `next` of the previous page", "limit": f"1–{members.MAX_PAGE}"}


def _page(request: web.Request) -> tuple[int | None, int]:
    raw_cursor, raw_limit = request.query.get("cursor", ""), request.query.get("limit", "")
    cursor = parse_id(raw_cursor) if raw_cursor else None
    limit = parse_id(raw_limit) if raw_limit else members.MAX_PAGE
    if (raw_cursor and cursor is None) or limit is None or not 1 <= limit <= members.MAX_PAGE:
        raise InvalidInput("cursor 或 limit 无效 / Invalid cursor or limit", field="cursor")
    return cursor, limit


async def _list(request: web.Request, status: str, query: str = "") -> web.Response:
    community_id = path_int(request, "id")
    cursor, limit = _page(request)
    async with request.app[database_key].session() as db:
        await members.managed(db, community_id, principal(request))
        items, after = await members.listing(db, community_id, status, query, cursor, limit)
    return json_response({"items": items, "next": str(after) if after is not None else None})


@api.route("GET", "/api/communities/{id}/join-requests", summary="Pending join requests, oldest "
           "first (the community's manager)", tag="accounts", auth=MANAGERS, query=PAGE_QUERY,
           responses={403: "Not your community"})
async def join_requests(request: web.Request) -> web.Response:
    return await _list(request, members.PENDING)


@api.route("GET", "/api/communities/{id}/members", summary="Approved members, searched by name "
           "(the community's manager)", tag="accounts", auth=MANAGERS,
           query={"q": f"part of the username or display name (≤{members.MAX_QUERY})", **PAGE_QUERY},
           responses={403: "Not your community"})
async def list_members(request: web.Request) -> web.Response:
    query = request.query.get("q", "").strip()
    if len(query) > members.MAX_QUERY:
        raise InvalidInput(f"最多 {members.MAX_QUERY} 字 / At most {members.MAX_QUERY} characters",
                           field="q")
    return await _list(request, members.APPROVED, query)


async def _decide(request: web.Request, approve: bool) -> web.Response:
    community_id, user_id = path_int(request, "id"), path_int(request, "user_id")
    async with request.app[database_key].session() as db:
        status = await members.decide(db, community_id, user_id, principal(request), approve)
    checkout = request.app.get(checkout_key)
    if approve and checkout is not None:
        # The community price of a sale already open holds from this moment, not from a retry.
        await members.resync_open_sales(checkout, community_id, user_id)
    return json_response({"community_id": community_id, "user_id": user_id, "status": status})


@api.route("POST", "/api/communities/{id}/join-requests/{user_id}/approve",
           summary="Approve a pending request, once (the community's manager)", tag="accounts",
           auth=MANAGERS, responses={403: "Not your community", 409: "Already decided"})
async def approve(request: web.Request) -> web.Response:
    return await _decide(request, True)


@api.route("POST", "/api/communities/{id}/join-requests/{user_id}/reject",
           summary="Reject a pending request, once (the community's manager)", tag="accounts",
           auth=MANAGERS, responses={403: "Not your community", 409: "Already decided"})
async def reject(request: web.Request) -> web.Response:
    return await _decide(request, False)


@api.route("DELETE", "/api/communities/{id}/members/{user_id}",
           summary="Remove a member (the community's manager)", tag="accounts", auth=MANAGERS,
           responses={403: "Not your community", 404: "Not a member"})
async def remove_member(request: web.Request) -> web.Response:
    community_id, user_id = path_int(request, "id"), path_int(request, "user_id")
    async with request.app[database_key].session() as db:
        await members.remove(db, community_id, user_id, principal(request))
    checkout = request.app.get(checkout_key)
    if checkout is not None:
        await members.resync_open_sales(checkout, community_id, user_id)
    return json_response({"community_id": community_id, "user_id": user_id, "removed": True})
