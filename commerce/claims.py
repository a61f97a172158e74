"""After-sales claims (售后): photo + reason against a picked-up order, auto-approved within policy.

A claim links the order, the batch, and the stream moment (the pin on screen when the order was
paid), and flags that product's replay chapter. Policies are per product. Auto-approval happens
only when every rule in `auto_decision` holds; anything else waits in the assistant queue. The
promised response time is tracked: `due_at` = filed + policy.response_hours, `responded_at` when
decided (at once for auto-approval), overdue when undecided past due or decided late.

Money: payout = unit price × bad units × multiplier ("坏一赔十" = 10). The part up to what is
left of the order is refunded through the payment provider; the rest is recorded as
`compensation_fen` (credit owed to the buyer; paying it out is outside the payment interface).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.accounts import Principal, Role
from commerce.base import Base, as_utc, utcnow
from commerce.catalog import get_product
from commerce.claims_refunds import Refunder
from commerce.errors import Conflict, Forbidden, InvalidInput, InvalidState, NotFound
from commerce.live_sessions import LiveSession
from commerce.orders import Order
from commerce.trace_signing import iso
from commerce.trust_orders import fulfilled_order
from commerce.uploads import Upload, claim_uploads, may_read, refuse_read

ABUSE_WINDOW = timedelta(days=30)
ABUSE_MAX_AUTO = 3  # auto-approved claims per buyer per window; more go to a human
DEFAULT_RESPONSE_HOURS = 24


class ClaimReason(enum.StrEnum):
    SPOILED = "spoiled"  # 坏果/变质
    DAMAGED = "damaged"  # 破损
    MISSING = "missing"  # 少件
    WRONG_ITEM = "wrong_item"
    QUALITY = "quality"  # 与描述不符
    OTHER = "other"


class ClaimStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class ClaimPolicy(Base):
    """After-sales promise of one product, set by its host."""

    __tablename__ = "claim_policies"

    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), primary_key=True,
                                            autoincrement=False)
    full_refund_without_return: Mapped[bool] = mapped_column(default=True)
    multiplier: Mapped[int] = mapped_column(default=1)
    max_days_after_pickup: Mapped[int] = mapped_column(default=2)
    auto_approve_max_fen: Mapped[int] = mapped_column(default=10_000)
    require_photo: Mapped[bool] = mapped_column(default=True)
    response_hours: Mapped[int] = mapped_column(default=2)
    updated_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    def public_dict(self) -> dict[str, Any]:
        return {
            "product_id": self.product_id, "full_refund_without_return": self.full_refund_without_return,
            "multiplier": self.multiplier, "max_days_after_pickup": self.max_days_after_pickup,
            "auto_approve_max_fen": self.auto_approve_max_fen, "require_photo": self.require_photo,
            "response_hours": self.response_hours,
        }


class Claim(Base):
    __tablename__ = "claims"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(unique=True)  # one claim per order; no FK: other branch
    buyer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"), nullable=True, index=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("live_sessions.id"), index=True)
    pin_id: Mapped[int | None] = mapped_column(ForeignKey("product_pins.id"), nullable=True)
    pinned_at: Mapped[datetime | None] = mapped_column(nullable=True)
    community_id: Mapped[int | None] = mapped_column(nullable=True, index=True)
    reason: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text, default="")
    photos: Mapped[list[int]] = mapped_column(JSON, default=list)
    bad_qty: Mapped[int] = mapped_column()
    status: Mapped[str] = mapped_column(String(12), index=True)
    auto: Mapped[bool] = mapped_column(default=False)
    rule_notes: Mapped[list[str]] = mapped_column(JSON, default=list)
    payout_fen: Mapped[int] = mapped_column(default=0)
    refund_fen: Mapped[int] = mapped_column(default=0)
    compensation_fen: Mapped[int] = mapped_column(default=0)
    refund_ref: Mapped[str] = mapped_column(String(80), default="")
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    decision_note: Mapped[str] = mapped_column(String(500), default="")
    due_at: Mapped[datetime] = mapped_column()
    responded_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def overdue(self, now: datetime | None = None) -> bool:
        due = as_utc(self.due_at)
        if self.responded_at is not None:
            return as_utc(self.responded_at) > due
        return (now or utcnow()) > due

    def public_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "order_id": self.order_id, "buyer_id": self.buyer_id,
            "product_id": self.product_id, "batch_id": self.batch_id,
            "stream_moment": {"session_id": self.session_id, "pin_id": self.pin_id,
                              "pinned_at": iso(self.pinned_at)},
            "replay_chapter": {"session_id": self.session_id, "product_id": self.product_id,
                               "pin_id": self.pin_id},
            "reason": self.reason, "description": self.description,
            "photos": list(self.photos or []), "bad_qty": self.bad_qty, "status": self.status,
            "auto": self.auto, "rules": list(self.rule_notes or []), "payout_fen": self.payout_fen,
            "refund_fen": self.refund_fen, "compensation_fen": self.compensation_fen,
            "refund_ref": self.refund_ref, "decision_note": self.decision_note,
            "due_at": iso(self.due_at), "responded_at": iso(self.responded_at),
            "overdue": self.overdue(), "created_at": iso(self.created_at),
        }


@dataclass(frozen=True)
class Decision:
    auto: bool
    notes: list[str]
    payout_fen: int


async def get_policy(db: AsyncSession, product_id: int) -> ClaimPolicy | None:
    return await db.get(ClaimPolicy, product_id)


async def set_policy(db: AsyncSession, actor: Principal, product_id: int, **values: Any) -> ClaimPolicy:
    """The product's host (or an admin) sets its after-sales promise."""
    product = await get_product(db, product_id)
    if not actor.is_admin and (actor.role is not Role.HOST or product.owner_id != actor.user_id):
        raise Forbidden("这不是你的商品 / Not your product")
    policy = await db.get(ClaimPolicy, product_id)
    if policy is None:
        policy = ClaimPolicy(product_id=product_id, updated_by=actor.user_id)
        db.add(policy)
    for name, value in values.items():
        setattr(policy, name, value)
    policy.updated_by, policy.updated_at = actor.user_id, utcnow()
    await db.flush()
    return policy


async def auto_decision(
    db: AsyncSession, policy: ClaimPolicy | None, order: Order, buyer_id: int,
    picked_up_at: datetime | None, bad_qty: int, has_photo: bool, now: datetime,
) -> Decision:
    """Every rule must hold for auto-approval; `notes` says which failed (shown to assistants)."""
    if policy is None:
        return Decision(False, ["no_policy"], order.unit_price_fen * bad_qty)
    notes: list[str] = []
    payout = order.unit_price_fen * bad_qty * policy.multiplier
    if not policy.full_refund_without_return:
        notes.append("return_required")
    if picked_up_at is None or now - picked_up_at > timedelta(days=policy.max_days_after_pickup):
        notes.append("past_max_days")
    if policy.require_photo and not has_photo:
        notes.append("photo_required")
    if payout > policy.auto_approve_max_fen:
        notes.append("above_auto_limit")
    recent = int((await db.execute(
        select(func.count(Claim.id)).where(
            Claim.buyer_id == buyer_id, Claim.auto.is_(True), Claim.created_at >= now - ABUSE_WINDOW
        )
    )).scalar_one())
    if recent >= ABUSE_MAX_AUTO:
        notes.append("too_many_recent_claims")
    return Decision(not notes, notes or ["within_policy"], payout)


async def file_claim(
    db: AsyncSession, refunder: Refunder, actor: Principal, order_id: int, reason: ClaimReason,
    description: str, photo_ids: list[int], bad_qty: int,
) -> Claim:
    """The buyer files; within policy it is approved and refunded in the same transaction."""
    facts = await fulfilled_order(db, order_id, actor)
    order, evidence = facts.order, facts.evidence
    if not 1 <= bad_qty <= order.qty:
        raise InvalidInput(f"数量须为 1–{order.qty} / bad_qty must be 1–{order.qty}", field="bad_qty")
    existing = (await db.execute(select(Claim.id).where(Claim.order_id == order.id))).first()
    if existing is not None:
        raise Conflict("该订单已申请售后 / This order already has a claim", reason="claim_exists",
                       claim_id=existing[0])
    photos = await claim_uploads(db, actor, photo_ids, ("claim",), make_public=False)
    if any(photo.claim_id is not None for photo in photos):
        # A photo is readable by the parties of its one claim; sharing it would widen that.
        raise Conflict("照片已用于另一售后 / A photo is already attached to another claim",
                       reason="photo_in_use")
    policy = await get_policy(db, evidence.product_id)
    now = utcnow()
    decision = await auto_decision(db, policy, order, actor.user_id, facts.picked_up_at, bad_qty,
                                   bool(photos), now)
    hours = policy.response_hours if policy is not None else DEFAULT_RESPONSE_HOURS
    claim = Claim(
        order_id=order.id, buyer_id=actor.user_id, product_id=evidence.product_id,
        batch_id=evidence.batch_id, session_id=evidence.session_id, pin_id=evidence.pin_id,
        pinned_at=evidence.pinned_at, community_id=order.community_id, reason=reason.value,
        description=description, photos=[p.id for p in photos], bad_qty=bad_qty,
        status=ClaimStatus.PENDING.value, auto=False, rule_notes=decision.notes,
        payout_fen=decision.payout_fen, due_at=now + timedelta(hours=hours), created_at=now,
    )
    db.add(claim)
    try:
        await db.flush()
    except IntegrityError:
        raise Conflict("该订单已申请售后 / This order already has a claim",
                       reason="claim_exists") from None
    for photo in photos:
        photo.claim_id = claim.id
    if decision.auto:
        claim.auto = True
        await _approve(db, refunder, claim, order, decision.payout_fen, None, "自动通过 / auto-approved")
    return claim


async def _approve(
    db: AsyncSession, refunder: Refunder, claim: Claim, order: Order, payout_fen: int,
    actor: Principal | None, note: str,
) -> None:
    refunded, ref = await refunder.refund(db, order, payout_fen, f"claim {claim.id}", actor)
    claim.status = ClaimStatus.APPROVED.value
    claim.payout_fen = payout_fen
    claim.refund_fen, claim.refund_ref = refunded, ref
    claim.compensation_fen = max(0, payout_fen - refunded)
    claim.decided_by = actor.user_id if actor else None
    claim.decision_note = note[:500]
    claim.responded_at = utcnow()
    await db.flush()


def ensure_can_decide(actor: Principal) -> None:
    if actor.role not in (Role.ADMIN, Role.ASSISTANT):
        raise Forbidden("只有助理或管理员可以处理售后 / Only assistants or admins handle claims")


async def decide(
    db: AsyncSession, refunder: Refunder, actor: Principal, claim_id: int, approve: bool,
    note: str = "", payout_fen: int | None = None,
) -> Claim:
    """An assistant approves (refund executed) or rejects a queued claim."""
    ensure_can_decide(actor)
    claim = await get_claim(db, claim_id)
    if claim.status != ClaimStatus.PENDING.value:
        raise InvalidState("该售后已处理 / Claim already decided", status=claim.status)
    order = await db.get(Order, claim.order_id)
    if order is None:
        raise NotFound("订单不存在 / No such order")
    if approve:
        policy = await get_policy(db, claim.product_id)
        ceiling = order.unit_price_fen * claim.bad_qty * max(policy.multiplier if policy else 1, 1)
        payout = claim.payout_fen if payout_fen is None else payout_fen
        if not 0 < payout <= ceiling:
            raise InvalidInput(f"赔付须为 1–{ceiling} 分 / payout_fen must be 1–{ceiling}",
                               field="payout_fen")
        await _approve(db, refunder, claim, order, payout, actor, note)
    else:
        claim.status = ClaimStatus.REJECTED.value
        claim.decided_by, claim.decision_note = actor.user_id, note[:500]
        claim.responded_at = utcnow()
        await db.flush()
    return claim


async def get_claim(db: AsyncSession, claim_id: int) -> Claim:
    claim = await db.get(Claim, claim_id)
    if claim is None:
        raise NotFound("售后不存在 / No such claim")
    return claim


def may_view(claim: Claim, actor: Principal, session_host_id: int) -> bool:
    """The buyer, assistants and admins; a host only the claims on their own sessions."""
    if actor.user_id == claim.buyer_id or actor.role in (Role.ADMIN, Role.ASSISTANT):
        return True
    return actor.role is Role.HOST and actor.user_id == session_host_id


def ensure_can_view(claim: Claim, actor: Principal, session_host_id: int) -> None:
    if not may_view(claim, actor, session_host_id):
        raise Forbidden("这不是你的售后 / Not your claim")


async def ensure_can_read_upload(db: AsyncSession, upload: Upload, who: Principal | None) -> None:
    """Any upload: public evidence for anyone; a claim photo for whoever may view that claim
    (its buyer, the host of the order's session, assistants, admins); else uploader and admins."""
    if may_read(upload, who):
        return
    if who is not None and upload.claim_id is not None:
        claim = await get_claim(db, upload.claim_id)
        session = await db.get(LiveSession, claim.session_id)
        if session is not None and may_view(claim, who, session.host_id):
            return
    raise refuse_read(who)


async def queue(db: AsyncSession, status: ClaimStatus | None, limit: int = 100,
                host_id: int | None = None) -> list[Claim]:
    """The assistant queue: oldest due first, so the promised response time is kept.

    With `host_id`, only the claims on that host's sessions (what a host may see)."""
    query = select(Claim)
    if host_id is not None:
        query = query.join(LiveSession, LiveSession.id == Claim.session_id).where(
            LiveSession.host_id == host_id)
    if status is not None:
        query = query.where(Claim.status == status.value)
    rows = await db.execute(query.order_by(Claim.due_at, Claim.id).limit(limit))
    return list(rows.scalars())


async def claims_of(db: AsyncSession, buyer_id: int, limit: int = 100) -> list[Claim]:
    rows = await db.execute(
        select(Claim).where(Claim.buyer_id == buyer_id).order_by(Claim.id.desc()).limit(limit)
    )
    return list(rows.scalars())


async def replay_flags(db: AsyncSession, session_id: int) -> list[dict[str, Any]]:
    """Claims per product (and pin) of a session: media/ marks those replay chapters."""
    rows = await db.execute(
        select(Claim.product_id, Claim.pin_id, func.count(Claim.id),
               func.sum(func.coalesce(Claim.bad_qty, 0)))
        .where(Claim.session_id == session_id)
        .group_by(Claim.product_id, Claim.pin_id)
        .order_by(Claim.product_id)
    )
    return [{"product_id": pid, "pin_id": pin, "claims": int(n), "bad_units": int(units or 0)}
            for pid, pin, n, units in rows]
