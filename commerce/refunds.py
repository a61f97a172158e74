"""Money out: every provider refund is a row here before the provider is called.

The rule, for every path that gives money back (staff refund or cancel, claims, group-buy price
differences, payments returned for lapsed or duplicated holds):

1. In one transaction, the business state is claimed atomically (the order row is locked and
   re-read, or its status moved by a conditional UPDATE) and a `refunds` row is written,
   `pending`, under an idempotency key derived from the business fact (`refund_key`). The key is
   unique: a second writer of the same fact finds the first one's row instead of a new refund.
2. After that commit, the provider is called with that key.
3. The row is marked `done` with the provider's reference (a conditional UPDATE).

A process that dies between 1 and 3, or a provider that fails at 2, leaves a `pending` row (the
request still answers with its committed decision): `settle_pending` (the refund worker, every
few seconds in every process) calls the provider again with the same key, which answers the
same refund, and finishes the row; so nothing is lost and nothing is paid twice.

Each row names the provider that took the money it gives back (the provider of its payment, from
the payments ledger), and is paid through that provider whichever one buyers choose today.

A transfer to a buyer with no account at that provider (`NoPayeeAccount`) is not retried: when
the order still has that much left to refund, it is paid back onto the order's payment instead
(no account needed); otherwise the row waits, `awaiting_payee` (待领取) with its reason, until
the buyer links an account and asks for it (`receive`).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.base import Base, as_utc, utcnow
from commerce.locks import lock_row
from commerce.orders import SOLD_STATES, Order, OrderStatus, OrderTransition, UnitOfWork
from commerce.payment_records import provider_of_payment
from commerce.payments import NoPayeeAccount, PaymentProvider, PaymentProviders, providers_of

log = logging.getLogger(__name__)
# A pending row younger than this is probably still being settled by the request that wrote it.
SETTLE_AFTER = timedelta(seconds=10)
SETTLE_BATCH = 100

# What else a finished refund or transfer settles (a claim's refund_ref, its compensation_ref),
# chosen by its key. The modules building on this one register here, so it imports none of them.
FinishHook = Callable[[AsyncSession, "Refund", str], Awaitable[None]]
_finish_hooks: list[tuple[Callable[[Refund], bool], FinishHook]] = []


def on_finish(matches: Callable[[Refund], bool], hook: FinishHook) -> None:
    """Run `hook(db, refund, provider_ref)` in the transaction that marks done a row for which
    `matches(row)` holds."""
    _finish_hooks.append((matches, hook))


class RefundStatus(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    # A transfer no provider account can receive yet (待领取): the buyer must link one.
    AWAITING_PAYEE = "awaiting_payee"


Providers = PaymentProviders | PaymentProvider


class MoneyOut(enum.StrEnum):
    REFUND = "refund"  # back onto the payment, at most what it was
    TRANSFER = "transfer"  # to the buyer's own account: compensation beyond the price


class Refund(Base):
    """Every fen that leaves us: refunds against a payment, and transfers (compensation)."""

    __tablename__ = "refunds"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The business fact this refund gives money back for; the provider's idempotency key.
    key: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(12), default=MoneyOut.REFUND.value)
    # For a transfer: whom to pay (`user:<id>`); empty for a refund (it goes where it came from).
    payee: Mapped[str] = mapped_column(String(80), default="")
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), nullable=True, index=True)
    payment_ref: Mapped[str] = mapped_column(String(80))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(16), default=RefundStatus.PENDING.value, index=True)
    provider_ref: Mapped[str] = mapped_column(String(80), default="")
    # The provider that took the money this gives back ("" for rows older than that record).
    provider: Mapped[str] = mapped_column(String(20), default="", server_default="")
    # Why an awaiting_payee transfer waits (the provider's error code).
    waiting_reason: Mapped[str] = mapped_column(String(40), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(nullable=True)

    def public_dict(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "order_id": self.order_id,
                "amount_fen": self.amount_fen, "provider": self.provider,
                "status": self.status, "provider_ref": self.provider_ref,
                "waiting_reason": self.waiting_reason or None,
                "created_at": as_utc(self.created_at).isoformat()}


def refund_key(kind: str, subject: int | str, detail: str = "") -> str:
    """`refund:order:12:refunded`, `refund:order:12:claim`, `refund:payment:sim_ab:returned`."""
    return ":".join(str(part) for part in ("refund", kind, subject, detail) if part != "")


def compensation_key(claim_id: int) -> str:
    """The one transfer an approved claim can make beyond its refund."""
    return f"transfer:claim:{claim_id}"


def payee_of(user_id: int) -> str:
    return f"user:{user_id}"


async def record_transfer(db: AsyncSession, key: str, payee: str, amount_fen: int, reason: str,
                          order_id: int | None = None, payment_ref: str = "") -> Refund:
    """Step 1 for a transfer, like `record`; the caller has claimed the business fact."""
    found = await find(db, key)
    if found is not None:
        return found
    row = Refund(key=key, kind=MoneyOut.TRANSFER.value, payee=payee, order_id=order_id,
                 payment_ref=payment_ref, amount_fen=amount_fen, reason=reason[:200],
                 provider=await provider_of_payment(db, payment_ref))
    db.add(row)
    await db.flush()
    return row


def provider_for(providers: Providers, row: Refund) -> PaymentProvider:
    """The provider that took the money `row` gives back; LookupError when it is no longer
    configured (the row stays pending and is logged until it is)."""
    registry = providers_of(providers)
    if row.provider and registry.find(row.provider) is None:
        raise LookupError(f"payment provider {row.provider!r} is not configured")
    return registry.for_money(row.provider)


async def _provider_call(providers: Providers, row: Refund) -> str:
    provider = provider_for(providers, row)
    if row.kind == MoneyOut.TRANSFER.value:
        return await provider.transfer(row.payee, row.amount_fen, row.reason, row.key)
    return await provider.refund(row.payment_ref, row.amount_fen, row.reason, row.key)
def rebate_key(order_id: int, group_id: int | str) -> str:
    """The key of a group-buy's price rebate on one order (the group price paid after the fact)."""
    return refund_key("order", order_id, f"group-{group_id}")


def is_price_rebate(key: str) -> bool:
    """A rebate gives back part of the price of goods the buyer keeps: not a return."""
    parts = key.split(":")
    return len(parts) == 4 and parts[:2] == ["refund", "order"] and parts[3].startswith("group-")


async def record(db: AsyncSession, key: str, payment_ref: str, amount_fen: int, reason: str,
                 order_id: int | None = None) -> Refund:
    """Write the pending row (step 1) in the caller's transaction, or find the one written before."""
    found = await find(db, key)
    if found is not None:
        return found
    row = Refund(key=key, order_id=order_id, payment_ref=payment_ref, amount_fen=amount_fen,
                 reason=reason[:200], provider=await provider_of_payment(db, payment_ref))
    db.add(row)
    await db.flush()
    return row


async def find(db: AsyncSession, key: str) -> Refund | None:
    return (await db.execute(select(Refund).where(Refund.key == key))).scalar_one_or_none()


async def execute(uow: UnitOfWork, providers: Providers, refund: Refund) -> str:
    """Steps 2 and 3 for a committed pending row; safe to repeat. "" when the transfer waits
    for the buyer's account (the row is then awaiting_payee, or paid as a refund)."""
    if refund.status == RefundStatus.DONE:
        return refund.provider_ref
    try:
        ref = await _provider_call(providers, refund)
    except NoPayeeAccount as exc:
        return await _no_payee(uow, providers, refund, exc)
    async with uow() as db:
        await finish(db, refund, ref, provider_for(providers, refund).name)
    return ref


async def call_provider(providers: Providers, refund: Refund) -> str:
    """Step 2 for the request that recorded the refund: the decision is already committed, so
    a provider that fails now does not undo it; the row stays pending for the refund worker
    and "" is returned. `NoPayeeAccount` is raised: it is not retried (`park`)."""
    try:
        return await _provider_call(providers, refund)
    except NoPayeeAccount:
        raise
    except Exception:
        log.warning("provider refund failed; the refund worker will retry it",
                    extra={"refund_key": refund.key}, exc_info=True)
        return ""


async def execute_or_defer(uow: UnitOfWork, providers: Providers, refund: Refund) -> str:
    """`execute`, leaving the row to the refund worker when the provider fails."""
    if refund.status == RefundStatus.DONE:
        return refund.provider_ref
    try:
        ref = await call_provider(providers, refund)
    except NoPayeeAccount as exc:
        return await _no_payee(uow, providers, refund, exc)
    if ref:
        async with uow() as db:
            await finish(db, refund, ref, provider_for(providers, refund).name)
    return ref


def _reason(exc: NoPayeeAccount) -> str:
    return str(exc.details.get("reason") or exc.code)[:40]


async def _no_payee(uow: UnitOfWork, providers: Providers, refund: Refund,
                    exc: NoPayeeAccount) -> str:
    """A transfer the provider cannot deliver for want of the buyer's account: onto the
    order's payment when it has room, else it waits (待领取)."""
    async with uow() as db:
        converted = await park(db, refund, _reason(exc))
    if not converted:
        return ""
    return await execute_or_defer(uow, providers, refund)


async def park(db: AsyncSession, refund: Refund, reason: str) -> bool:
    """In the caller's transaction, for a pending transfer no account can receive: when its
    order still has `amount_fen` left to refund (under the order's lock), it becomes a refund
    onto the order's payment and stays pending (True: pay it now); otherwise it becomes
    awaiting_payee with `reason` (False). A row no longer pending is left as it is."""
    if refund.kind == MoneyOut.TRANSFER.value and refund.order_id is not None \
            and await lock_row(db, Order, refund.order_id):
        order = await db.get(Order, refund.order_id, populate_existing=True)
        fresh = await db.get(Refund, refund.id, populate_existing=True)
        if fresh is None or fresh.status != RefundStatus.PENDING:
            return False
        if fresh.kind == MoneyOut.REFUND.value:
            # Made a refund by a concurrent caller: pay it (the key keeps it once).
            refund.kind, refund.payment_ref, refund.provider = (fresh.kind, fresh.payment_ref,
                                                                fresh.provider)
            return True
        if order is not None and order.payment_ref \
                and order.amount_fen - order.refunded_fen >= fresh.amount_fen:
            order.refunded_fen += fresh.amount_fen
            fresh.kind, fresh.payment_ref = MoneyOut.REFUND.value, order.payment_ref
            fresh.provider = await provider_of_payment(db, order.payment_ref) or fresh.provider
            db.add(OrderTransition(
                order_id=order.id, from_status=order.status, to_status=order.status,
                actor_id=None, note=f"赔付改为退回原支付 compensation refunded onto the payment "
                                    f"{fresh.amount_fen}fen [{fresh.key}]"[:200]))
            await db.flush()
            refund.kind, refund.payment_ref, refund.provider = (fresh.kind, fresh.payment_ref,
                                                                fresh.provider)
            return True
    parked = await db.execute(
        update(Refund).where(Refund.id == refund.id, Refund.status == RefundStatus.PENDING.value,
                             Refund.kind == MoneyOut.TRANSFER.value)
        .values(status=RefundStatus.AWAITING_PAYEE.value, waiting_reason=reason[:40]))
    if parked.rowcount != 1:  # type: ignore[attr-defined]
        return False
    refund.status, refund.waiting_reason = RefundStatus.AWAITING_PAYEE.value, reason[:40]
    log.info("compensation awaits the buyer's account",
             extra={"refund_key": refund.key, "reason": reason})
    return False


async def receive(uow: UnitOfWork, providers: Providers, key: str, user_id: int) -> Refund:
    """The buyer asks for a transfer that waits for her account (after linking WeChat or
    Alipay): it is tried again once, by whoever moves it back to pending first (a conditional
    UPDATE), with its unchanged key. Still no account: it waits again and NoPayeeAccount is
    raised. Answers the row as it stands after."""
    async with uow() as db:
        moved = await db.execute(
            update(Refund).where(Refund.key == key, Refund.payee == payee_of(user_id),
                                 Refund.status == RefundStatus.AWAITING_PAYEE.value)
            .values(status=RefundStatus.PENDING.value, waiting_reason=""))
        won = moved.rowcount == 1  # type: ignore[attr-defined]
        row = await find(db, key)
    if row is None or row.payee != payee_of(user_id):
        raise LookupError(key)
    if won:
        await execute_or_defer(uow, providers, row)
        async with uow() as db:
            row = await find(db, key)
        assert row is not None
        if row.status == RefundStatus.AWAITING_PAYEE:
            raise NoPayeeAccount(reason=row.waiting_reason or "no_payee_account")
    return row


async def finish(db: AsyncSession, refund: Refund, ref: str, provider: str = "") -> bool:
    """Mark the row done (first finisher wins) and put the provider's reference in its order's
    history; False when someone else finished it. `provider` fills in a row that named none."""
    values: dict[str, Any] = {"status": RefundStatus.DONE.value, "provider_ref": ref[:80],
                              "done_at": utcnow()}
    if provider and not refund.provider:
        values["provider"] = provider
        refund.provider = provider
    done = await db.execute(
        update(Refund).where(Refund.id == refund.id, Refund.status == RefundStatus.PENDING.value)
        .values(**values)
    )
    refund.status, refund.provider_ref = RefundStatus.DONE.value, ref[:80]
    if done.rowcount != 1:  # type: ignore[attr-defined]
        return False
    for matches, hook in _finish_hooks:
        if matches(refund):
            await hook(db, refund, ref)
    if refund.order_id is not None:
        order = await db.get(Order, refund.order_id)
        if order is not None:
            what = ("赔付到账 compensation" if refund.kind == MoneyOut.TRANSFER.value
                    else "退款到账 refund")
            db.add(OrderTransition(
                order_id=order.id, from_status=order.status, to_status=order.status, actor_id=None,
                note=f"{what} {ref} {refund.amount_fen}fen ({refund.reason})"[:200]))
    return True


async def pay_out(uow: UnitOfWork, providers: Providers, key: str, payment_ref: str,
                  amount_fen: int, reason: str, order_id: int | None = None) -> str:
    """All three steps for money that needs no state claimed first (a payment that came in for
    a hold that was gone or already paid): record, call, finish."""
    try:
        async with uow() as db:
            row = await record(db, key, payment_ref, amount_fen, reason, order_id)
    except IntegrityError:
        # The same fact recorded concurrently (a duplicated callback): settle theirs.
        async with uow() as db:
            again = await find(db, key)
        if again is None:
            raise
        row = again
    return await execute(uow, providers, row)


async def refund_difference(uow: UnitOfWork, providers: Providers, order_id: int,
                            unit_price_fen: int, note: str, key: str) -> int:
    """Charge a lower unit price after the fact (a group-buy succeeded): refund the difference,
    at most what is left of the order. Returns the fen refunded by this call.

    `key` names the fact (one group-buy outcome for one order): run twice, concurrently or after
    a crash, the second run finds the refund already recorded under the order's lock."""
    async with uow() as db:
        await lock_row(db, Order, order_id)
        order = await db.get(Order, order_id, populate_existing=True)
        if order is None:
            return 0
        existing = await find(db, key)
        if existing is None:
            owed = (order.unit_price_fen - unit_price_fen) * order.qty
            diff = min(owed, order.amount_fen - order.refunded_fen)
            if diff <= 0 or OrderStatus(order.status) not in SOLD_STATES:
                return 0
            order.refunded_fen += diff
            db.add(OrderTransition(order_id=order.id, from_status=order.status,
                                   to_status=order.status, actor_id=None,
                                   note=f"{note}: refund {diff}fen [{key}]"[:200]))
            existing = await record(db, key, order.payment_ref, diff, note, order.id)
        elif existing.status != RefundStatus.PENDING:
            return 0
    await execute_or_defer(uow, providers, existing)
    return existing.amount_fen


async def settle_pending(uow: UnitOfWork, providers: Providers,
                         older_than: timedelta = SETTLE_AFTER) -> int:
    """The refund worker: finish every pending row left by a process that died after step 1."""
    cutoff = utcnow() - older_than
    async with uow() as db:
        rows = list((await db.execute(
            select(Refund).where(Refund.status == RefundStatus.PENDING.value)
            .order_by(Refund.id).limit(SETTLE_BATCH))).scalars())
    settled = 0
    for row in rows:
        if as_utc(row.created_at) > cutoff:
            continue
        try:
            await execute(uow, providers, row)
            settled += 1
        except Exception:
            log.exception("refund retry failed", extra={"refund_key": row.key})
    return settled


async def refunds_of_order(db: AsyncSession, order_id: int) -> list[Refund]:
    rows = await db.execute(select(Refund).where(Refund.order_id == order_id).order_by(Refund.id))
    return list(rows.scalars())


PROVIDER_OUTCOMES = {"SUCCESS": "退款成功 refund succeeded", "CLOSED": "退款关闭 refund closed",
                     "ABNORMAL": "退款异常 refund abnormal"}


async def note_provider_outcome(uow: UnitOfWork, key: str, outcome: str, ref: str) -> bool:
    """A provider's later word on a refund (WeChat Pay's refund notification): a pending row
    it reports done is finished, and the outcome goes into the order's history once (a
    repeated notification finds the note there). False for a key we never recorded."""
    text = PROVIDER_OUTCOMES.get(outcome)
    async with uow() as db:
        row = await find(db, key)
        if row is None or text is None:
            return False
        if outcome == "SUCCESS" and row.status == RefundStatus.PENDING.value and ref:
            await finish(db, row, ref)
        if row.order_id is None:
            return True
        # Locked: two deliveries of one notification must not both find no note and add one.
        if not await lock_row(db, Order, row.order_id):
            return True
        order = await db.get(Order, row.order_id)
        if order is None:
            return True
        note = f"{text} {ref} {row.amount_fen}fen"[:200]
        seen = await db.execute(select(OrderTransition.id).where(
            OrderTransition.order_id == order.id, OrderTransition.note == note))
        if seen.first() is None:
            db.add(OrderTransition(order_id=order.id, from_status=order.status,
                                   to_status=order.status, actor_id=None, note=note))
    return True
