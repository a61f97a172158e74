"""Products and the batches they are sold from (hosts list them; anyone may read)."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from commerce import catalog
from commerce.accounts import Role
from commerce.errors import Conflict
from commerce.flash_sale.sales import MAX_PRICE_FEN
from server.api import PUBLIC, Api, Id, json_response, parse_id, path_int, principal, read_json
from server.keys import database_key
from trust import trace

api = Api()
HOSTS = (Role.HOST, Role.ADMIN)


class ProductCreate(BaseModel):
    name: str = Field(min_length=1, max_length=120)
    price_fen: int = Field(ge=0, le=MAX_PRICE_FEN, strict=True)
    unit: str = Field(default="份", min_length=1, max_length=32)
    description: str = Field(default="", max_length=4000)
    photos: list[str] = Field(default_factory=list, max_length=9)
    batch_id: Id | None = None


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
    async with request.app[database_key].session() as db:
        product = await catalog.create_product(
            db, principal(request), body.name, body.price_fen, body.unit, body.description,
            body.photos, body.batch_id,
        )
    return json_response(product.public_dict(), status=201)


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
