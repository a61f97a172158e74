"""Notifications, 预约 (subscribing to a scheduled session), previews and interest tags."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from commerce import interest_tags, notifications, session_preview
from commerce.accounts import Principal, Role
from commerce.errors import InvalidInput
from server.api import (
    PUBLIC,
    USER,
    Api,
    Id,
    json_response,
    optional_principal,
    parse_id,
    path_int,
    principal,
    read_json,
)
from server.keys import database_key
from trust import uploads

api = Api()


class ReadBody(BaseModel):
    """Either `ids` (at most 200 of your own) or `all: true`."""

    ids: list[Id] | None = Field(default=None, max_length=notifications.READ_IDS_MAX)
    all: bool = False


class PreviewBody(BaseModel):
    title: str | None = Field(default=None, min_length=1, max_length=120)
    cover_upload_id: Id | None = None
    preview_text: str | None = Field(default=None, max_length=2000)
    scheduled_at: AwareDatetime | None = None
    product_ids: list[Id] | None = Field(default=None,
                                         max_length=session_preview.MAX_PREVIEW_PRODUCTS)


Tag = Annotated[str, Field(max_length=24)]


class TagsBody(BaseModel):
    tags: list[Tag] = Field(max_length=20)


def _query_int(request: web.Request, name: str, default: int | None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    value = parse_id(raw)
    if value is None:
        raise InvalidInput(f"{name} 必须是数字 / {name} must be a number", field=name)
    return value


@api.route("GET", "/api/notifications", summary="My notifications, newest first", tag="notices",
           auth=USER, query={"before": "the `next` of the previous page", "limit": "1..50, 20"},
           responses={200: "{items: [{id, kind, params, link, created_at, read_at}], next, unread}"})
async def list_notifications(request: web.Request) -> web.Response:
    who = principal(request)
    before = _query_int(request, "before", None)
    limit = _query_int(request, "limit", None)
    async with request.app[database_key].session() as db:
        rows, next_cursor = await notifications.list_for(db, who.user_id, before,
                                                         20 if limit is None else limit)
        unread = await notifications.unread_count(db, who.user_id)
    return json_response({"items": [n.public_dict() for n in rows], "next": next_cursor,
                          "unread": unread})


@api.route("POST", "/api/notifications/read", summary="Mark my notifications read (ids or all)",
           tag="notices", auth=USER, body=ReadBody, responses={200: "{updated, unread}"})
async def read_notifications(request: web.Request) -> web.Response:
    who = principal(request)
    body = await read_json(request, ReadBody)
    if body.ids is None and not body.all:
        raise InvalidInput("请给出 ids 或 all / Give ids or all: true", field="ids")
    async with request.app[database_key].session() as db:
        updated = await notifications.mark_read(db, who.user_id, None if body.all else body.ids)
    async with request.app[database_key].session() as db:
        unread = await notifications.unread_count(db, who.user_id)
    return json_response({"updated": updated, "unread": unread})


@api.route("POST", "/api/sessions/{id}/subscribe", summary="预约: tell me when this session goes live",
           tag="notices", auth=USER,
           responses={200: "{subscribed: true, subscribers}", 409: "invalid_state (not scheduled)"})
async def subscribe(request: web.Request) -> web.Response:
    session_id = path_int(request, "id")
    who = principal(request)
    async with request.app[database_key].session() as db:
        await notifications.subscribe(db, session_id, who.user_id)
    async with request.app[database_key].session() as db:
        count = await notifications.subscriber_count(db, session_id)
    return json_response({"subscribed": True, "subscribers": count})


@api.route("DELETE", "/api/sessions/{id}/subscribe", summary="Cancel my 预约", tag="notices",
           auth=USER, responses={200: "{subscribed: false, subscribers}"})
async def unsubscribe(request: web.Request) -> web.Response:
    session_id = path_int(request, "id")
    who = principal(request)
    async with request.app[database_key].session() as db:
        await notifications.unsubscribe(db, session_id, who.user_id)
    async with request.app[database_key].session() as db:
        count = await notifications.subscriber_count(db, session_id)
    return json_response({"subscribed": False, "subscribers": count})


@api.route("GET", "/api/sessions/{id}/preview", summary="A session's preview (直播预告)",
           tag="notices", auth=PUBLIC,
           responses={200: "The session with cover_url, products, subscribers, subscribed"})
async def get_preview(request: web.Request) -> web.Response:
    session_id = path_int(request, "id")
    async with request.app[database_key].session() as db:
        data = await session_preview.preview(db, session_id, optional_principal(request))
    return json_response(data)


@api.route("PUT", "/api/sessions/{id}/preview",
           summary="Set a session's preview: title, cover (an upload of purpose cover), text, time, "
                   "products to be shown (its host)",
           tag="notices", auth=(Role.HOST, Role.ADMIN), body=PreviewBody,
           responses={403: "Not your session or product", 404: "No such session, upload, product",
                      415: "unsupported_upload_type (the cover is no image)"})
async def put_preview(request: web.Request) -> web.Response:
    session_id = path_int(request, "id")
    body = await read_json(request, PreviewBody)
    who = principal(request)
    async with request.app[database_key].session() as db:
        cover = None
        if body.cover_upload_id is not None:
            await session_preview.editable_session(db, session_id, who)
            cover = await _claim_cover(db, who, body.cover_upload_id)
        await session_preview.set_preview(
            db, session_id, who, cover=cover, title=body.title, preview_text=body.preview_text,
            scheduled_at=body.scheduled_at, product_ids=body.product_ids)
    async with request.app[database_key].session() as db:
        data = await session_preview.preview(db, session_id, who)
    return json_response(data)


def _tags_reply(tags: list[str]) -> dict[str, object]:
    return {"tags": tags, "choices": list(interest_tags.TAGS), "max": interest_tags.MAX_TAGS}


@api.route("GET", "/api/me/tags", summary="My interest tags, and the ones to choose from",
           tag="notices", auth=USER, responses={200: "{tags, choices, max}"})
async def get_tags(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        tags = await interest_tags.tags_of(db, principal(request).user_id)
    return json_response(_tags_reply(tags))


@api.route("PUT", "/api/me/tags", summary="Set my interest tags (from the choices, at most 5)",
           tag="notices", auth=USER, body=TagsBody, responses={200: "{tags, choices, max}"})
async def put_tags(request: web.Request) -> web.Response:
    body = await read_json(request, TagsBody)
    async with request.app[database_key].session() as db:
        tags = await interest_tags.set_tags(db, principal(request).user_id, body.tags)
    return json_response(_tags_reply(tags))


async def _claim_cover(db: AsyncSession, who: Principal, upload_id: int) -> tuple[int, str]:
    """The upload checks (size, real type by magic bytes) ran when it was stored; a cover is an
    image of the caller's own, made public now that a preview shows it."""
    (cover,) = await uploads.claim_uploads(db, who, [upload_id], ("cover",), True)
    if cover.content_type not in session_preview.COVER_TYPES:
        raise uploads.UnsupportedUploadType("封面须是图片 / A cover must be an image",
                                            allowed=list(session_preview.COVER_TYPES))
    return cover.id, f"/api/uploads/{cover.name}"
