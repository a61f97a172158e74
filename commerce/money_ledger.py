"""The money ledger: every payment that came in, every refund and transfer that went out, per
order and per provider reference, and the daily reconciliation against a provider's bill.

Payments are written when a provider's verified callback arrives, before the hold is confirmed,
so money that came in for a hold that had lapsed (and went straight back) is in the ledger too.
Refunds and transfers are the rows of commerce/refunds.py; a money-out row belongs to the
provider of the payment it names.

A day is a day in Asia/Shanghai, the providers' bill day. Reconciliation compares the ledger's
lines of that day with the provider's bill (`BillLine`s) by kind and key (our hold id for a
payment, our idempotency key for a refund or transfer) and reports each difference with a stable
code: `missing` (we have it, the bill does not), `extra` (the bill has it, we do not) and
`amount_mismatch`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import String, Text, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.base import Base, as_utc, utcnow
from commerce.orders import Order, UnitOfWork
from commerce.payment_records import Payment
from commerce.payments import BillLine, PaymentCallback, PaymentProvider, TransferLookup, bill_of
from commerce.refunds import Refund, RefundStatus

BILL_ZONE = ZoneInfo("Asia/Shanghai")
MAX_ISSUES_STORED = 500
MAX_RECONCILIATIONS_SHOWN = 50


class PaymentReconciliation(Base):
    """One run of the daily reconciliation for one provider and day, with what it found."""

    __tablename__ = "payment_reconciliations"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(20), index=True)
    day: Mapped[date] = mapped_column(index=True)
    ledger_lines: Mapped[int] = mapped_column(default=0)
    bill_lines: Mapped[int] = mapped_column(default=0)
    issue_count: Mapped[int] = mapped_column(default=0)
    issues_json: Mapped[str] = mapped_column(Text, default="[]")
    ran_at: Mapped[datetime] = mapped_column(default=utcnow)

    def public_dict(self) -> dict[str, Any]:
        return {"id": self.id, "provider": self.provider, "day": self.day.isoformat(),
                "ledger_lines": self.ledger_lines, "bill_lines": self.bill_lines,
                "issue_count": self.issue_count, "issues": json.loads(self.issues_json),
                "ran_at": as_utc(self.ran_at).isoformat()}


@dataclass(frozen=True)
class Issue:
    code: str  # missing | extra | amount_mismatch
    kind: str
    key: str
    provider_ref: str
    ledger_fen: int | None
    bill_fen: int | None

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "kind": self.kind, "key": self.key,
                "provider_ref": self.provider_ref, "ledger_fen": self.ledger_fen,
                "bill_fen": self.bill_fen}


async def record_payment(uow: UnitOfWork, provider: str, callback: PaymentCallback) -> None:
    """Write the payment once (a duplicated callback finds it there)."""
    try:
        async with uow() as db:
            db.add(Payment(provider=provider, provider_ref=callback.payment_ref[:80],
                           hold_id=callback.hold_id[:40], amount_fen=callback.amount_fen))
    except IntegrityError:
        return  # written before (a duplicated callback) or concurrently


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The UTC instants a bill day (Asia/Shanghai) starts and ends."""
    start = datetime.combine(day, time(0), BILL_ZONE)
    end = start + timedelta(days=1)
    return start.astimezone(UTC), end.astimezone(UTC)


def _line_of(row: Refund) -> BillLine:
    return BillLine(kind="transfer" if row.kind == "transfer" else "refund", key=row.key,
                    provider_ref=row.provider_ref, amount_fen=row.amount_fen,
                    at=as_utc(row.done_at or row.created_at))


async def ledger_day(db: AsyncSession, provider: str, day: date) -> list[BillLine]:
    """Our lines of one provider's bill day: payments in, refunds and transfers done."""
    start, end = day_bounds(day)
    payments = list((await db.execute(select(Payment).where(
        Payment.provider == provider, Payment.paid_at >= start, Payment.paid_at < end)
        .order_by(Payment.id))).scalars())
    lines = [BillLine(kind="payment", key=p.hold_id, provider_ref=p.provider_ref,
                      amount_fen=p.amount_fen, at=as_utc(p.paid_at)) for p in payments]
    outs = list((await db.execute(
        select(Refund).where(Refund.provider == provider,
                             Refund.status == RefundStatus.DONE.value,
                             Refund.done_at >= start, Refund.done_at < end)
        .order_by(Refund.id))).scalars())
    lines.extend(_line_of(row) for row in outs)
    return lines


def compare(ledger: list[BillLine], bill: list[BillLine]) -> list[Issue]:
    """Every difference between our lines and the provider's, in a stable order."""
    ours: dict[tuple[str, str], list[BillLine]] = {}
    for line in ledger:
        ours.setdefault((line.kind, line.key), []).append(line)
    theirs: dict[tuple[str, str], list[BillLine]] = {}
    for line in bill:
        theirs.setdefault((line.kind, line.key), []).append(line)
    issues: list[Issue] = []
    for ident in sorted(set(ours) | set(theirs)):
        mine, billed = ours.get(ident, []), theirs.get(ident, [])
        # Several payments for one hold (paid twice) pair up by the provider's reference.
        by_ref = {b.provider_ref: b for b in billed}
        unmatched = list(billed)
        for line in mine:
            match = by_ref.get(line.provider_ref)
            if match is None and len(mine) == 1 and len(billed) == 1:
                match = billed[0]
            if match is None or match not in unmatched:
                issues.append(Issue("missing", line.kind, line.key, line.provider_ref,
                                    line.amount_fen, None))
                continue
            unmatched.remove(match)
            if match.amount_fen != line.amount_fen:
                issues.append(Issue("amount_mismatch", line.kind, line.key,
                                    match.provider_ref or line.provider_ref, line.amount_fen,
                                    match.amount_fen))
        for extra in unmatched:
            issues.append(Issue("extra", extra.kind, extra.key, extra.provider_ref, None,
                                extra.amount_fen))
    return issues


async def reconcile_day(uow: UnitOfWork, provider: PaymentProvider,
                        day: date) -> PaymentReconciliation:
    """Fetch the provider's bill for `day`, compare it with the ledger, store and answer the run.
    A provider whose bill leaves transfers out is asked about each of our transfers of the day
    (its transfer records). Raises ValueError for a provider that offers no bill."""
    billing = bill_of(provider)
    if billing is None:
        raise ValueError(f"provider {provider.name} offers no bill")
    bill = await billing.bill(day)
    async with uow() as db:
        ledger = await ledger_day(db, provider.name, day)
    if isinstance(provider, TransferLookup):
        for line in ledger:
            if line.kind == "transfer":
                found = await provider.transfer_line(line.key)
                if found is not None:
                    bill.append(found)
    issues = compare(ledger, bill)
    run = PaymentReconciliation(
        provider=provider.name, day=day, ledger_lines=len(ledger), bill_lines=len(bill),
        issue_count=len(issues),
        issues_json=json.dumps([i.as_dict() for i in issues[:MAX_ISSUES_STORED]]))
    async with uow() as db:
        db.add(run)
        await db.flush()
        await db.refresh(run)
    return run


async def recent_reconciliations(db: AsyncSession,
                                 limit: int = MAX_RECONCILIATIONS_SHOWN) -> list[PaymentReconciliation]:
    rows = await db.execute(select(PaymentReconciliation)
                            .order_by(PaymentReconciliation.id.desc()).limit(limit))
    return list(rows.scalars())


async def order_ledger(db: AsyncSession, order: Order) -> list[dict[str, Any]]:
    """Everything that moved for one order: its payments (by hold), refunds and transfers."""
    payments = list((await db.execute(select(Payment).where(
        Payment.hold_id == order.hold_id).order_by(Payment.id))).scalars())
    refs = {p.provider_ref for p in payments} | {order.payment_ref}
    outs = list((await db.execute(select(Refund).where(
        (Refund.order_id == order.id) | Refund.payment_ref.in_(refs)).order_by(Refund.id))).scalars())
    entries = [p.public_dict() for p in payments]
    entries.extend({**r.public_dict(), "provider_ref": r.provider_ref} for r in outs)
    return entries


async def reference_ledger(db: AsyncSession, provider_ref: str) -> list[dict[str, Any]]:
    """Everything that moved under one provider reference: the payment and what went back on
    it, or the one refund or transfer the reference names."""
    payments = list((await db.execute(select(Payment).where(
        Payment.provider_ref == provider_ref).order_by(Payment.id))).scalars())
    outs = list((await db.execute(select(Refund).where(
        (Refund.payment_ref == provider_ref) | (Refund.provider_ref == provider_ref))
        .order_by(Refund.id))).scalars())
    entries = [p.public_dict() for p in payments]
    entries.extend({**r.public_dict(), "provider_ref": r.provider_ref} for r in outs)
    return entries
