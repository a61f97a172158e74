"""Flash sales and group-buys: hosts open and close them; anyone reads stock and countdowns."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import select

from commerce import catalog, group_buys, pricing
from commerce.accounts import Community, Membership, Role
from commerce.base import MAX_ID
from commerce.errors import InvalidInput
from commerce.flash_sale import lifecycle, sales
from commerce.flash_sale.buckets import MAX_BUCKETS
from commerce.flash_sale.lifecycle import SaleDraft
from commerce.flash_sale.sales import MAX_COMMUNITIES, MAX_PRICE_FEN, MAX_STOCK, Sale
from commerce.flash_sale.store import MAX_QTY
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
from server.commerce_keys import checkout_key
from server.keys import database_key, settings_key

api = Api()
HOSTS = (Role.HOST, Role.ADMIN)


class SaleCreate(BaseModel):
    product_id: int = Field(ge=1, le=MAX_ID, strict=True)
    stock: int = Field(ge=1, le=MAX_STOCK, strict=True)
    price_fen: int = Field(ge=0, le=MAX_PRICE_FEN, strict=True)
    per_buyer_limit: int = Field(ge=1, le=MAX_QTY, strict=True)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    # The promised pickup (or delivery) time the dashboard's on-time figure is measured against.
    pickup_by: datetime | None = None
    community_ids: list[Id] = Field(default_factory=list, max_length=MAX_COMMUNITIES)
    community_price_fen: int | None = Field(default=None, ge=0, le=MAX_PRICE_FEN, strict=True)
    members_only: bool = False
    gift_first_n: int = Field(default=0, ge=0, le=MAX_STOCK, strict=True)
    gift_text: str = Field(default="", max_length=200)
    # Split the stock over this many Redis buckets (keys in different cluster slots), so one
    # sale is not bound to one Redis core; 1 keeps it in one hash. No group-buys when > 1.
    buckets: int = Field(default=1, ge=1, le=MAX_BUCKETS, strict=True)


class GroupBuyCreate(BaseModel):
    community_id: int = Field(ge=1, le=MAX_ID, strict=True)
    threshold: int = Field(ge=1, le=MAX_STOCK, strict=True)
    unit: Literal["people", "units"] = "people"
    deadline: datetime
    group_price_fen: int = Field(ge=0, le=MAX_PRICE_FEN, strict=True)
    on_failure: Literal["refund", "proceed"] = "refund"

    @model_validator(mode="after")
    def _aware(self) -> GroupBuyCreate:
        if self.deadline.tzinfo is None:
            raise ValueError("deadline needs a timezone (UTC on the wire)")
        return self


async def sale_view(request: web.Request, sale: Sale) -> dict[str, Any]:
    """The sale with its live counts (Redis) and product card."""
    checkout = request.app[checkout_key]
    async with request.app[database_key].session() as db:
        product = await catalog.get_product(db, sale.product_id)
    counts = await checkout.store.counts(sale.id)
    data = sale.public_dict()
    data.update(
        product=product.public_dict(), initial=sale.stock,
        remaining=counts.remaining if counts else sale.stock, held=counts.held if counts else 0,
        sold=counts.sold if counts else 0,
        gift_left=counts.gift_left if counts else sale.gift_first_n,
    )
    who = optional_principal(request)
    if who is not None:
        data.update(await buyer_view(request, sale, who.user_id))
    return data


async def buyer_view(request: web.Request, sale: Sale, user_id: int) -> dict[str, Any]:
    """What this sale means for the signed-in buyer: the unit price she would pay now (the same
    rule payment charges by), the community she buys through, and what her limit leaves her."""
    checkout = request.app[checkout_key]
    community: Community | None = None
    if sale.community_ids:
        async with request.app[database_key].session() as db:
            rows = await db.execute(select(Community).join(
                Membership, Membership.community_id == Community.id).where(
                Membership.user_id == user_id, Membership.status == "approved",
                Community.id.in_(sale.community_ids)))
            mine = {c.id: c for c in rows.scalars()}
        # The sale's own order of communities decides, as reserve.lua does.
        community = next((mine[cid] for cid in sale.community_ids if cid in mine), None)
    community_id = community.id if community else None
    price = await checkout.price_for(sale.id, community_id)
    if price is None:
        price = pricing.buyer_price(sale.price_fen, sale.community_price_fen, community_id)
    bought = await checkout.store.bought_by(sale.id, user_id)
    return {**price.as_dict(), "your_community_id": community_id,
            "your_community_name": community.name if community else None,
            "your_member": community is not None or not sale.community_ids,
            "your_bought": bought, "your_limit_left": max(0, sale.per_buyer_limit - bought)}


@api.route("POST", "/api/sessions/{id}/sales", summary="Open a flash sale in a session (its host)",
           tag="sales", auth=HOSTS, body=SaleCreate,
           responses={201: "Created: the sale; with an Idempotency-Key (yours, on this session) a "
                           "repeat answers the same sale",
                      409: "conflict (reason in_progress): the same Idempotency-Key is still being "
                           "handled | idempotency_key_reused: the key already made a sale from "
                           "another body | invalid_state: the session has ended | "
                           "sale_overlaps: another sale of the product in this session is open "
                           "or scheduled in an overlapping window (error.sale_id names it; a "
                           "sold-out one does not block and is closed)"})
async def create_sale(request: web.Request) -> web.Response:
    session_id = path_int(request, "id")
    body = await read_json(request, SaleCreate)
    if body.gift_first_n > body.stock:
        raise InvalidInput("赠品名额不能超过库存 / gift_first_n cannot exceed stock",
                           field="gift_first_n")
    for field, when in (("starts_at", body.starts_at), ("ends_at", body.ends_at),
                        ("pickup_by", body.pickup_by)):
        if when is not None and when.tzinfo is None:
            raise InvalidInput("时间需带时区(UTC)/ Times need a timezone (UTC)", field=field)
    draft = SaleDraft(
        body.product_id, body.stock, body.price_fen, body.per_buyer_limit,
        starts_at=body.starts_at, ends_at=body.ends_at, community_ids=tuple(body.community_ids),
        community_price_fen=body.community_price_fen, members_only=body.members_only,
        gift_first_n=body.gift_first_n, gift_text=body.gift_text, pickup_by=body.pickup_by,
        buckets=body.buckets,
    )
    sale = await lifecycle.create_sale(
        request.app[checkout_key], principal(request), session_id, draft,
        request.app[settings_key].hold_ttl_s, request.headers.get("Idempotency-Key"),
    )
    return json_response(await sale_view(request, sale), status=201)


@api.route("GET", "/api/sessions/{id}/sales", summary="Sales of a session", tag="sales",
           auth=PUBLIC)
async def session_sales(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        found = await sales.sales_of_session(db, path_int(request, "id"))
    return json_response([await sale_view(request, sale) for sale in found])


@api.route("GET", "/api/sales/{id}", summary="A sale: price, countdown, initial/remaining/held/sold; "
           "signed in, also your_price_fen (what you pay now), list_price_fen, your_community_id, "
           "your_limit_left",
           tag="sales", auth=PUBLIC)
async def get_sale(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        sale = await sales.get_sale(db, path_int(request, "id"))
    return json_response(await sale_view(request, sale))


@api.route("POST", "/api/sales/{id}/close", summary="Close a sale (its host)", tag="sales",
           auth=HOSTS)
async def close_sale(request: web.Request) -> web.Response:
    sale = await lifecycle.close_sale(request.app[checkout_key], path_int(request, "id"),
                                       principal(request))
    return json_response(await sale_view(request, sale))


@api.route("POST", "/api/sales/{id}/group-buys", summary="Open a group-buy for one community",
           tag="sales", auth=HOSTS, body=GroupBuyCreate,
           responses={201: "Created", 409: "buckets_unsupported: the sale's stock is split over "
                                            "buckets (buckets > 1), which has no group-buys"})
async def create_group_buy(request: web.Request) -> web.Response:
    body = await read_json(request, GroupBuyCreate)
    data = await group_buys.create_group_buy(
        request.app[checkout_key], principal(request), path_int(request, "id"), body.community_id,
        body.threshold, body.unit, body.deadline, body.group_price_fen, body.on_failure,
        request.app[settings_key].hold_ttl_s,
    )
    return json_response(data, status=201)


@api.route("GET", "/api/group-buys/{id}", summary="A group-buy's progress and outcome",
           tag="sales", auth=PUBLIC)
async def get_group_buy(request: web.Request) -> web.Response:
    return json_response(await group_buys.group_view(request.app[checkout_key],
                                                     path_int(request, "id")))


@api.route("GET", "/api/sales/{id}/group-buys", summary="Group-buys of a sale", tag="sales",
           auth=PUBLIC)
async def sale_group_buys(request: web.Request) -> web.Response:
    checkout = request.app[checkout_key]
    async with request.app[database_key].session() as db:
        ids = list((await db.execute(select(group_buys.GroupBuy.id).where(
            group_buys.GroupBuy.sale_id == path_int(request, "id")))).scalars())
    return json_response([await group_buys.group_view(checkout, gid) for gid in ids])
