"""Reviews (trust archive), after-sales claims with policies and the assistant queue, NPS survey."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from commerce import refunds
from commerce.accounts import Role
from commerce.catalog import get_product
from commerce.errors import Forbidden, NotFound
from commerce.event_payloads import ClaimDecided, ClaimFiled
from commerce.events import DomainEvent
from commerce.live_sessions import get_session
from commerce.orders import get_order, may_view
from server.api import PUBLIC, Api, Id, json_response, parse_id, path_int, principal, read_json
from server.commerce_keys import checkout_key
from server.keys import database_key, events_key
from server.trust_keys import refunder_key
from trust import claims, claims_queue, nps, review_replies, reviews, trace
from trust.after_sales import after_sales_view
from trust.evidence import NotYourOrder

api = Api()
DECIDERS = (Role.ASSISTANT, Role.ADMIN)


class ReviewBody(BaseModel):
    order_id: Id
    stars: int = Field(ge=1, le=5)
    text: str = Field(default="", max_length=reviews.MAX_TEXT)
    photos: list[Id] = Field(default_factory=list, max_length=reviews.MAX_PHOTOS)


class ClaimBody(BaseModel):
    order_id: Id
    reason: claims.ClaimReason
    description: str = Field(default="", max_length=1000)
    photos: list[Id] = Field(default_factory=list, max_length=claims.MAX_PHOTOS)
    bad_qty: int = Field(default=1, ge=1, le=100_000)


class ClaimPhotosBody(BaseModel):
    photos: list[Id] = Field(min_length=1, max_length=claims.MAX_PHOTOS)


class DecisionBody(BaseModel):
    note: str = Field(default="", max_length=500)
    payout_fen: int | None = Field(default=None, ge=1, le=100_000_000)


class PolicyBody(BaseModel):
    full_refund_without_return: bool = True
    multiplier: int = Field(default=1, ge=1, le=10)
    max_days_after_pickup: int = Field(default=2, ge=0, le=30)
    auto_approve_max_fen: int = Field(default=10_000, ge=0, le=10_000_000)
    require_photo: bool = True
    response_hours: int = Field(default=2, ge=1, le=168)


class NpsBody(BaseModel):
    order_id: Id
    score: int = Field(ge=0, le=10)
    comment: str = Field(default="", max_length=nps.MAX_COMMENT)


class ReplyBody(BaseModel):
    text: str = Field(min_length=1, max_length=reviews.MAX_REPLY)


def _page(request: web.Request) -> tuple[int, int | None]:
    raw_limit = request.query.get("limit", "50")
    raw_before = request.query.get("before_id") or request.query.get("cursor")
    limit = int(raw_limit) if raw_limit.isascii() and raw_limit.isdigit() and 1 <= int(raw_limit) <= 100 \
        else 50
    before = parse_id(raw_before) if raw_before else None
    return limit, before


# --- reviews ---------------------------------------------------------------------------------

@api.route("POST", "/api/reviews", summary="Review a picked-up order (its buyer only; one per "
           "order; never editable)", tag="trust", body=ReviewBody,
           responses={201: "Created", 403: "not_your_order", 409: "order_not_picked_up | conflict"})
async def create_review(request: web.Request) -> web.Response:
    body = await read_json(request, ReviewBody)
    async with request.app[database_key].session() as db:
        review = await reviews.create_review(db, principal(request), body.order_id, body.stars,
                                             body.text, body.photos)
    return json_response({"id": review.id, "order_id": review.order_id, "stars": review.stars,
                          "batch_id": review.batch_id, "product_id": review.product_id}, status=201)


@api.route("GET", "/api/batches/{code}/reviews", summary="Trust archive of a batch: verified "
           "reviews and star distribution", tag="trust", auth=PUBLIC,
           query={"limit": "1–100", "cursor": "page cursor (`next`)"})
async def batch_reviews(request: web.Request) -> web.Response:
    limit, before = _page(request)
    async with request.app[database_key].session() as db:
        batch = await trace.batch_by_code(db, request.match_info["code"])
        data = await reviews.archive(db, batch_id=batch.id, limit=limit, before_id=before)
    return json_response({"batch": batch.public_dict(), **data})


@api.route("GET", "/api/products/{id}/reviews", summary="Trust archive of a product", tag="trust",
           auth=PUBLIC, query={"limit": "1–100", "cursor": "page cursor (`next`)"})
async def product_reviews(request: web.Request) -> web.Response:
    product_id = path_int(request, "id")
    limit, before = _page(request)
    async with request.app[database_key].session() as db:
        product = await get_product(db, product_id)
        data = await reviews.archive(db, product_id=product.id, limit=limit, before_id=before)
    return json_response({"product": product.public_dict(), **data})


@api.route("GET", "/api/sessions/{id}/reviews", summary="Verified reviews of the orders of one "
           "session, with the host's replies", tag="trust", auth=PUBLIC,
           query={"limit": "1–100", "cursor": "page cursor (`next`)"})
async def session_reviews(request: web.Request) -> web.Response:
    session_id = path_int(request, "id")
    limit, before = _page(request)
    async with request.app[database_key].session() as db:
        session = await get_session(db, session_id)
        data = await reviews.archive(db, session_id=session.id, limit=limit, before_id=before)
    return json_response({"session": {"id": session.id, "title": session.title}, **data})


@api.route("PUT", "/api/reviews/{id}/reply", summary="Write or edit the public reply to a review "
           "(the product's host; one reply per review)", tag="trust", auth=(Role.HOST, Role.ADMIN),
           body=ReplyBody, responses={403: "forbidden (not the product's host)"})
async def put_reply(request: web.Request) -> web.Response:
    review_id = path_int(request, "id")
    body = await read_json(request, ReplyBody)
    async with request.app[database_key].session() as db:
        row = await review_replies.reply(db, principal(request), review_id, body.text)
        data = {"review_id": review_id, **row.public_dict()}
    return json_response(data)


# --- claims ----------------------------------------------------------------------------------

@api.route("PUT", "/api/products/{id}/claim-policy", summary="Set a product's after-sales policy "
           "(its host)", tag="claims", auth=(Role.HOST, Role.ADMIN), body=PolicyBody)
async def put_policy(request: web.Request) -> web.Response:
    product_id = path_int(request, "id")
    body = await read_json(request, PolicyBody)
    async with request.app[database_key].session() as db:
        policy = await claims.set_policy(db, principal(request), product_id, **body.model_dump())
    return json_response(policy.public_dict())


@api.route("GET", "/api/products/{id}/claim-policy", summary="A product's after-sales policy",
           tag="claims", auth=PUBLIC)
async def get_policy(request: web.Request) -> web.Response:
    product_id = path_int(request, "id")
    async with request.app[database_key].session() as db:
        await get_product(db, product_id)
        policy = await claims.get_policy(db, product_id)
    return json_response(policy.public_dict() if policy else {"product_id": product_id,
                                                              "policy": None})


@api.route("POST", "/api/claims", summary="File an after-sales claim on your picked-up order; "
           "auto-refunded when within the product's policy", tag="claims", body=ClaimBody,
           responses={201: "Filed", 400: "photo_required | claim_empty", 403: "not_your_order",
                      409: "order_not_picked_up | claim_exists | photo_in_use"})
async def create_claim(request: web.Request) -> web.Response:
    body = await read_json(request, ClaimBody)
    async with request.app[database_key].session() as db:
        claim = await claims.file_claim(
            db, request.app[refunder_key], principal(request), body.order_id, body.reason,
            body.description, body.photos, body.bad_qty,
        )
        data = claim.public_dict()
    await request.app[events_key].publish(DomainEvent(
        "claim_filed", claim.session_id,
        ClaimFiled(claim_id=claim.id, status=claim.status, product_id=claim.product_id,
                   pin_id=claim.pin_id, due_at=data["due_at"], user_id=claim.buyer_id,
                   payout_fen=claim.payout_fen),
    ))
    return json_response(data, status=201)


@api.route("POST", "/api/claims/{id}/photos", summary="Add photos to your own claim while it "
           "waits for a decision", tag="claims", body=ClaimPhotosBody,
           responses={403: "not your claim", 409: "claim_closed | photo_in_use"})
async def add_claim_photos(request: web.Request) -> web.Response:
    claim_id = path_int(request, "id")
    body = await read_json(request, ClaimPhotosBody)
    async with request.app[database_key].session() as db:
        claim = await claims.add_photos(db, principal(request), claim_id, body.photos)
        data = claim.public_dict()
    return json_response(data)


@api.route("GET", "/api/claims", summary="The assistant queue (oldest due first), each claim with "
           "its product, buyer, batch, photos and the ledger state of its refund and compensation",
           tag="claims", auth=(Role.ASSISTANT, Role.ADMIN, Role.HOST),
           query={"status": "pending (default) | approved | rejected | reshipped | decided | "
                            "overdue | all"})
async def claim_queue(request: web.Request) -> web.Response:
    raw = request.query.get("status", "pending")
    known = {s.value: (s.value,) for s in claims.ClaimStatus}
    statuses: tuple[str, ...] | None
    if raw in ("all", "overdue"):
        statuses = None
    elif raw == "decided":
        statuses = claims.DECIDED
    else:
        statuses = known.get(raw, (claims.ClaimStatus.PENDING.value,))
    who = principal(request)
    # A host's queue holds the claims on their own sessions; assistants and admins see all.
    host_id = who.user_id if who.role is Role.HOST else None
    async with request.app[database_key].session() as db:
        rows = await claims.queue(db, statuses, limit=500 if raw == "overdue" else 100,
                                  host_id=host_id)
        if raw == "overdue":
            rows = [c for c in rows if c.overdue()]
        data = await claims_queue.queue_view(db, rows)
    return json_response(data)


@api.route("GET", "/api/claims/mine", summary="Your claims", tag="claims")
async def my_claims(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        rows = await claims.claims_of(db, principal(request).user_id)
    return json_response([c.public_dict() for c in rows])


@api.route("GET", "/api/claims/{id}", summary="One claim (its buyer or staff)", tag="claims")
async def get_claim(request: web.Request) -> web.Response:
    claim_id = path_int(request, "id")
    async with request.app[database_key].session() as db:
        claim = await claims.get_claim(db, claim_id)
        session = await get_session(db, claim.session_id)
        claims.ensure_can_view(claim, principal(request), session.host_id)
        data = await claims_queue.with_money(db, claim)
    return json_response(data)


async def _decide(request: web.Request, outcome: claims.Outcome) -> web.Response:
    claim_id = path_int(request, "id")
    body = await read_json(request, DecisionBody)
    async with request.app[database_key].session() as db:
        claim = await claims.decide(db, request.app[refunder_key], principal(request), claim_id,
                                    outcome, body.note, body.payout_fen)
    async with request.app[database_key].session() as db:
        # Read after the commit, so the ledger state is what the provider answered.
        data = await claims_queue.with_money(db, await claims.get_claim(db, claim_id))
    await request.app[events_key].publish(DomainEvent(
        "claim_decided", claim.session_id,
        ClaimDecided(claim_id=claim.id, status=claim.status, user_id=claim.buyer_id,
                     payout_fen=claim.payout_fen),
    ))
    return json_response(data)


@api.route("POST", "/api/claims/{id}/compensation", summary="Receive your approved claim's "
           "compensation that waits for an account (待领取), once you linked WeChat or Alipay: "
           "the transfer is tried again with its key", tag="claims",
           responses={403: "not your claim", 404: "no compensation waits",
                      409: "no_payee_account (still no account to pay it to)"})
async def receive_compensation(request: web.Request) -> web.Response:
    claim_id = path_int(request, "id")
    who = principal(request)
    async with request.app[database_key].session() as db:
        claim = await claims.get_claim(db, claim_id)
    if claim.buyer_id != who.user_id:
        raise Forbidden("这不是你的售后 / Not your claim", reason="not_yours")
    try:
        await refunds.receive(request.app[database_key].session, request.app[checkout_key].payments,
                              refunds.compensation_key(claim_id), who.user_id)
    except LookupError:
        raise NotFound("没有待领取的赔付 / No compensation waits for you") from None
    async with request.app[database_key].session() as db:
        data = await claims_queue.with_money(db, await claims.get_claim(db, claim_id))
    return json_response(data)


@api.route("POST", "/api/claims/{id}/approve", summary="Approve a queued claim: refund through the "
           "payment provider", tag="claims", auth=DECIDERS, body=DecisionBody)
async def approve_claim(request: web.Request) -> web.Response:
    return await _decide(request, claims.Outcome.APPROVE)


@api.route("POST", "/api/claims/{id}/reject", summary="Reject a queued claim (a reason is "
           "required)", tag="claims", auth=DECIDERS, body=DecisionBody,
           responses={400: "reason_required", 409: "invalid_state"})
async def reject_claim(request: web.Request) -> web.Response:
    return await _decide(request, claims.Outcome.REJECT)


@api.route("POST", "/api/claims/{id}/reship", summary="Decide a queued claim by sending the goods "
           "again: no refund; noted in the order's history (a reason is required)", tag="claims",
           auth=DECIDERS, body=DecisionBody, responses={400: "reason_required", 409: "invalid_state"})
async def reship_claim(request: web.Request) -> web.Response:
    return await _decide(request, claims.Outcome.RESHIP)


@api.route("GET", "/api/sessions/{id}/claim-flags", summary="Claims per product/pin of a session "
           "(replay chapters to flag)", tag="claims", auth=PUBLIC)
async def claim_flags(request: web.Request) -> web.Response:
    session_id = path_int(request, "id")
    async with request.app[database_key].session() as db:
        flags = await claims.replay_flags(db, session_id)
    return json_response(flags)


@api.route("GET", "/api/orders/{id}/after-sales", summary="An order's batch, stream moment, claim, "
           "and whether the buyer may still claim, review or answer the survey", tag="claims")
async def order_after_sales(request: web.Request) -> web.Response:
    order_id = path_int(request, "id")
    who = principal(request)
    async with request.app[database_key].session() as db:
        order = await get_order(db, order_id)
        session = await get_session(db, order.session_id)
        if not may_view(order, who, session.host_id):
            raise NotYourOrder(order_id=order_id)
        data = await after_sales_view(db, order)
    return json_response(data)


# --- NPS -------------------------------------------------------------------------------------

@api.route("POST", "/api/nps", summary="Answer the one-question survey for a picked-up order "
           "(0–10, once per order)", tag="trust", body=NpsBody,
           responses={201: "Recorded", 403: "not_your_order", 409: "order_not_picked_up | conflict"})
async def answer_nps(request: web.Request) -> web.Response:
    body = await read_json(request, NpsBody)
    async with request.app[database_key].session() as db:
        row = await nps.answer(db, principal(request), body.order_id, body.score, body.comment)
    return json_response({"id": row.id, "order_id": row.order_id, "score": row.score}, status=201)


@api.route("GET", "/api/nps/pending", summary="Your picked-up orders still waiting for the survey",
           tag="trust")
async def pending_nps(request: web.Request) -> web.Response:
    async with request.app[database_key].session() as db:
        ids = await nps.pending_surveys(db, principal(request))
    return json_response({"order_ids": ids, "question": "你有多大可能把我们推荐给邻居?(0–10) / "
                          "How likely are you to recommend us to a neighbour? (0–10)"})


@api.route("GET", "/api/nps/report", summary="The shop's NPS: score, 0–10 distribution, weekly "
           "trend and a page of answers (assistants and admins all; a host his own sessions')",
           tag="trust", auth=(Role.HOST, Role.ASSISTANT, Role.ADMIN),
           query={"session_id": "one session", "batch_id": "one batch", "limit": "1–100",
                  "cursor": "page cursor (`next`)"})
async def nps_report(request: web.Request) -> web.Response:
    who = principal(request)
    limit, before = _page(request)
    raw_session, raw_batch = request.query.get("session_id"), request.query.get("batch_id")
    session_id = parse_id(raw_session) if raw_session else None
    batch_id = parse_id(raw_batch) if raw_batch else None
    host_id = who.user_id if who.role is Role.HOST else None
    async with request.app[database_key].session() as db:
        if session_id is not None and host_id is not None:
            session = await get_session(db, session_id)
            if session.host_id != host_id:
                raise Forbidden("这不是你的直播 / Not your session")
        data = await nps.report(db, host_id=host_id, session_id=session_id, batch_id=batch_id,
                                limit=min(limit, 100), before_id=before)
    return json_response(data)
