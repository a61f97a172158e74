"""Commission: what a referrer or a 团长 earns on an order, held until the goods are collected.

Rates: a host sets them on his products and sessions, in basis points (0–3000, i.e. 0–30%),
one for referrals and one for the community (团长). An order's rate of a kind is its product's
when set, else its session's, else 0.

Who earns (one beneficiary per order, `beneficiary_for`): the referrer when the order is
attributed to one (commerce/referrals.py) and the referral rate is above 0; else the 团长 of
the order's community (the first appointed, never the buyer herself) when the community rate
is above 0; else nobody (no row).

A commission row moves by conditional UPDATEs only, each derived from the order's state, so
repeating one (a replayed event, the catch-up) changes nothing:
- pending: written when the order is paid (one row per (order, beneficiary), unique);
- due: the order was picked up (or delivered, completed) and is not fully refunded;
- reversed: the order was refunded or cancelled in full. A partial refund (a claim) lowers the
  commission in proportion: `reversed_fen` = amount − amount × (paid − refunded) / paid;
- paid: taken by a payout (`payouts.py`). Money given back after that is recorded on the paid
  row as `reversed_fen` and shown as a claw-back in the payout report.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint, and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce import live_sessions, referrals, refunds
from commerce.accounts import CommunityLeader, Principal
from commerce.base import Base, as_utc, utcnow
from commerce.catalog import Product, ensure_product_owner
from commerce.errors import InvalidInput, NotFound
from commerce.flash_sale.sales import Sale
from commerce.orders import Order, OrderStatus

MAX_RATE_BP = 3000  # 30%
SCOPES = ("product", "session")
KINDS = ("referral", "community")
COLLECTED = (OrderStatus.PICKED_UP.value, OrderStatus.DELIVERED.value,
             OrderStatus.COMPLETED.value)
UNDONE = (OrderStatus.REFUNDED.value, OrderStatus.CANCELLED.value)


class CommissionStatus(enum.StrEnum):
    PENDING = "pending"
    DUE = "due"
    PAID = "paid"
    REVERSED = "reversed"


class CommissionRate(Base):
    __tablename__ = "commission_rates"
    __table_args__ = (UniqueConstraint("scope", "target_id", "kind", name="uq_commission_rates_target"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(12))
    target_id: Mapped[int] = mapped_column()
    kind: Mapped[str] = mapped_column(String(12))
    rate_bp: Mapped[int] = mapped_column()
    set_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    def public_dict(self) -> dict[str, Any]:
        return {"scope": self.scope, "target_id": self.target_id, "kind": self.kind,
                "rate_bp": self.rate_bp, "updated_at": as_utc(self.updated_at).isoformat()}


class Commission(Base):
    __tablename__ = "commissions"
    __table_args__ = (UniqueConstraint("order_id", "beneficiary_id",
                                       name="uq_commissions_order_beneficiary"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    beneficiary_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    # referrer | leader: why this beneficiary earns on this order.
    role: Mapped[str] = mapped_column(String(12))
    # The host of the order's session: whose payouts it belongs to.
    host_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    rate_bp: Mapped[int] = mapped_column()
    base_fen: Mapped[int] = mapped_column(BigInteger)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    reversed_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(12), default=CommissionStatus.PENDING.value, index=True)
    payout_id: Mapped[int | None] = mapped_column(ForeignKey("commission_payouts.id"), nullable=True,
                                                  index=True)
    # What the payout paid for this row (amount − reversed at that moment).
    paid_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    due_at: Mapped[datetime | None] = mapped_column(nullable=True)
    reversed_at: Mapped[datetime | None] = mapped_column(nullable=True)

    @property
    def net_fen(self) -> int:
        return self.amount_fen - self.reversed_fen

    def public_dict(self) -> dict[str, Any]:
        return {"id": self.id, "order_id": self.order_id, "beneficiary_id": self.beneficiary_id,
                "role": self.role, "rate_bp": self.rate_bp, "base_fen": self.base_fen,
                "amount_fen": self.amount_fen, "reversed_fen": self.reversed_fen,
                "net_fen": self.net_fen, "status": self.status, "paid_fen": self.paid_fen,
                "created_at": as_utc(self.created_at).isoformat(),
                "due_at": as_utc(self.due_at).isoformat() if self.due_at else None}


def _insert(db: AsyncSession) -> Any:
    return postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert


def check_rate(scope: str, kind: str, rate_bp: int) -> None:
    if scope not in SCOPES:
        raise InvalidInput("scope 须为 product 或 session / scope must be product or session",
                           field="scope")
    if kind not in KINDS:
        raise InvalidInput("kind 须为 referral 或 community / kind must be referral or community",
                           field="kind")
    if not 0 <= rate_bp <= MAX_RATE_BP:
        raise InvalidInput("佣金比例须在 0–30% / The rate must be 0–30%", field="rate_bp",
                           max_rate_bp=MAX_RATE_BP)


async def ensure_target_owner(db: AsyncSession, scope: str, target_id: int, actor: Principal) -> None:
    if scope == "session":
        session = await live_sessions.get_session(db, target_id)
        live_sessions.ensure_owner(session, actor)
        return
    product = await db.get(Product, target_id)
    if product is None:
        raise NotFound("商品不存在 / No such product")
    ensure_product_owner(product, actor)


async def set_rate(db: AsyncSession, actor: Principal, scope: str, target_id: int, kind: str,
                   rate_bp: int) -> CommissionRate:
    """Set (or change) a rate on the actor's own product or session; one row per target and
    kind, written by one upsert. Orders already paid keep the rate they were written with."""
    check_rate(scope, kind, rate_bp)
    await ensure_target_owner(db, scope, target_id, actor)
    stmt = _insert(db)(CommissionRate).values(
        scope=scope, target_id=target_id, kind=kind, rate_bp=rate_bp, set_by=actor.user_id,
        updated_at=utcnow())
    await db.execute(stmt.on_conflict_do_update(
        index_elements=["scope", "target_id", "kind"],
        set_={"rate_bp": rate_bp, "set_by": actor.user_id, "updated_at": utcnow()}))
    row = (await db.execute(select(CommissionRate).where(
        CommissionRate.scope == scope, CommissionRate.target_id == target_id,
        CommissionRate.kind == kind).execution_options(populate_existing=True))).scalar_one()
    return row


async def rates_of(db: AsyncSession, actor: Principal) -> list[CommissionRate]:
    """The rates on the actor's products and sessions (an admin: all)."""
    query = select(CommissionRate).order_by(CommissionRate.id)
    if not actor.is_admin:
        own_sessions = select(live_sessions.LiveSession.id).where(
            live_sessions.LiveSession.host_id == actor.user_id)
        own_products = select(Product.id).where(Product.owner_id == actor.user_id)
        query = query.where(or_(
            and_(CommissionRate.scope == "session", CommissionRate.target_id.in_(own_sessions)),
            and_(CommissionRate.scope == "product", CommissionRate.target_id.in_(own_products))))
    return list((await db.execute(query)).scalars())


async def rate_for(db: AsyncSession, order: Order, kind: str) -> int:
    """The order's rate of `kind`: its product's, else its session's, else 0."""
    product_id = (await db.execute(select(Sale.product_id).where(Sale.id == order.sale_id))
                  ).scalar_one_or_none()
    for scope, target in (("product", product_id), ("session", order.session_id)):
        if target is None:
            continue
        found = (await db.execute(select(CommissionRate.rate_bp).where(
            CommissionRate.scope == scope, CommissionRate.target_id == target,
            CommissionRate.kind == kind))).scalar_one_or_none()
        if found is not None:
            return found
    return 0


async def leader_of(db: AsyncSession, community_id: int) -> int | None:
    """The community's first appointed 团长."""
    return (await db.execute(select(CommunityLeader.user_id).where(
        CommunityLeader.community_id == community_id).order_by(CommunityLeader.id).limit(1))
            ).scalar_one_or_none()


async def beneficiary_for(db: AsyncSession, order: Order) -> tuple[int, str, int] | None:
    """(beneficiary, role, rate_bp) of the order under the rule above, or None."""
    attribution = await referrals.attribution_of_order(db, order.id)
    if attribution is not None:
        rate = await rate_for(db, order, "referral")
        if rate > 0:
            return attribution.referrer_id, "referrer", rate
    if order.community_id is not None:
        leader = await leader_of(db, order.community_id)
        if leader is not None and leader != order.user_id:
            rate = await rate_for(db, order, "community")
            if rate > 0:
                return leader, "leader", rate
    return None


def commission_of(base_fen: int, rate_bp: int) -> int:
    """Rounded down to the fen: the shop never pays a fraction it did not earn."""
    return base_fen * rate_bp // 10_000


async def on_paid(db: AsyncSession, order: Order) -> Commission | None:
    """Write the order's pending commission (once: the (order, beneficiary) pair is unique)."""
    who = await beneficiary_for(db, order)
    if who is None:
        return None
    beneficiary, role, rate = who
    amount = commission_of(order.amount_fen, rate)
    if amount <= 0:
        return None
    session = await live_sessions.get_session(db, order.session_id)
    await db.execute(_insert(db)(Commission).values(
        order_id=order.id, beneficiary_id=beneficiary, role=role, host_id=session.host_id,
        rate_bp=rate, base_fen=order.amount_fen, amount_fen=amount, reversed_fen=0,
        status=CommissionStatus.PENDING.value, paid_fen=0, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["order_id", "beneficiary_id"]))
    await sync(db, order)
    return (await db.execute(select(Commission).where(Commission.order_id == order.id,
                                                      Commission.beneficiary_id == beneficiary)
                             .execution_options(populate_existing=True))).scalar_one()


def reversed_share(amount_fen: int, base_fen: int, status: str, refunded_fen: int) -> int:
    """How much of a commission of `amount_fen` the order's refunds take back."""
    if status in UNDONE or refunded_fen >= base_fen:
        return amount_fen
    kept = amount_fen * (base_fen - max(refunded_fen, 0)) // base_fen if base_fen > 0 else 0
    return amount_fen - kept


async def sync(db: AsyncSession, order: Order) -> None:
    """Bring the order's commission rows in line with the order (see the module's rules).

    Each move is a conditional UPDATE on the row's status and only ever raises `reversed_fen`,
    so it may run any number of times, concurrently, in any order with a payout."""
    now = utcnow()
    rows = list((await db.execute(select(Commission.id, Commission.amount_fen, Commission.base_fen)
                                  .where(Commission.order_id == order.id))).all())
    for row_id, amount, base in rows:
        taken = reversed_share(amount, base, order.status, order.refunded_fen)
        if taken >= amount:
            await db.execute(update(Commission).where(
                Commission.id == row_id,
                Commission.status.in_((CommissionStatus.PENDING.value, CommissionStatus.DUE.value)))
                .values(status=CommissionStatus.REVERSED.value, reversed_fen=amount,
                        reversed_at=now).execution_options(synchronize_session=False))
        if taken > 0:
            await db.execute(update(Commission).where(
                Commission.id == row_id, Commission.reversed_fen < taken)
                .values(reversed_fen=taken).execution_options(synchronize_session=False))
        if order.status in COLLECTED and taken < amount:
            await db.execute(update(Commission).where(
                Commission.id == row_id, Commission.status == CommissionStatus.PENDING.value)
                .values(status=CommissionStatus.DUE.value, due_at=now)
                .execution_options(synchronize_session=False))
    if order.status in COLLECTED:
        await referrals.note_pickup(db, order.id)


async def catch_up(db: AsyncSession) -> None:
    """Whatever an event missed (a process that died after its commit): pending rows of
    collected orders become due, rows of refunded or cancelled orders are reversed. Same
    conditional moves as `sync`, in bulk."""
    now = utcnow()
    collected = select(Order.id).where(Order.status.in_(COLLECTED),
                                       Order.refunded_fen < Order.amount_fen)
    await db.execute(update(Commission).where(
        Commission.status == CommissionStatus.PENDING.value, Commission.order_id.in_(collected))
        .values(status=CommissionStatus.DUE.value, due_at=now)
        .execution_options(synchronize_session=False))
    undone = select(Order.id).where(Order.status.in_(UNDONE))
    await db.execute(update(Commission).where(
        Commission.status.in_((CommissionStatus.PENDING.value, CommissionStatus.DUE.value)),
        Commission.order_id.in_(undone))
        .values(status=CommissionStatus.REVERSED.value, reversed_fen=Commission.amount_fen,
                reversed_at=now).execution_options(synchronize_session=False))


async def of_order(db: AsyncSession, order_id: int) -> list[Commission]:
    return list((await db.execute(select(Commission).where(Commission.order_id == order_id)
                                  .order_by(Commission.id)
                                  .execution_options(populate_existing=True))).scalars())


async def of_beneficiary(db: AsyncSession, user_id: int, limit: int = 200) -> list[Commission]:
    return list((await db.execute(select(Commission).where(Commission.beneficiary_id == user_id)
                                  .order_by(Commission.id.desc()).limit(limit))).scalars())


async def totals_of(db: AsyncSession, user_id: int) -> dict[str, int]:
    """pending / due / paid / reversed money of one beneficiary, in fen."""
    out = {f"{status.value}_fen": 0 for status in CommissionStatus}
    rows = await db.execute(
        select(Commission.status, func.coalesce(func.sum(Commission.amount_fen - Commission.reversed_fen), 0),
               func.coalesce(func.sum(Commission.paid_fen), 0),
               func.coalesce(func.sum(Commission.reversed_fen), 0))
        .where(Commission.beneficiary_id == user_id).group_by(Commission.status))
    for status, net, paid, reversed_ in rows.all():
        if status == CommissionStatus.PAID.value:
            out["paid_fen"] += int(paid)
        elif status != CommissionStatus.REVERSED.value:
            out[f"{status}_fen"] += int(net)
        out["reversed_fen"] += int(reversed_)
    return out


async def _after_refund(db: AsyncSession, refund: refunds.Refund, _ref: str) -> None:
    # A claim's refund raises the order's refunded_fen without moving its status (the goods were
    # collected): its commission shrinks in the same transaction that finishes the refund.
    order = await db.get(Order, refund.order_id, populate_existing=True) if refund.order_id else None
    if order is not None:
        await sync(db, order)


refunds.on_finish(lambda r: r.order_id is not None and r.kind == refunds.MoneyOut.REFUND.value,
                  _after_refund)
