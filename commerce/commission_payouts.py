"""Paying out commissions that are due: the payout report and the payout itself.

A payout pays one beneficiary everything due to her in the payer's scope (a host: commissions
on orders of his own sessions; an admin: the whole shop) for one period (`YYYY-MM` or
`YYYY-MM-DD`, the host's choice). The period is the business fact: one payout per
(beneficiary, period, payer scope), held by a unique constraint, so twenty payout requests at
once pay once; the others answer with the payout already made. In the transaction that writes
the payout the due rows are claimed by a conditional UPDATE (due → paid), so a row is never in
two payouts, and a row refunded meanwhile is either claimed (then a claw-back) or reversed.

Method `transfer`: the money leaves through the payment provider's transfer under the key
`commission:<beneficiary>:<period>` (commerce/refunds.py: recorded first, called after the
commit, retried by the refund worker), and the payout is marked paid when the provider confirms.
Method `manual` (no provider account for her, paid in cash or by bank): marked paid at once,
with the payer's note saying how.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce import refunds
from commerce.accounts import Principal, Role, User
from commerce.base import Base, as_utc, utcnow
from commerce.commissions import Commission, CommissionStatus, catch_up
from commerce.errors import InvalidInput, InvalidState, NotFound
from commerce.orders import UnitOfWork
from commerce.payments import PaymentProvider

PERIOD_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?$"
_PERIOD = re.compile(PERIOD_PATTERN)
KEY_PREFIX = "commission:"
MAX_REPORT = 500


class PayoutMethod(enum.StrEnum):
    TRANSFER = "transfer"
    MANUAL = "manual"


class NothingDue(InvalidState):
    code = "nothing_due"
    default_message = "没有可结算的佣金 / Nothing is due to this beneficiary"


class CommissionPayout(Base):
    __tablename__ = "commission_payouts"
    __table_args__ = (UniqueConstraint("beneficiary_id", "period", "payer_host_id",
                                       name="uq_commission_payouts_fact"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    beneficiary_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    period: Mapped[str] = mapped_column(String(10))
    # The host whose commissions this pays; 0: the whole shop (an admin's payout).
    payer_host_id: Mapped[int] = mapped_column(default=0)
    method: Mapped[str] = mapped_column(String(12))
    note: Mapped[str] = mapped_column(String(200), default="")
    amount_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    rows: Mapped[int] = mapped_column(default=0)
    # pending until the provider confirms a transfer; paid
    status: Mapped[str] = mapped_column(String(12), default="pending")
    transfer_key: Mapped[str] = mapped_column(String(120), default="")
    provider_ref: Mapped[str] = mapped_column(String(80), default="")
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(nullable=True)

    def public_dict(self) -> dict[str, Any]:
        return {"id": self.id, "beneficiary_id": self.beneficiary_id, "period": self.period,
                "payer_host_id": self.payer_host_id or None, "method": self.method,
                "note": self.note, "amount_fen": self.amount_fen, "rows": self.rows,
                "status": self.status, "transfer_key": self.transfer_key or None,
                "provider_ref": self.provider_ref or None,
                "created_at": as_utc(self.created_at).isoformat(),
                "paid_at": as_utc(self.paid_at).isoformat() if self.paid_at else None}


def payer_scope(actor: Principal) -> int:
    """0 for the shop's staff (all commissions), else the host's own id."""
    return 0 if actor.role in (Role.ADMIN, Role.ASSISTANT) else actor.user_id


def transfer_key(beneficiary_id: int, period: str, scope: int) -> str:
    key = f"{KEY_PREFIX}{beneficiary_id}:{period}"
    return key if scope == 0 else f"{key}:host-{scope}"


def check_period(period: str) -> None:
    if not _PERIOD.match(period):
        raise InvalidInput("期间须为 YYYY-MM 或 YYYY-MM-DD / period must be YYYY-MM or YYYY-MM-DD",
                           field="period")


async def find(db: AsyncSession, beneficiary_id: int, period: str, scope: int) -> CommissionPayout | None:
    return (await db.execute(select(CommissionPayout).where(
        CommissionPayout.beneficiary_id == beneficiary_id, CommissionPayout.period == period,
        CommissionPayout.payer_host_id == scope)
        .execution_options(populate_existing=True))).scalar_one_or_none()


async def pay(uow: UnitOfWork, provider: PaymentProvider, actor: Principal, beneficiary_id: int,
              period: str, method: PayoutMethod, note: str = "") -> tuple[CommissionPayout, bool]:
    """Pay what is due (see the module's rules); (payout, made by this call)."""
    check_period(period)
    note = note.strip()
    if method is PayoutMethod.MANUAL and not note:
        raise InvalidInput("线下结算须写明方式 / A manual payout needs a note", field="note")
    scope = payer_scope(actor)
    transfer: refunds.Refund | None = None
    async with uow() as db:
        if await db.get(User, beneficiary_id) is None:
            raise NotFound("用户不存在 / No such user")
        await catch_up(db)
    try:
        async with uow() as db:
            payout = CommissionPayout(
                beneficiary_id=beneficiary_id, period=period, payer_host_id=scope,
                method=method.value, note=note[:200], created_by=actor.user_id,
                status="pending", created_at=utcnow())
            db.add(payout)
            await db.flush()  # the unique fact: a concurrent payout of the same period stops here
            where = [Commission.beneficiary_id == beneficiary_id,
                     Commission.status == CommissionStatus.DUE.value]
            if scope:
                where.append(Commission.host_id == scope)
            await db.execute(update(Commission).where(*where).values(
                status=CommissionStatus.PAID.value, payout_id=payout.id,
                paid_fen=Commission.amount_fen - Commission.reversed_fen)
                .execution_options(synchronize_session=False))
            total, count = (await db.execute(select(
                func.coalesce(func.sum(Commission.paid_fen), 0), func.count(Commission.id))
                .where(Commission.payout_id == payout.id))).one()
            if int(total) <= 0:
                raise NothingDue(beneficiary_id=beneficiary_id)  # rolls the payout back
            payout.amount_fen, payout.rows = int(total), int(count)
            if method is PayoutMethod.TRANSFER:
                payout.transfer_key = transfer_key(beneficiary_id, period, scope)
                transfer = await refunds.record_transfer(
                    db, payout.transfer_key, refunds.payee_of(beneficiary_id), payout.amount_fen,
                    f"佣金 commission {period}")
            else:
                payout.status, payout.paid_at = "paid", utcnow()
    except IntegrityError:
        async with uow() as db:
            again = await find(db, beneficiary_id, period, scope)
        if again is None:
            raise
        return again, False
    if transfer is not None:
        await refunds.execute_or_defer(uow, provider, transfer)
        async with uow() as db:
            fresh = await find(db, beneficiary_id, period, scope)
        assert fresh is not None
        return fresh, True
    return payout, True


async def _transfer_done(db: AsyncSession, refund: refunds.Refund, ref: str) -> None:
    await db.execute(update(CommissionPayout).where(
        CommissionPayout.transfer_key == refund.key, CommissionPayout.status == "pending")
        .values(status="paid", provider_ref=ref[:80], paid_at=utcnow())
        .execution_options(synchronize_session=False))


refunds.on_finish(lambda r: r.kind == refunds.MoneyOut.TRANSFER.value and r.key.startswith(KEY_PREFIX),
                  _transfer_done)


async def report(db: AsyncSession, actor: Principal) -> list[dict[str, Any]]:
    """Per beneficiary in the actor's scope: pending, due, paid, reversed and claw-back money
    (paid rows whose order gave money back after the payout)."""
    await catch_up(db)
    scope = payer_scope(actor)
    net = Commission.amount_fen - Commission.reversed_fen
    query = (select(Commission.beneficiary_id, Commission.status, func.count(Commission.id),
                    func.coalesce(func.sum(net), 0), func.coalesce(func.sum(Commission.paid_fen), 0),
                    func.coalesce(func.sum(Commission.reversed_fen), 0))
             .group_by(Commission.beneficiary_id, Commission.status))
    if scope:
        query = query.where(Commission.host_id == scope)
    people: dict[int, dict[str, Any]] = {}
    for beneficiary, status, count, net_sum, paid, reversed_ in (await db.execute(query)).all():
        row = people.setdefault(beneficiary, {
            "beneficiary_id": beneficiary, "orders": 0, "pending_fen": 0, "due_fen": 0,
            "paid_fen": 0, "reversed_fen": 0, "clawback_fen": 0})
        row["orders"] += int(count)
        row["reversed_fen"] += int(reversed_)
        if status == CommissionStatus.PAID.value:
            row["paid_fen"] += int(paid)
            row["clawback_fen"] += int(paid) - int(net_sum)
        elif status in (CommissionStatus.PENDING.value, CommissionStatus.DUE.value):
            row[f"{status}_fen"] += int(net_sum)
    if people:
        users = await db.execute(select(User.id, User.username, User.display_name)
                                 .where(User.id.in_(list(people))))
        for user_id, username, display in users.all():
            people[user_id].update(username=username, display_name=display or username)
    ordered = sorted(people.values(), key=lambda r: (-r["due_fen"], r["beneficiary_id"]))
    return ordered[:MAX_REPORT]


async def payouts_of(db: AsyncSession, actor: Principal, limit: int = 100) -> list[CommissionPayout]:
    query = select(CommissionPayout).order_by(CommissionPayout.id.desc()).limit(limit)
    scope = payer_scope(actor)
    if scope:
        query = query.where(CommissionPayout.payer_host_id == scope)
    return list((await db.execute(query)).scalars())


REPORT_COLUMNS = ("beneficiary_id", "username", "display_name", "orders", "pending_fen", "due_fen",
                  "paid_fen", "reversed_fen", "clawback_fen")
