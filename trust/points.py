"""Trust points (信任积分): a ledger of facts, a balance that never goes below zero on a spend.

Every row of `trust_point_ledger` is one fact with a UNIQUE key (`ugc:<post>`,
`first_review:<batch>:<user>`, `answer:<question>`, `spend:<key>`, `expire:<row>`,
`reverse:<fact>`): writing the same fact twice is a no-op, so a retried request, two workers
hearing one event, or a referral award replayed by a crash never pays twice.

`trust_point_balances` holds each neighbour's current balance. It moves only in the transaction
that writes its ledger row, and a spend is a conditional UPDATE (`balance >= cost`): of twenty
spends at once, only those the balance covers pass.

Expiry (dated lots, FIFO): each earned row is a lot that expires `EXPIRY_DAYS` after it was
earned. Spends, reversals and expiries consume the oldest live lots first (a reversal takes from
its own lot first). What is left of a lot when it expires is written off as `expire:<row>`,
computed from the ledger alone by `fifo` (so it is the same however often it runs). A reversal
for points already spent leaves the balance below zero: a debt the next points repay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, String, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.base import Base, as_utc, utcnow
from commerce.errors import DomainError, InvalidInput

EXPIRY_DAYS = 365
MAX_AWARD = 100_000
MAX_KEY = 120
# Honour titles by lifetime points earned (never lowered by spending).
TITLES: tuple[tuple[int, str, str], ...] = (
    (1000, "金牌体验官", "Gold taster"),
    (300, "银牌体验官", "Silver taster"),
    (50, "新晋体验官", "New taster"),
)


class NotEnoughPoints(DomainError):
    code = "not_enough_points"
    status = 409
    default_message = "积分不足 / Not enough trust points"


class PointRow(Base):
    __tablename__ = "trust_point_ledger"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    fact_key: Mapped[str] = mapped_column(String(MAX_KEY), unique=True)
    points: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # earn | spend | expire | reverse
    reason: Mapped[str] = mapped_column(String(200), default="")
    # The order the fact stands on: its refund reverses the fact.
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), nullable=True, index=True)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def public_dict(self) -> dict[str, Any]:
        return {"id": self.id, "points": self.points, "kind": self.kind, "reason": self.reason,
                "fact": self.fact_key if self.kind != "spend" else "spend",
                "expires_at": as_utc(self.expires_at).isoformat() if self.expires_at else None,
                "created_at": as_utc(self.created_at).isoformat()}


class PointBalance(Base):
    __tablename__ = "trust_point_balances"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True,
                                         autoincrement=False)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    earned: Mapped[int] = mapped_column(BigInteger, default=0)


def _insert(db: AsyncSession) -> Any:
    return postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert


async def _ensure_balance(db: AsyncSession, user_id: int) -> None:
    await db.execute(_insert(db)(PointBalance).values(user_id=user_id, balance=0, earned=0)
                     .on_conflict_do_nothing(index_elements=["user_id"]))


async def _write(db: AsyncSession, user_id: int, fact_key: str, points: int, kind: str,
                 reason: str, order_id: int | None = None,
                 expires_at: datetime | None = None) -> bool:
    """Insert the fact once; True when this call wrote it."""
    values = {"user_id": user_id, "fact_key": fact_key, "points": points, "kind": kind,
              "reason": reason[:200], "order_id": order_id, "expires_at": expires_at,
              "created_at": utcnow()}
    result = await db.execute(_insert(db)(PointRow).values(**values)
                              .on_conflict_do_nothing(index_elements=["fact_key"]))
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def _check_key(fact_key: str) -> None:
    if not fact_key or len(fact_key) > MAX_KEY or not fact_key.isprintable():
        raise InvalidInput(f"fact_key 须为 1–{MAX_KEY} 个可打印字符 / fact_key must be 1–{MAX_KEY} "
                           "printable characters", field="fact_key")


async def award(db: AsyncSession, user_id: int, fact_key: str, points: int, reason: str,
                order_id: int | None = None) -> bool:
    """Earn `points` for one fact, at most once per `fact_key`; True when this call awarded.

    Idempotent and safe to call concurrently: the UNIQUE key decides which call writes."""
    _check_key(fact_key)
    if not 1 <= points <= MAX_AWARD:
        raise InvalidInput(f"积分须为 1–{MAX_AWARD} / points must be 1–{MAX_AWARD}", field="points")
    await _ensure_balance(db, user_id)
    expires = utcnow() + timedelta(days=EXPIRY_DAYS)
    if not await _write(db, user_id, fact_key, points, "earn", reason, order_id, expires):
        return False
    await db.execute(update(PointBalance).where(PointBalance.user_id == user_id)
                     .values(balance=PointBalance.balance + points,
                             earned=PointBalance.earned + points)
                     .execution_options(synchronize_session=False))
    return True


async def spend(db: AsyncSession, user_id: int, key: str, cost: int, reason: str) -> bool:
    """Take `cost` points for `spend:<key>`; NotEnoughPoints when the balance does not cover it.
    False when this spend was already made (a retry)."""
    _check_key(f"spend:{key}")
    if not 1 <= cost <= MAX_AWARD:
        raise InvalidInput(f"积分须为 1–{MAX_AWARD} / cost must be 1–{MAX_AWARD}", field="cost")
    await expire_due(db, user_id)
    exists = (await db.execute(select(PointRow.id).where(PointRow.fact_key == f"spend:{key}"))).first()
    if exists is not None:
        return False
    taken = await db.execute(
        update(PointBalance).where(PointBalance.user_id == user_id, PointBalance.balance >= cost)
        .values(balance=PointBalance.balance - cost).execution_options(synchronize_session=False))
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        # The same spend sent at once may have taken the points while this one waited.
        if (await db.execute(select(PointRow.id).where(PointRow.fact_key == f"spend:{key}"))).first():
            return False
        raise NotEnoughPoints(cost=cost)
    if not await _write(db, user_id, f"spend:{key}", -cost, "spend", reason):
        # The same spend, sent twice at once, was written by the other request: this one is its
        # retry. Its decrement is given back in the same transaction.
        await db.execute(update(PointBalance).where(PointBalance.user_id == user_id)
                         .values(balance=PointBalance.balance + cost)
                         .execution_options(synchronize_session=False))
        return False
    return True


async def reverse(db: AsyncSession, fact_key: str, reason: str) -> bool:
    """Take back an earned fact with a compensating `reverse:<fact>` row (once)."""
    row = (await db.execute(select(PointRow).where(PointRow.fact_key == fact_key))).scalar_one_or_none()
    if row is None or row.kind != "earn":
        return False
    if not await _write(db, row.user_id, f"reverse:{fact_key}", -row.points, "reverse", reason,
                        row.order_id):
        return False
    await db.execute(update(PointBalance).where(PointBalance.user_id == row.user_id)
                     .values(balance=PointBalance.balance - row.points,
                             earned=PointBalance.earned - row.points)
                     .execution_options(synchronize_session=False))
    return True


async def reverse_for_order(db: AsyncSession, order_id: int, reason: str) -> int:
    """Reverse every fact earned on an order (its refund); the number reversed."""
    keys = (await db.execute(select(PointRow.fact_key).where(
        PointRow.order_id == order_id, PointRow.kind == "earn"))).scalars().all()
    done = 0
    for key in keys:
        done += int(await reverse(db, key, reason))
    return done


@dataclass
class Lot:
    row_id: int
    fact_key: str
    left: int
    expires_at: datetime


@dataclass
class Fifo:
    lots: list[Lot]
    debt: int
    due: list[tuple[int, int]]  # (row id, points) of lots expired but not yet written off


def fifo(rows: Sequence[PointRow], now: datetime) -> Fifo:
    """Replay a user's ledger in order: which lots are live, how much each has left, what has
    expired unwritten. Debits take the oldest live lots first (a reversal its own lot first)."""
    lots: list[Lot] = []
    debt = 0
    written_off = {r.fact_key.removeprefix("expire:"): r.points for r in rows if r.kind == "expire"}
    due: list[tuple[int, int]] = []

    def lapse(upto: datetime) -> None:
        for lot in list(lots):
            if lot.expires_at <= upto:
                lots.remove(lot)
                if lot.left > 0 and str(lot.row_id) not in written_off:
                    due.append((lot.row_id, lot.left))

    def take(amount: int, first: str | None = None) -> None:
        nonlocal debt
        order = sorted(lots, key=lambda lot: (lot.fact_key != first, lot.row_id))
        for lot in order:
            if amount <= 0:
                break
            used = min(lot.left, amount)
            lot.left -= used
            amount -= used
        debt += amount

    for row in sorted(rows, key=lambda r: r.id):
        lapse(as_utc(row.created_at))
        if row.kind == "earn":
            repaid = min(debt, row.points)
            debt -= repaid
            lots.append(Lot(row.id, row.fact_key, row.points - repaid,
                            as_utc(row.expires_at or row.created_at)))
        elif row.kind == "expire":
            lot_id = int(row.fact_key.removeprefix("expire:"))
            for lot in lots:
                if lot.row_id == lot_id:
                    lots.remove(lot)
                    break
        else:
            first = row.fact_key.removeprefix("reverse:") if row.kind == "reverse" else None
            take(-row.points, first)
    lapse(now)
    return Fifo([lot for lot in lots if lot.left > 0], debt, due)


async def ledger(db: AsyncSession, user_id: int) -> list[PointRow]:
    return list((await db.execute(select(PointRow).where(PointRow.user_id == user_id)
                                  .order_by(PointRow.id))).scalars())


async def expire_due(db: AsyncSession, user_id: int, now: datetime | None = None) -> int:
    """Write off what is left of the user's lots past their date (once each); points expired."""
    now = now or utcnow()
    state = fifo(await ledger(db, user_id), now)
    total = 0
    for row_id, left in state.due:
        if await _write(db, user_id, f"expire:{row_id}", -left, "expire", "积分过期 / expired"):
            await db.execute(update(PointBalance).where(PointBalance.user_id == user_id)
                             .values(balance=PointBalance.balance - left)
                             .execution_options(synchronize_session=False))
            total += left
    return total


async def expire_all(db: AsyncSession, now: datetime | None = None) -> int:
    """The sweep: every user with a lot past its date."""
    now = now or utcnow()
    users = (await db.execute(select(PointRow.user_id).where(
        PointRow.kind == "earn", PointRow.expires_at <= now).distinct())).scalars().all()
    return sum([await expire_due(db, user_id, now) for user_id in users])


def title_for(earned: int) -> dict[str, str] | None:
    for threshold, zh, en in TITLES:
        if earned >= threshold:
            return {"zh": zh, "en": en}
    return None


async def summary(db: AsyncSession, user_id: int) -> dict[str, Any]:
    balance = await db.get(PointBalance, user_id, populate_existing=True)
    rows = await ledger(db, user_id)
    state = fifo(rows, utcnow())
    next_expiry = min((lot.expires_at for lot in state.lots), default=None)
    earned = balance.earned if balance else 0
    return {
        "balance": balance.balance if balance else 0, "earned": earned,
        "title": title_for(earned),
        "next_expiry": next_expiry.isoformat() if next_expiry else None,
        "rows": [r.public_dict() for r in reversed(rows[-50:])],
    }


async def liabilities(db: AsyncSession, now: datetime | None = None) -> int:
    """Points neighbours hold and could still spend: unexpired lots' remainders minus debts."""
    now = now or utcnow()
    users = (await db.execute(select(PointRow.user_id).distinct())).scalars().all()
    total = 0
    for user_id in users:
        state = fifo(await ledger(db, user_id), now)
        total += max(0, sum(lot.left for lot in state.lots) - state.debt)
    return total


async def balances(db: AsyncSession, user_ids: list[int]) -> dict[int, int]:
    if not user_ids:
        return {}
    rows = await db.execute(select(PointBalance.user_id, PointBalance.earned)
                            .where(PointBalance.user_id.in_(user_ids)))
    return {int(u): int(e) for u, e in rows}


async def earned_total(db: AsyncSession) -> int:
    return int((await db.execute(select(func.coalesce(func.sum(PointRow.points), 0))
                                 .where(PointRow.kind == "earn"))).scalar_one())
