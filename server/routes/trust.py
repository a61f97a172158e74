"""Trust evidence over HTTP: uploads, QC reports, trace events, the public trace, verify, QR codes."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from commerce.accounts import Role
from commerce.base import utcnow
from commerce.catalog import Product
from commerce.errors import InvalidInput, RateLimited
from server import qr_images
from server.api import PUBLIC, Api, Id, json_response, optional_principal, principal, read_json
from server.bounded_responses import BoundedResponse
from server.keys import database_key, redis_key, settings_key
from server.trust_keys import trace_signer_key, upload_storage_key
from trust import claims, qc, trace, uploads
from trust.evidence import units_sold_by_product
from trust.trace_signing import iso
from trust.trace_verify import verify_batch

api = Api()
HOSTS = (Role.HOST, Role.ADMIN)
CHUNK = 64 * 1024
UPLOADS_PER_HOUR = 60


class MeasurementBody(BaseModel):
    kind: qc.MeasurementKind
    value: float | None = Field(default=None, allow_inf_nan=False)
    passed: bool | None = None
    name: str = Field(default="", max_length=80)
    unit: str = Field(default="", max_length=16)


class QcReportBody(BaseModel):
    tester: str = Field(min_length=1, max_length=80)
    lab: str = Field(default="", max_length=120)
    tested_at: datetime
    conclusion: Literal["pass", "fail"] | None = None
    summary: str = Field(default="", max_length=1000)
    measurements: list[MeasurementBody] = Field(min_length=1, max_length=qc.MAX_MEASUREMENTS)
    attachments: list[Id] = Field(default_factory=list, max_length=qc.MAX_ATTACHMENTS)


class TraceEventBody(BaseModel):
    kind: Literal["harvested", "packed", "cold_chain", "shipped", "arrived_at_pickup", "picked_up"]
    occurred_at: datetime | None = None
    location: str = Field(default="", max_length=200)
    note: str = Field(default="", max_length=500)
    temperature_c: float | None = Field(default=None, ge=-60, le=60, allow_inf_nan=False)
    humidity_pct: float | None = Field(default=None, ge=0, le=100, allow_inf_nan=False)
    carrier: str = Field(default="", max_length=80)
    tracking_no: str = Field(default="", max_length=80)
    quantity: int | None = Field(default=None, ge=0, le=10_000_000)
    photos: list[Id] = Field(default_factory=list, max_length=6)

    def data(self) -> dict[str, Any]:
        raw: dict[str, Any] = {
            "temperature_c": self.temperature_c, "humidity_pct": self.humidity_pct,
            "carrier": self.carrier, "tracking_no": self.tracking_no, "quantity": self.quantity,
        }
        return {k: v for k, v in raw.items() if v not in (None, "")}


# --- uploads ---------------------------------------------------------------------------------

@api.route("POST", "/api/uploads", summary="Upload a photo or PDF (JPEG/PNG/WebP/PDF, checked by "
           "content); multipart field `file`, or the raw bytes as the body", tag="trust",
           request_content_type="multipart/form-data",
           query={"purpose": "qc | review | claim | batch | cover | product"},
           responses={201: "Stored", 413: "upload_too_large", 415: "unsupported_upload_type"})
async def create_upload(request: web.Request) -> web.Response:
    settings = request.app[settings_key]
    limit = settings.max_upload_bytes
    # Refuse early on a declared size; the streamed count below catches liars and chunked bodies.
    if request.content_length is not None and request.content_length > limit + 64 * 1024:
        raise uploads.UploadTooLarge(max_bytes=limit)
    who = principal(request)
    # Uploads cost disk: each user gets UPLOADS_PER_HOUR, counted in Redis (shared by workers).
    # INCR decides (atomic: uploads sent at once cannot all see room); the TTL is set in the
    # same transaction, so a worker dying in between leaves no counter that never expires.
    key = f"uploads:rate:{who.user_id}:{int(utcnow().timestamp()) // 3600}"
    async with request.app[redis_key].pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, 3700)
        used = int((await pipe.execute())[0])
    if used > UPLOADS_PER_HOUR:
        raise RateLimited(limit=UPLOADS_PER_HOUR, retry_after=3600 - int(utcnow().timestamp()) % 3600)
    data = await _read_upload_body(request, limit)
    purpose = request.query.get("purpose", "qc")
    async with request.app[database_key].session() as db:
        upload = await uploads.store_upload(
            db, request.app[upload_storage_key], who, purpose, data, limit
        )
    return json_response(upload.public_dict(), status=201)


async def _read_upload_body(request: web.Request, limit: int) -> bytes:
    buf = bytearray()
    if request.content_type.startswith("multipart/"):
        try:
            return await _read_multipart_file(request, limit)
        except (HttpProcessingError, ValueError):
            # aiohttp's parser refuses a malformed body (part headers, boundary): the client's
            # fault, not a server error.
            raise InvalidInput("multipart 格式错误 / Malformed multipart body", field="file") from None
    async for chunk in request.content.iter_chunked(CHUNK):
        buf += chunk
        if len(buf) > limit:
            raise uploads.UploadTooLarge(max_bytes=limit)
    return bytes(buf)


async def _read_multipart_file(request: web.Request, limit: int) -> bytes:
    buf = bytearray()
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            raise InvalidInput("缺少文件字段 file / Missing multipart field `file`", field="file")
        if isinstance(part, BodyPartReader) and part.name == "file":
            while chunk := await part.read_chunk(CHUNK):
                buf += chunk
                if len(buf) > limit:
                    raise uploads.UploadTooLarge(max_bytes=limit)
            return bytes(buf)


@api.route("GET", "/api/uploads/{name}", summary="An uploaded file: public evidence for anyone; a "
           "claim photo for the claim's buyer, the session's host, assistants and admins",
           tag="trust", auth=PUBLIC, response_content_type="application/octet-stream",
           responses={401: "unauthorized (a private file, no token)", 403: "forbidden",
                      404: "not_found"})
async def get_upload(request: web.Request) -> web.StreamResponse:
    # A private file needs the bearer header, like every other private read. A page shows one by
    # fetch() with Authorization and a blob: URL (img-src allows blob:), as the dashboard does its
    # charts. No signed link in the query: a claim photo is personal data, and a URL is copied,
    # forwarded, kept in history and proxy logs, and outlives the reason it was handed out.
    async with request.app[database_key].session() as db:
        upload = await uploads.find_upload(db, request.match_info["name"])
        await claims.ensure_can_read_upload(db, upload, optional_principal(request))
    body = await request.app[upload_storage_key].get(upload.name)
    disposition = "attachment" if upload.content_type == "application/pdf" else "inline"
    # Up to max_upload_bytes held per reader: a reader that stops reading is cut at the deadline.
    deadline = request.app[settings_key].media_send_timeout_s
    return BoundedResponse(deadline, body=body, content_type=upload.content_type, headers={
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Content-Disposition": f'{disposition}; filename="{upload.name}"',
        "Cache-Control": "public, max-age=86400, immutable" if upload.public else "private, no-store",
    })


# --- QC reports and trace events -------------------------------------------------------------

@api.route("POST", "/api/batches/{code}/qc-reports", summary="File a QC report for a batch "
           "(committed into its trace chain)", tag="trust", auth=HOSTS, body=QcReportBody,
           responses={201: "Filed"})
async def create_qc_report(request: web.Request) -> web.Response:
    body = await read_json(request, QcReportBody)
    who = principal(request)
    async with request.app[database_key].session() as db:
        batch = await trace.batch_by_code(db, request.match_info["code"])
        report = await qc.create_report(
            db, request.app[trace_signer_key], batch, who, body.tester, body.tested_at,
            [qc.MeasurementIn(m.kind, m.value, m.passed, m.name, m.unit) for m in body.measurements],
            body.attachments, lab=body.lab, summary=body.summary, conclusion=body.conclusion,
        )
        data = await qc.report_dict(db, report)
    return json_response(data, status=201)


@api.route("GET", "/api/batches/{code}/qc-reports", summary="A batch's QC reports", tag="trust",
           auth=PUBLIC)
async def list_qc_reports(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        batch = await trace.batch_by_code(db, request.match_info["code"])
        data = [await qc.report_dict(db, r) for r in await qc.reports_for(db, batch.id)]
    return json_response(data)


@api.route("POST", "/api/batches/{code}/trace-events", summary="Append a trace event (the batch's "
           "host); 'tested' comes from filing a QC report", tag="trust", auth=HOSTS,
           body=TraceEventBody, responses={201: "Appended"})
async def create_trace_event(request: web.Request) -> web.Response:
    body = await read_json(request, TraceEventBody)
    who = principal(request)
    async with request.app[database_key].session() as db:
        batch = await trace.batch_by_code(db, request.match_info["code"])
        trace.ensure_batch_staff(batch, who)
        if body.kind == "cold_chain" and body.temperature_c is None:
            raise InvalidInput("冷链记录需要温度 / A cold-chain reading needs temperature_c",
                               field="temperature_c")
        data = body.data()
        if body.photos:
            photos = await uploads.claim_uploads(db, who, body.photos, ("batch", "qc"), True)
            data["photos"] = {str(p.id): p.sha256 for p in photos}
        event = await trace.append_event(
            db, request.app[trace_signer_key], batch, who, trace.EventKind(body.kind),
            occurred_at=body.occurred_at, location=body.location, note=body.note, data=data,
        )
    return json_response(event.public_dict(), status=201)


@api.route("GET", "/api/batches/{code}/summary", summary="Batch + newest QC in a few fields (what a "
           "pinned product card shows)", tag="trust", auth=PUBLIC)
async def batch_summary(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        batch = await trace.batch_by_code(db, request.match_info["code"])
        data = await qc.batch_summary(db, batch.id)
    return json_response(data)


# --- the public trace ------------------------------------------------------------------------

@api.route("GET", "/api/trace/{batch_code}", summary="Public trace of a batch: origin, journey, QC "
           "reports, products sold from it (counted as a look-up)", tag="trust", auth=PUBLIC,
           responses={404: "batch_not_found"})
async def get_trace(request: web.Request) -> web.Response:
    who = optional_principal(request)
    async with request.app[database_key].session() as db:
        batch = await trace.batch_by_code(db, request.match_info["batch_code"])
        events = await trace.events_for(db, batch.id)
        head = await trace.head_for(db, batch.id)
        reports = [await qc.report_dict(db, r) for r in await qc.reports_for(db, batch.id)]
        products = await _products_of(db, batch.id)
        if await _first_lookup_today(request, batch.id, who.user_id if who else None):
            await trace.count_lookup(db, batch.id, who.user_id if who else None)
        lookups = await trace.lookup_total(db, batch.id)
    code = batch.code
    return json_response({
        "batch": batch.public_dict(),
        "journey": [e.public_dict() for e in events],
        "qc_reports": reports,
        "products": products,
        "head": None if head is None else {"seq": head.seq, "hash": head.hash,
                                           "signature": head.signature, "key_id": head.key_id,
                                           "signed_at": iso(head.signed_at)},
        "lookups": lookups,
        "links": {"verify": f"/api/trace/{code}/verify", "qr_svg": f"/api/batches/{code}/qr.svg",
                  "reviews": f"/api/batches/{code}/reviews", "page": f"/trace/{code}",
                  "signing_key": "/api/trace-signing-key"},
    })


async def _first_lookup_today(request: web.Request, batch_id: int, user_id: int | None) -> bool:
    """Count one look-up per visitor (user, else client address) per batch per day, so reloads or
    a script hammering the public page cannot inflate the trace look-up figures."""
    who = f"u{user_id}" if user_id is not None else f"ip{request.remote or '-'}"
    digest = hashlib.sha256(f"{batch_id}:{who}".encode()).hexdigest()[:24]
    key = f"trace:seen:{utcnow().date().isoformat()}:{digest}"
    return bool(await request.app[redis_key].set(key, b"1", nx=True, ex=26 * 3600))


async def _products_of(db: AsyncSession, batch_id: int) -> list[dict[str, Any]]:
    rows = await db.execute(select(Product).where(Product.batch_id == batch_id).order_by(Product.id))
    products = list(rows.scalars())
    sold = await units_sold_by_product(db, [p.id for p in products])
    return [{**p.public_dict(), "units_sold": sold.get(p.id, 0)} for p in products]


@api.route("GET", "/api/trace/{batch_code}/verify", summary="Re-check the batch's hash chain, QC "
           "commitments and head signature; names the first tampered record", tag="trust",
           auth=PUBLIC, responses={404: "batch_not_found"})
async def verify_trace(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        batch = await trace.batch_by_code(db, request.match_info["batch_code"])
        result = await verify_batch(db, request.app[trace_signer_key], batch,
                                    request.app[upload_storage_key])
    return json_response(result.as_dict())


@api.route("GET", "/api/trace-signing-key", summary="Public key that signs trace heads (Ed25519)",
           tag="trust", auth=PUBLIC)
async def signing_key(request: web.Request) -> web.Response:
    return json_response(request.app[trace_signer_key].public_dict())


# --- QR codes --------------------------------------------------------------------------------

async def _qr(request: web.Request, kind: str) -> web.Response:
    async with request.app[database_key].session() as db:
        batch = await trace.batch_by_code(db, request.match_info["code"])
    url = f"{request.app[settings_key].base_url}/trace/{batch.code}"
    if kind == "svg":
        body = qr_images.qr_svg(url, title=f"溯源 Trace {batch.code}")
    else:
        body = qr_images.qr_png(url, scale=_scale(request))
    response = qr_images.qr_response(body, kind)
    response.headers["X-Trace-Url"] = url
    return response


def _scale(request: web.Request) -> int:
    raw = request.query.get("scale", "8")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 40:
        raise InvalidInput("scale 须为 1–40 / scale must be 1–40", field="scale")
    return int(raw)


@api.route("GET", "/api/batches/{code}/qr.svg", summary="Printable QR code (SVG) opening the batch's "
           "trace page", tag="trust", auth=PUBLIC, response_content_type="image/svg+xml")
async def qr_svg(request: web.Request) -> web.Response:
    return await _qr(request, "svg")


@api.route("GET", "/api/batches/{code}/qr.png", summary="Printable QR code (PNG, ?scale=1–40)",
           tag="trust", auth=PUBLIC, response_content_type="image/png", query={"scale": "1–40"})
async def qr_png(request: web.Request) -> web.Response:
    return await _qr(request, "png")
