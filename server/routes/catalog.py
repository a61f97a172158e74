"""Products and the batches they are sold from (hosts list them; anyone may read)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from commerce import catalog, session_preview
from commerce.accounts import Principal, Role
from commerce.errors import Conflict, InvalidInput
from commerce.flash_sale.sales import MAX_PRICE_FEN
from server.api import PUBLIC, Api, Id, json_response, parse_id, path_int, principal, read_json
from server.keys import database_key
from trust import trace, uploads

api = Api()
HOSTS = (Role.HOST, Role.ADMIN)


MAX_PHOTOS = 9
PHOTO_PURPOSES = ("product", "cover", "batch")


class ProductCreate(BaseModel):
    name: str = Field(min_length=1, max_length=120)
    price_fen: int = Field(ge=0, le=MAX_PRICE_FEN, strict=True)
    unit: str = Field(default="份", min_length=1, max_length=32)
    description: str = Field(default="", max_length=4000)
    photos: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list,
                                                                max_length=MAX_PHOTOS)
    # Photos uploaded by the host (POST /api/uploads?purpose=product): made public and added.
    photo_upload_ids: list[Id] = Field(default_factory=list, max_length=MAX_PHOTOS)
    batch_id: Id | None = None


class ProductUpdate(BaseModel):
    """Only the fields sent change; `batch_id: null` unlinks the batch; `photo_upload_ids`
    replaces the photos (an empty list removes them)."""

    name: str | None = Field(default=None, min_length=1, max_length=120)
    price_fen: int | None = Field(default=None, ge=0, le=MAX_PRICE_FEN, strict=True)
    unit: str | None = Field(default=None, min_length=1, max_length=32)
    description: str | None = Field(default=None, max_length=4000)
    photo_upload_ids: list[Id] | None = Field(default=None, max_length=MAX_PHOTOS)
    batch_id: Id | None = None


async def _photo_urls(db: AsyncSession, who: Principal, upload_ids: list[int]) -> list[str]:
    """The caller's own image uploads, made public now that a product shows them."""
    found = await uploads.claim_uploads(db, who, upload_ids, PHOTO_PURPOSES, True)
    for upload in found:
        if upload.content_type not in session_preview.COVER_TYPES:
            raise uploads.UnsupportedUploadType("商品照片须是图片 / A product photo must be an image",
                                                allowed=list(session_preview.COVER_TYPES))
    return [f"/api/uploads/{u.name}" for u in found]


class BatchCreate(BaseModel):
    # What trace.batch_by_code accepts: a code it could not look up again would be useless.
    code: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
    farm: str = Field(default="", max_length=120)
    plot: str = Field(default="", max_length=120)
    harvested_at: datetime | None = None
    description: str = Field(default="", max_length=4000)


@api.route("POST", "/api/products", summary="List a product (host)", tag="catalog", auth=HOSTS,
           body=ProductCreate, responses={201: "Created: {id}"})
async def create_product(request: web.Request) -> web.Response:
    body = await read_json(request, ProductCreate)
    who = principal(request)
    async with request.app[database_key].session() as db:
        photos = body.photos + await _photo_urls(db, who, body.photo_upload_ids)
        if len(photos) > MAX_PHOTOS:
            raise InvalidInput(f"最多 {MAX_PHOTOS} 张照片 / At most {MAX_PHOTOS} photos",
                               field="photo_upload_ids")
        product = await catalog.create_product(
            db, who, body.name, body.price_fen, body.unit, body.description, photos,
            body.batch_id,
        )
    return json_response(product.public_dict(), status=201)


@api.route("PATCH", "/api/products/{id}", summary="Change a product: name, unit, list price, "
           "description, photos, batch (its host)", tag="catalog", auth=HOSTS, body=ProductUpdate,
           responses={403: "Not your product or batch", 404: "No such product, batch, upload"})
async def update_product(request: web.Request) -> web.Response:
    product_id = path_int(request, "id")
    body = await read_json(request, ProductUpdate)
    who = principal(request)
    values: dict[str, Any] = {
        name: getattr(body, name) for name in ("name", "price_fen", "unit", "description")
        if getattr(body, name) is not None
    }
    if "batch_id" in body.model_fields_set:
        values["batch_id"] = body.batch_id
    async with request.app[database_key].session() as db:
        # Ownership first: another host's product is refused before any upload is claimed.
        catalog.ensure_product_owner(await catalog.get_product(db, product_id), who)
        if body.photo_upload_ids is not None:
            values["photos"] = await _photo_urls(db, who, body.photo_upload_ids)
        product = await catalog.update_product(db, who, product_id, values)
        data = product.public_dict()
    return json_response(data)


@api.route("GET", "/api/products/{id}", summary="One product", tag="catalog", auth=PUBLIC)
async def get_product(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        product = await catalog.get_product(db, path_int(request, "id"))
    return json_response(product.public_dict())


@api.route("GET", "/api/products", summary="My products (host)", tag="catalog", auth=HOSTS)
async def my_products(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        rows = await db.execute(select(catalog.Product).where(
            catalog.Product.owner_id == principal(request).user_id).order_by(catalog.Product.id)
            .limit(500))
        return json_response([p.public_dict() for p in rows.scalars()])


@api.route("POST", "/api/batches", summary="Register a batch (host)", tag="catalog", auth=HOSTS,
           body=BatchCreate, responses={201: "Created"})
async def create_batch(request: web.Request) -> web.Response:
    body = await read_json(request, BatchCreate)
    try:
        async with request.app[database_key].session() as db:
            batch = await catalog.create_batch(db, principal(request), body.code, body.farm,
                                               body.plot, body.harvested_at, body.description)
    except IntegrityError:
        raise Conflict("批次编号已存在 / Batch code already exists", field="code") from None
    return json_response(batch.public_dict(), status=201)


@api.route("GET", "/api/batches/{id}", summary="One batch, by id or by its public code",
           tag="catalog", auth=PUBLIC)
async def get_batch(request: web.Request) -> web.Response:
    raw = request.match_info["id"]
    async with request.app[database_key].session() as db:
        if (batch_id := parse_id(raw)) is not None:
            batch = await catalog.get_batch(db, batch_id)
        else:
            # A malformed code (e.g. with a NUL, which PostgreSQL refuses) is simply not found.
            batch = await trace.batch_by_code(db, raw)
    return json_response(batch.public_dict())


@api.route("GET", "/api/batches", summary="My batches (host)", tag="catalog", auth=HOSTS)
async def my_batches(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        rows = await db.execute(select(catalog.Batch).where(
            catalog.Batch.owner_id == principal(request).user_id).order_by(catalog.Batch.id)
            .limit(500))
        return json_response([b.public_dict() for b in rows.scalars()])
