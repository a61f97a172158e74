"""品鉴官 programmes, trial samples, public profiles, and their pages."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from commerce.accounts import Role
from commerce.catalog import Product
from commerce.notifications import NoticeKind
from server.api import (
    PUBLIC,
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
from server.notify import tell
from trust import koc, points, programmes, samples, ugc

api = Api()
HOSTS = (Role.HOST, Role.ADMIN)


class ProgrammeBody(BaseModel):
    title: str = Field(min_length=1, max_length=80)
    rules: str = Field(default="", max_length=programmes.MAX_RULES)
    badge: str = Field(default="品鉴官", min_length=1, max_length=programmes.MAX_BADGE)
    quota: int = Field(ge=1, le=koc.MAX_QUOTA)
    min_orders: int = Field(default=0, ge=0, le=koc.MAX_CRITERION)
    min_reviews: int = Field(default=0, ge=0, le=koc.MAX_CRITERION)
    exit_days: int = Field(default=30, ge=1, le=koc.MAX_EXIT_DAYS)
    community_id: Id | None = None


class ProgrammePatch(BaseModel):
    title: str | None = Field(default=None, min_length=1, max_length=80)
    rules: str | None = Field(default=None, max_length=programmes.MAX_RULES)
    badge: str | None = Field(default=None, min_length=1, max_length=programmes.MAX_BADGE)
    quota: int | None = Field(default=None, ge=1, le=koc.MAX_QUOTA)
    min_orders: int | None = Field(default=None, ge=0, le=koc.MAX_CRITERION)
    min_reviews: int | None = Field(default=None, ge=0, le=koc.MAX_CRITERION)
    exit_days: int | None = Field(default=None, ge=1, le=koc.MAX_EXIT_DAYS)
    open: bool | None = None


class ApplyBody(BaseModel):
    note: str = Field(default="", max_length=300)


class StockBody(BaseModel):
    units: int = Field(ge=0, le=samples.MAX_UNITS)


class SampleBody(BaseModel):
    product_id: Id
    user_id: Id
    due_days: int = Field(default=7, ge=1, le=samples.MAX_DUE_DAYS)


def _int_query(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    return parse_id(raw) if raw else None


# --- programmes ------------------------------------------------------------------------------

@api.route("GET", "/api/koc/programmes", summary="Open 品鉴官 programmes (of a host or a "
           "community)", tag="koc", auth=PUBLIC, query={"host_id": "a host", "community_id": "a community"})
async def list_programmes(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        rows = await koc.list_programmes(db, _int_query(request, "host_id"),
                                         _int_query(request, "community_id"))
        items = [p.public_dict() for p in rows]
    return json_response({"items": items, "next": None})


@api.route("GET", "/api/koc/programmes/hosted", summary="The caller's own programmes, open or "
           "closed (hosts)", tag="koc", auth=HOSTS)
async def hosted_programmes(request: web.Request) -> web.Response:
    who = principal(request)
    async with request.app[database_key].session() as db:
        rows = await koc.list_programmes(db, None if who.is_admin else who.user_id, only_open=False)
        items = [p.public_dict() for p in rows]
    return json_response({"items": items, "next": None})


@api.route("POST", "/api/koc/programmes", summary="Open a 品鉴官 programme for the shop or one "
           "community (hosts)", tag="koc", auth=HOSTS, body=ProgrammeBody,
           responses={201: "Created", 403: "forbidden (not your community)"})
async def open_programme(request: web.Request) -> web.Response:
    body = await read_json(request, ProgrammeBody)
    async with request.app[database_key].session() as db:
        programme = await koc.open_programme(db, principal(request), body.model_dump())
        data = programme.public_dict()
    return json_response(data, status=201)


@api.route("GET", "/api/koc/programmes/{id}", summary="A programme: rules, quota, criteria; "
           "with the caller's progress and application when signed in", tag="koc", auth=PUBLIC)
async def get_programme(request: web.Request) -> web.Response:
    programme_id = path_int(request, "id")
    who = optional_principal(request)
    async with request.app[database_key].session() as db:
        programme = await koc.get_programme(db, programme_id)
        data: dict[str, Any] = {"programme": programme.public_dict(), "mine": None,
                                "progress": None}
        if who is not None:
            data["progress"] = await koc.progress(db, programme, who.user_id)
            mine = [m for m in await koc.mine(db, who.user_id) if m["programme_id"] == programme_id]
            data["mine"] = mine[0] if mine else None
    return json_response(data)


@api.route("PATCH", "/api/koc/programmes/{id}", summary="Change a programme (its host)", tag="koc",
           auth=HOSTS, body=ProgrammePatch, responses={409: "quota_below_selected"})
async def patch_programme(request: web.Request) -> web.Response:
    programme_id = path_int(request, "id")
    body = await read_json(request, ProgrammePatch)
    async with request.app[database_key].session() as db:
        programme = await koc.update_programme(db, principal(request), programme_id,
                                               body.model_dump(exclude_none=True))
        data = programme.public_dict()
    return json_response(data)


@api.route("POST", "/api/koc/programmes/{id}/apply", summary="Apply to a programme (criteria "
           "checked here)", tag="koc", body=ApplyBody,
           responses={201: "Applied", 409: "criteria_not_met | programme_closed"})
async def apply(request: web.Request) -> web.Response:
    programme_id = path_int(request, "id")
    body = await read_json(request, ApplyBody)
    async with request.app[database_key].session() as db:
        application = await koc.apply(db, principal(request), programme_id, body.note)
        data = application.public_dict()
    return json_response(data, status=201)


@api.route("GET", "/api/koc/programmes/{id}/applications", summary="Applicants and members with "
           "their progress (the programme's host)", tag="koc", auth=HOSTS)
async def list_applications(request: web.Request) -> web.Response:
    programme_id = path_int(request, "id")
    async with request.app[database_key].session() as db:
        items = await koc.applications(db, principal(request), programme_id)
    return json_response({"items": items, "next": None})


@api.route("POST", "/api/koc/applications/{id}/select", summary="Select an applicant (takes a "
           "quota seat atomically)", tag="koc", auth=HOSTS,
           responses={409: "quota_full | not_applied"})
async def select(request: web.Request) -> web.Response:
    application_id = path_int(request, "id")
    async with request.app[database_key].session() as db:
        application = await koc.select_member(db, principal(request), application_id)
        data = application.public_dict()
        programme = await koc.get_programme(db, application.programme_id)
        title, badge = programme.title, programme.badge
    await tell(request.app, application.user_id, NoticeKind.KOC_SELECTED,
               {"programme_id": application.programme_id, "title": title, "badge": badge},
               "/koc", f"koc_selected:{application.id}")
    return json_response(data)


@api.route("POST", "/api/koc/applications/{id}/reject", summary="Turn an applicant down",
           tag="koc", auth=HOSTS, responses={409: "not_applied"})
async def reject(request: web.Request) -> web.Response:
    application_id = path_int(request, "id")
    async with request.app[database_key].session() as db:
        application = await koc.reject(db, principal(request), application_id)
        data = application.public_dict()
    return json_response(data)


@api.route("GET", "/api/koc/me", summary="The caller's programmes, samples, 晒单 and points",
           tag="koc")
async def me(request: web.Request) -> web.Response:
    who = principal(request)
    async with request.app[database_key].session() as db:
        await points.expire_due(db, who.user_id)
        data = {"memberships": await koc.mine(db, who.user_id),
                "samples": await samples.mine(db, who.user_id),
                "posts": await ugc.mine(db, who.user_id),
                "points": await points.summary(db, who.user_id)}
    return json_response(data)


# --- samples ---------------------------------------------------------------------------------

@api.route("PUT", "/api/koc/batches/{id}/sample-stock", summary="Set aside units of a batch as "
           "trial samples (its host)", tag="koc", auth=HOSTS, body=StockBody,
           responses={409: "below_sent"})
async def put_stock(request: web.Request) -> web.Response:
    batch_id = path_int(request, "id")
    body = await read_json(request, StockBody)
    async with request.app[database_key].session() as db:
        stock = await samples.set_stock(db, principal(request), batch_id, body.units)
        data = stock.public_dict()
    return json_response(data)


@api.route("GET", "/api/koc/batches/{id}/samples", summary="A batch's sample stock and the "
           "samples sent (its host)", tag="koc", auth=HOSTS)
async def batch_samples(request: web.Request) -> web.Response:
    batch_id = path_int(request, "id")
    async with request.app[database_key].session() as db:
        data = await samples.of_batch(db, principal(request), batch_id)
    return json_response(data)


@api.route("POST", "/api/koc/samples", summary="Send a zero-price trial sample of a product's "
           "batch to a member, due for review in N days", tag="koc", auth=HOSTS, body=SampleBody,
           responses={201: "Sent", 409: "no_samples_left | already_sent | not_koc"})
async def send_sample(request: web.Request) -> web.Response:
    body = await read_json(request, SampleBody)
    async with request.app[database_key].session() as db:
        sample = await samples.send(db, principal(request), body.product_id, body.user_id,
                                    body.due_days)
        data = sample.public_dict()
        product = await db.get(Product, body.product_id)
        name = product.name if product is not None else ""
    await tell(request.app, body.user_id, NoticeKind.SAMPLE_SENT,
               {"sample_id": data["id"], "product": name, "due_at": data["due_at"]},
               "/orders", f"sample:{data['id']}")
    return json_response(data, status=201)


@api.route("GET", "/api/koc/samples/mine", summary="Trial samples sent to the caller (shown "
           "in my orders)", tag="koc")
async def my_samples(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        items = await samples.mine(db, principal(request).user_id)
    return json_response({"items": items, "next": None})


# --- public profile --------------------------------------------------------------------------

@api.route("GET", "/api/u/{id}", summary="A neighbour's public profile: masked name, badge, "
           "title, approved 晒单 (nothing private)", tag="koc", auth=PUBLIC)
async def profile(request: web.Request) -> web.Response:
    user_id = path_int(request, "id")
    async with request.app[database_key].session() as db:
        name = await koc.public_name(db, user_id)
        earned = (await points.balances(db, [user_id])).get(user_id, 0)
        badges = sorted({p.badge for a, p in await programmes.memberships(db, [user_id])
                         if programmes.is_active(a, p)})
        posts = await ugc.approved(db, user_id=user_id)
    return json_response({"id": user_id, "name": name, "badges": badges,
                          "title": points.title_for(earned), "posts": posts})
