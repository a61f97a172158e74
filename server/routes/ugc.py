"""晒单 posts and campaigns, their moderation, trust points and the perks they buy."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import datetime

import av
from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from commerce.accounts import Role
from commerce.base import check_idempotency_key, utcnow
from commerce.catalog import get_product
from commerce.errors import DomainError, NotFound, RateLimited
from commerce.live_sessions import LiveSession, ensure_staff_of, get_session
from commerce.orders import Order
from media.probe import ProbeResult, probe
from realtime.questions import Question
from server.api import PUBLIC, Api, Id, json_response, path_int, principal, read_json
from server.keys import database_key, redis_key
from server.routes.trust import CHUNK, UPLOADS_PER_HOUR
from server.trust_keys import room_words_key, upload_storage_key
from trust import perks, points, trace, ugc, uploads
from trust.samples import Sample

api = Api()
HOSTS = (Role.HOST, Role.ADMIN)
DECIDERS = (Role.ASSISTANT, Role.ADMIN)
HELPFUL_POINTS = 5


class PostBody(BaseModel):
    order_id: Id | None = None
    sample_id: Id | None = None
    text: str = Field(min_length=1, max_length=ugc.MAX_TEXT)
    photos: list[Id] = Field(min_length=1, max_length=ugc.MAX_PHOTOS)
    campaign_id: Id | None = None
    video_id: Id | None = None


class CampaignBody(BaseModel):
    title: str = Field(min_length=1, max_length=80)
    hashtag: str = Field(min_length=1, max_length=ugc.MAX_HASHTAG + 2)
    starts_at: datetime
    ends_at: datetime
    reward_points: int = Field(default=ugc.DEFAULT_REWARD, ge=0, le=ugc.MAX_REWARD)
    reward_text: str = Field(default="", max_length=200)


class PerkBody(BaseModel):
    name: str = Field(min_length=1, max_length=80)
    cost: int = Field(ge=1, le=points.MAX_AWARD)
    stock: int = Field(ge=1, le=perks.MAX_STOCK)


async def _banned_words(request: web.Request, host_id: int) -> list[str]:
    """The words the batch's host banned in his newest live room: one list for all his rooms'
    neighbours' text, comments and 晒单 alike."""
    if room_words_key not in request.app:
        return []
    async with request.app[database_key].session() as db:
        room = (await db.execute(select(LiveSession.id).where(LiveSession.host_id == host_id)
                                 .order_by(LiveSession.id.desc()).limit(1))).scalar_one_or_none()
    if room is None:
        return []
    return await request.app[room_words_key](room)


class InvalidVideo(DomainError):
    code = "invalid_video"
    status = 415
    default_message = "视频无法读取 / The video could not be read"


def _probe_video(data: bytes) -> ProbeResult:
    """Read the container with the media prober (PyAV, as ffprobe would) from a temporary file."""
    with tempfile.NamedTemporaryFile(suffix=".mp4") as handle:
        handle.write(data)
        handle.flush()
        return probe(handle.name, timeout_s=10.0)


@api.route("POST", "/api/ugc/videos", summary="Upload a 晒单's short video: the MP4 bytes as the "
           "body (≤ 20 MB, ≤ 60 s, a video stream: checked by probing it); private until its post "
           "is approved", tag="ugc", request_content_type="video/mp4",
           responses={201: "Stored", 413: "upload_too_large",
                      415: "unsupported_upload_type | invalid_video"})
async def create_video(request: web.Request) -> web.Response:
    limit = ugc.MAX_VIDEO_BYTES
    if request.content_length is not None and request.content_length > limit:
        raise uploads.UploadTooLarge(max_bytes=limit)
    who = principal(request)
    # Videos count against the same hourly upload allowance as photos (server/routes/trust.py).
    key = f"uploads:rate:{who.user_id}:{int(utcnow().timestamp()) // 3600}"
    async with request.app[redis_key].pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, 3700)
        used = int((await pipe.execute())[0])
    if used > UPLOADS_PER_HOUR:
        raise RateLimited(limit=UPLOADS_PER_HOUR, retry_after=3600 - int(utcnow().timestamp()) % 3600)
    buf = bytearray()
    async for chunk in request.content.iter_chunked(CHUNK):
        buf += chunk
        if len(buf) > limit:
            raise uploads.UploadTooLarge(max_bytes=limit)
    data = bytes(buf)
    if not uploads.is_mp4(data[:16]):
        raise uploads.UnsupportedUploadType("只接受 MP4 视频 / Only MP4 video is accepted",
                                            allowed=["video/mp4"])
    try:
        found = await asyncio.to_thread(_probe_video, data)
    except (av.FFmpegError, OSError, ValueError, AssertionError):
        raise InvalidVideo() from None
    if found.video_codec is None or found.video_packets == 0:
        raise InvalidVideo("没有视频画面 / No video stream")
    if found.duration_s > ugc.MAX_VIDEO_S:
        raise InvalidVideo(f"视频最长 {ugc.MAX_VIDEO_S} 秒 / At most {ugc.MAX_VIDEO_S} seconds",
                           max_seconds=ugc.MAX_VIDEO_S)
    async with request.app[database_key].session() as db:
        video = await uploads.store_video(db, request.app[upload_storage_key], who, data, limit)
        body = {**video.public_dict(), "duration_s": round(found.duration_s, 1),
                "width": found.width, "height": found.height}
    return json_response(body, status=201)


# --- posts -----------------------------------------------------------------------------------

@api.route("POST", "/api/ugc/posts", summary="Write a 晒单 from your picked-up order or trial "
           "sample (photos from /api/uploads?purpose=ugc); waits for moderation", tag="ugc",
           body=PostBody, responses={201: "Created", 403: "not_your_order",
                                     409: "order_not_picked_up | already_posted | campaign_closed"})
async def create_post(request: web.Request) -> web.Response:
    body = await read_json(request, PostBody)
    who = principal(request)
    async with request.app[database_key].session() as db:
        host_id = await _host_of(db, body.order_id, body.sample_id)
    words = await _banned_words(request, host_id) if host_id is not None else []
    async with request.app[database_key].session() as db:
        post = await ugc.create_post(db, who, order_id=body.order_id, sample_id=body.sample_id,
                                     text=body.text, photo_ids=body.photos,
                                     campaign_id=body.campaign_id, banned_words=words,
                                     video_id=body.video_id)
        data = {"id": post.id, "status": post.status, "text": post.text,
                "filtered": post.filtered, "batch_id": post.batch_id}
    return json_response(data, status=201)


async def _host_of(db: AsyncSession, order_id: int | None, sample_id: int | None) -> int | None:
    if order_id is not None:
        order = await db.get(Order, order_id)
        if order is None:
            return None
        return (await get_session(db, order.session_id)).host_id
    if sample_id is not None:
        sample = await db.get(Sample, sample_id)
        return sample.sent_by if sample is not None else None
    return None


@api.route("GET", "/api/ugc/queue", summary="晒单 to moderate (assistants)", tag="ugc",
           auth=DECIDERS, query={"status": "pending (default) | approved | hidden"})
async def queue(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        items = await ugc.queue(db, principal(request), request.query.get("status", "pending"))
    return json_response({"items": items, "next": None})


@api.route("POST", "/api/ugc/posts/{id}/approve", summary="Approve a 晒单: shown in the batch's "
           "archive, points earned once", tag="ugc", auth=DECIDERS,
           responses={409: "invalid_state (already approved)"})
async def approve(request: web.Request) -> web.Response:
    post_id = path_int(request, "id")
    async with request.app[database_key].session() as db:
        post = await ugc.decide(db, principal(request), post_id, approve=True)
        data = {"id": post.id, "status": post.status}
    return json_response(data)


@api.route("POST", "/api/ugc/posts/{id}/hide", summary="Hide a 晒单 (its points are taken back)",
           tag="ugc", auth=DECIDERS, responses={409: "invalid_state (already hidden)"})
async def hide(request: web.Request) -> web.Response:
    post_id = path_int(request, "id")
    async with request.app[database_key].session() as db:
        post = await ugc.decide(db, principal(request), post_id, approve=False)
        data = {"id": post.id, "status": post.status}
    return json_response(data)


@api.route("GET", "/api/batches/{code}/ugc", summary="Approved 晒单 of a batch (its trust "
           "archive)", tag="ugc", auth=PUBLIC)
async def batch_posts(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        batch = await trace.batch_by_code(db, request.match_info["code"])
        items = await ugc.approved(db, batch_id=batch.id)
    return json_response({"items": items, "next": None})


@api.route("GET", "/api/products/{id}/ugc", summary="Approved 晒单 of a product (the live "
           "room's trust sheet)", tag="ugc", auth=PUBLIC)
async def product_posts(request: web.Request) -> web.Response:
    product_id = path_int(request, "id")
    async with request.app[database_key].session() as db:
        product = await get_product(db, product_id)
        items = await ugc.approved(db, product_id=product.id)
    return json_response({"items": items, "next": None})


# --- campaigns -------------------------------------------------------------------------------

@api.route("POST", "/api/ugc/campaigns", summary="Start a 晒单 campaign with a hashtag, dates "
           "and a reward (hosts)", tag="ugc", auth=HOSTS, body=CampaignBody,
           responses={201: "Created"})
async def create_campaign(request: web.Request) -> web.Response:
    body = await read_json(request, CampaignBody)
    async with request.app[database_key].session() as db:
        campaign = await ugc.create_campaign(db, principal(request), body.title, body.hashtag,
                                             body.starts_at, body.ends_at, body.reward_points,
                                             body.reward_text)
        data = campaign.public_dict()
    return json_response(data, status=201)


@api.route("GET", "/api/ugc/campaigns", summary="Campaigns (of a host)", tag="ugc", auth=PUBLIC,
           query={"host_id": "a host"})
async def list_campaigns(request: web.Request) -> web.Response:
    raw = request.query.get("host_id")
    host_id = int(raw) if raw and raw.isascii() and raw.isdigit() and len(raw) < 10 else None
    async with request.app[database_key].session() as db:
        items = [c.public_dict() for c in await ugc.campaigns(db, host_id)]
    return json_response({"items": items, "next": None})


# --- points ----------------------------------------------------------------------------------

@api.route("GET", "/api/points/me", summary="The caller's trust points: balance, title, "
           "next expiry, recent rows", tag="points")
async def my_points(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        await points.expire_due(db, principal(request).user_id)
        data = await points.summary(db, principal(request).user_id)
    return json_response(data)


@api.route("GET", "/api/points/perks", summary="Perks and gifts to redeem", tag="points",
           auth=PUBLIC)
async def list_perks(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        items = [p.public_dict() for p in await perks.listing(db)]
    return json_response({"items": items, "next": None})


@api.route("POST", "/api/points/perks", summary="Offer a perk for points (hosts)", tag="points",
           auth=HOSTS, body=PerkBody, responses={201: "Created"})
async def create_perk(request: web.Request) -> web.Response:
    body = await read_json(request, PerkBody)
    async with request.app[database_key].session() as db:
        perk = await perks.create(db, principal(request), body.name, body.cost, body.stock)
        data = perk.public_dict()
    return json_response(data, status=201)


@api.route("POST", "/api/points/perks/{id}/redeem", summary="Redeem a perk (Idempotency-Key "
           "required: a retry is answered, not repeated)", tag="points",
           responses={409: "not_enough_points | perk_gone"})
async def redeem(request: web.Request) -> web.Response:
    perk_id = path_int(request, "id")
    key = request.headers.get("Idempotency-Key", "")
    check_idempotency_key(key)
    who = principal(request)
    async with request.app[database_key].session() as db:
        done = await perks.redeem(db, who, perk_id, key)
    async with request.app[database_key].session() as db:
        balance = (await points.summary(db, who.user_id))["balance"]
    return json_response({"perk_id": perk_id, "redeemed": True, "repeated": not done,
                          "balance": balance})


@api.route("POST", "/api/questions/{id}/helpful", summary="Mark a neighbour's question helpful: "
           "its asker earns points once (the session's staff)", tag="points",
           auth=(Role.HOST, Role.ASSISTANT, Role.ADMIN))
async def helpful(request: web.Request) -> web.Response:
    question_id = path_int(request, "id")
    who = principal(request)
    async with request.app[database_key].session() as db:
        question = await db.get(Question, question_id)
        if question is None:
            raise NotFound("问题不存在 / No such question")
        ensure_staff_of(await get_session(db, question.session_id), who)
        awarded = await points.award(db, question.user_id, f"answer:{question_id}",
                                     HELPFUL_POINTS, "有用的提问 / helpful question")
    return json_response({"question_id": question_id, "awarded": awarded})
