"""After-sales claims (售后): photo + reason against a picked-up order, auto-approved within policy.

A claim links the order, the batch, and the stream moment (the pin on screen when the order was
paid), and flags that product's replay chapter. Policies are per product. Auto-approval happens
only when every rule in `auto_decision` holds; anything else waits in the assistant queue. The
promised response time is tracked: `due_at` = filed + policy.response_hours, `responded_at` when
decided (at once for auto-approval), overdue when undecided past due or decided late.

Money: payout = unit price × bad units × multiplier ("坏一赔十" = 10). The part up to what is
left of the order is refunded through the payment provider; the rest (`compensation_fen`) is
transferred to the buyer through the provider's transfer, recorded in the same transaction as
the decision and paid after it under the key `transfer:claim:<claim id>`.

Concurrency: the auto-approval limit (ABUSE_MAX_AUTO per ABUSE_WINDOW) is counted under a lock
on the buyer's user row, so a buyer's claims are decided one after another however many arrive
at once; a queued claim is decided by a conditional UPDATE (`WHERE status = 'pending'`), so an
approve racing a reject (or itself) decides once; the refund goes through commerce/refunds.py
under the key `refund:order:<order id>:claim` (one claim per order).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, String, Text, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.accounts import Principal, Role, User
from commerce.base import Base, as_utc, utcnow
from commerce.catalog import Product, get_product
from commerce.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    InvalidState,
    NotFound,
)
from commerce.live_sessions import LiveSession
from commerce.locks import lock_row
from commerce.orders import Order, OrderTransition
from commerce.refunds import MoneyOut, Refund, on_finish, refund_key
from trust import points
from trust.claims_refunds import Refunder
from trust.evidence import fulfilled_order
from trust.trace_signing import iso
from trust.uploads import Upload, claim_uploads, may_read, refuse_read

ABUSE_WINDOW = timedelta(days=30)
ABUSE_MAX_AUTO = 3  # auto-approved claims per buyer per window; more go to a human
DEFAULT_RESPONSE_HOURS = 24
MAX_PHOTOS = 6


class PhotoRequired(DomainError):
    code = "photo_required"
    status = 400
    default_message = "该商品的售后需要上传照片 / This product's after-sales policy requires a photo"


class EmptyClaim(DomainError):
    code = "claim_empty"
    status = 400
    default_message = "请描述问题或上传照片 / Describe the problem or add a photo"


class ClaimClosed(DomainError):
    code = "claim_closed"
    status = 409
    default_message = "该售后已处理,不能再补充 / The claim is already decided"


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
    RESHIPPED = "reshipped"  # the goods are sent again instead of money back


DECIDED = (ClaimStatus.APPROVED.value, ClaimStatus.REJECTED.value, ClaimStatus.RESHIPPED.value)


class Outcome(enum.StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    RESHIP = "reship"


class ReasonRequired(DomainError):
    code = "reason_required"
    status = 400
    default_message = "请填写拒绝或补发的原因 / Give the reason for rejecting or reshipping"


class ClaimPolicy(Base):
    """After-sales promise of one product, set by its host."""

    __tablename__ = "claim_policies"

    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), primary_key=True,
                                            autoincrement=False)
    full_refund_without_return: Mapped[bool] = mapped_column(default=True)
    multiplier: Mapped[int] = mapped_column(default=1)
    max_days_after_pickup: Mapped[int] = mapped_column(default=2)
    auto_approve_max_fen: Mapped[int] = mapped_column(BigInteger, default=10_000)
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
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), unique=True)  # one claim per order
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
    # BIGINT: unit price (10^8) × bad units (1000) × multiplier (10) passes 32 bits.
    payout_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    refund_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    compensation_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    refund_ref: Mapped[str] = mapped_column(String(80), default="")
    compensation_ref: Mapped[str] = mapped_column(String(80), default="")
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
            "refund_ref": self.refund_ref, "compensation_ref": self.compensation_ref,
            "compensation_paid": bool(self.compensation_ref) or not self.compensation_fen,
            "decision_note": self.decision_note,
            "due_at": iso(self.due_at), "responded_at": iso(self.responded_at),
            "overdue": self.overdue(), "created_at": iso(self.created_at),
        }


async def _note_refund(db: AsyncSession, refund: Refund, ref: str) -> None:
    """A claim's refund finished later (by the refund worker): the claim shows its reference."""
    await db.execute(update(Claim).where(Claim.order_id == refund.order_id,
                                         Claim.refund_ref == "").values(refund_ref=ref[:80]))


async def _note_compensation(db: AsyncSession, transfer: Refund, ref: str) -> None:
    """A claim's compensation transferred (at once, or later by the refund worker)."""
    claim_id = int(transfer.key.rsplit(":", 1)[1])
    await db.execute(update(Claim).where(Claim.id == claim_id, Claim.compensation_ref == "")
                     .values(compensation_ref=ref[:80]))


on_finish(lambda r: r.order_id is not None and r.key == refund_key("order", r.order_id, "claim"),
          _note_refund)
on_finish(lambda r: r.kind == MoneyOut.TRANSFER.value and r.key.startswith("transfer:claim:"),
          _note_compensation)


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
    # The first policy of a product is an insert: N saves at once must not all insert it.
    await lock_row(db, Product, product_id)
    policy = await db.get(ClaimPolicy, product_id, populate_existing=True)
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
    """The buyer files; within policy it is approved and refunded at once.

    Everything the policy refuses (no photo where one is required, nothing said at all) is
    refused before anything is written, so the buyer can simply try again."""
    facts = await fulfilled_order(db, order_id, actor)
    order, evidence = facts.order, facts.evidence
    if not 1 <= bad_qty <= order.qty:
        raise InvalidInput(f"数量须为 1–{order.qty} / bad_qty must be 1–{order.qty}", field="bad_qty")
    existing = (await db.execute(select(Claim.id).where(Claim.order_id == order.id))).first()
    if existing is not None:
        raise Conflict("该订单已申请售后 / This order already has a claim", reason="claim_exists",
                       claim_id=existing[0])
    policy = await get_policy(db, evidence.product_id)
    if not photo_ids and policy is not None and policy.require_photo:
        raise PhotoRequired(product_id=evidence.product_id)
    if not photo_ids and not description.strip():
        raise EmptyClaim()
    # One buyer's claims are decided one at a time: the auto-approval count below must see
    # every claim this buyer filed before, even one filed a millisecond ago.
    await lock_row(db, User, actor.user_id)
    photos = await claim_uploads(db, actor, photo_ids, ("claim",), make_public=False)
    now = utcnow()
    decision = await auto_decision(db, policy, order, actor.user_id, facts.picked_up_at, bad_qty,
                                   bool(photos), now)
    hours = policy.response_hours if policy is not None else DEFAULT_RESPONSE_HOURS
    claim = Claim(
        order_id=order.id, buyer_id=actor.user_id, product_id=evidence.product_id,
        batch_id=evidence.batch_id, session_id=evidence.session_id, pin_id=evidence.pin_id,
        pinned_at=evidence.pinned_at, community_id=order.community_id, reason=reason.value,
        description=description, photos=[p.id for p in photos], bad_qty=bad_qty,
        status=ClaimStatus.PENDING.value, auto=decision.auto, rule_notes=decision.notes,
        payout_fen=decision.payout_fen, due_at=now + timedelta(hours=hours), created_at=now,
    )
    db.add(claim)
    try:
        await db.flush()
    except IntegrityError:
        raise Conflict("该订单已申请售后 / This order already has a claim",
                       reason="claim_exists") from None
    await _link_photos(db, claim, [p.id for p in photos])
    if decision.auto:
        await _approve(db, refunder, claim, order, decision.payout_fen, None, "自动通过 / auto-approved")
    return claim


async def _link_photos(db: AsyncSession, claim: Claim, photo_ids: list[int]) -> None:
    """Attach photos to one claim, each only if it is attached to none (a conditional UPDATE:
    two claims racing for one photo cannot both get it)."""
    if not photo_ids:
        return
    linked = await db.execute(
        update(Upload).where(Upload.id.in_(photo_ids), Upload.claim_id.is_(None))
        .values(claim_id=claim.id).execution_options(synchronize_session=False)
    )
    if linked.rowcount != len(photo_ids):  # type: ignore[attr-defined]
        # A photo is readable by the parties of its one claim; sharing it would widen that.
        raise Conflict("照片已用于另一售后 / A photo is already attached to another claim",
                       reason="photo_in_use")


async def add_photos(db: AsyncSession, actor: Principal, claim_id: int, photo_ids: list[int]) -> Claim:
    """The buyer adds photos to their own claim while it waits for a decision."""
    claim = await get_claim(db, claim_id)
    if claim.buyer_id != actor.user_id:
        raise Forbidden("这不是你的售后 / Not your claim")
    await lock_row(db, Claim, claim_id)  # two uploads at once must both land in `photos`
    claim = await get_claim(db, claim_id, fresh=True)
    if claim.status != ClaimStatus.PENDING.value:
        raise ClaimClosed(status=claim.status)
    new = [pid for pid in dict.fromkeys(photo_ids) if pid not in (claim.photos or [])]
    if len(claim.photos or []) + len(new) > MAX_PHOTOS:
        raise InvalidInput(f"最多 {MAX_PHOTOS} 张照片 / At most {MAX_PHOTOS} photos", field="photos")
    photos = await claim_uploads(db, actor, new, ("claim",), make_public=False)
    await _link_photos(db, claim, [p.id for p in photos])
    claim.photos = [*(claim.photos or []), *(p.id for p in photos)]
    await db.flush()
    return claim


async def _approve(
    db: AsyncSession, refunder: Refunder, claim: Claim, order: Order, payout_fen: int,
    actor: Principal | None, note: str,
) -> None:
    """Record the decision and the refund together, commit, then pay (commerce/refunds.py)."""
    refund = await refunder.reserve(db, order, payout_fen, f"claim {claim.id}", actor,
                                    refund_key("order", order.id, "claim"))
    claim.status = ClaimStatus.APPROVED.value
    claim.payout_fen = payout_fen
    claim.refund_fen = refund.amount_fen
    claim.compensation_fen = max(0, payout_fen - refund.amount_fen)
    transfer = None
    if claim.compensation_fen:
        transfer = await refunder.reserve_compensation(
            db, order, claim.id, claim.compensation_fen, f"claim {claim.id} compensation")
    claim.decided_by = actor.user_id if actor else None
    claim.decision_note = note[:500]
    claim.responded_at = utcnow()
    # Money went back on this order: the trust points it earned go back in the same commit.
    await points.reverse_for_order(db, order.id, f"售后退款 / refund (claim {claim.id})")
    await db.flush()
    claim.refund_ref = await refunder.pay(db, refund)
    if transfer is not None:
        claim.compensation_ref = await refunder.pay(db, transfer)
    await db.flush()


def ensure_can_decide(actor: Principal) -> None:
    if actor.role not in (Role.ADMIN, Role.ASSISTANT):
        raise Forbidden("只有助理或管理员可以处理售后 / Only assistants or admins handle claims")


async def decide(
    db: AsyncSession, refunder: Refunder, actor: Principal, claim_id: int,
    outcome: Outcome | bool, note: str = "", payout_fen: int | None = None,
) -> Claim:
    """An assistant approves (refund executed), rejects or reships a queued claim; decided once.

    A rejection or a reship says why (the buyer reads it on the order); a reship pays nothing
    and is written into the order's history, so the pickup staff see the goods go out again."""
    ensure_can_decide(actor)
    if isinstance(outcome, bool):
        outcome = Outcome.APPROVE if outcome else Outcome.REJECT
    note = note.strip()
    if outcome is not Outcome.APPROVE and not note:
        raise ReasonRequired(field="note")
    claim = await get_claim(db, claim_id)
    order = await db.get(Order, claim.order_id)
    if order is None:
        raise NotFound("订单不存在 / No such order")
    payout = claim.payout_fen if payout_fen is None else payout_fen
    if outcome is Outcome.APPROVE:
        policy = await get_policy(db, claim.product_id)
        ceiling = order.unit_price_fen * claim.bad_qty * max(policy.multiplier if policy else 1, 1)
        if not 0 < payout <= ceiling:
            raise InvalidInput(f"赔付须为 1–{ceiling} 分 / payout_fen must be 1–{ceiling}",
                               field="payout_fen")
    # The decision is claimed first: of N approvals and rejections at once, one moves the claim.
    status = {Outcome.APPROVE: ClaimStatus.APPROVED, Outcome.REJECT: ClaimStatus.REJECTED,
              Outcome.RESHIP: ClaimStatus.RESHIPPED}[outcome]
    claimed = await db.execute(
        update(Claim).where(Claim.id == claim_id, Claim.status == ClaimStatus.PENDING.value)
        .values(status=status.value, decided_by=actor.user_id, decision_note=note[:500],
                responded_at=utcnow()).execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        current = (await db.execute(select(Claim.status).where(Claim.id == claim_id))).scalar_one()
        raise InvalidState("该售后已处理 / Claim already decided", status=current)
    claim = await get_claim(db, claim_id, fresh=True)
    if outcome is Outcome.APPROVE:
        await _approve(db, refunder, claim, order, payout, actor, note)
    elif outcome is Outcome.RESHIP:
        db.add(OrderTransition(order_id=order.id, from_status=order.status, to_status=order.status,
                               actor_id=actor.user_id,
                               note=f"售后 #{claim.id} 补发 / reshipped: {note}"[:200]))
        await db.flush()
    return claim


async def get_claim(db: AsyncSession, claim_id: int, fresh: bool = False) -> Claim:
    claim = await db.get(Claim, claim_id, populate_existing=fresh)
    if claim is None:
        raise NotFound("售后不存在 / No such claim")
    return claim


async def claims_by_order(db: AsyncSession, order_ids: list[int]) -> dict[int, Claim]:
    """The claim of each order that has one (the orders page shows its status)."""
    if not order_ids:
        return {}
    rows = await db.execute(select(Claim).where(Claim.order_id.in_(order_ids)))
    return {claim.order_id: claim for claim in rows.scalars()}


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


async def queue(db: AsyncSession, statuses: tuple[str, ...] | None, limit: int = 100,
                host_id: int | None = None) -> list[Claim]:
    """The assistant queue: oldest due first, so the promised response time is kept.

    With `host_id`, only the claims on that host's sessions (what a host may see)."""
    query = select(Claim)
    if host_id is not None:
        query = query.join(LiveSession, LiveSession.id == Claim.session_id).where(
            LiveSession.host_id == host_id)
    if statuses is not None:
        query = query.where(Claim.status.in_(statuses))
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
