"""A batch's journey as a hash chain: harvested → tested → packed → cold chain → shipped → pickup.

Each event stores the hash of the previous one (the first stores a genesis hash committing to the
batch's origin: code, farm, plot, harvest time, owner), and its own hash over canonical JSON of its
fields. The newest hash ("head") is signed (trust.trace_signing), so rewriting the whole chain
after an edit is caught too: verify (trust.trace_verify) recomputes everything from the rows.
Events are append-only: there is no update or delete function, corrections are new events.
"""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.accounts import Principal, Role
from commerce.base import Base, as_utc, utcnow
from commerce.catalog import Batch, find_batch
from commerce.errors import Conflict, DomainError, Forbidden, InvalidInput
from commerce.locks import lock_row
from trust.trace_signing import GENESIS_PREFIX, TraceSigner, iso, sha256_hex

CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
MAX_EVENTS_PER_BATCH = 1000


class EventKind(enum.StrEnum):
    HARVESTED = "harvested"
    TESTED = "tested"
    PACKED = "packed"
    COLD_CHAIN = "cold_chain"
    SHIPPED = "shipped"
    ARRIVED_AT_PICKUP = "arrived_at_pickup"
    PICKED_UP = "picked_up"


EVENT_LABELS = {
    EventKind.HARVESTED: "采摘 / Harvested",
    EventKind.TESTED: "质检 / Tested",
    EventKind.PACKED: "包装 / Packed",
    EventKind.COLD_CHAIN: "冷链温度 / Cold-chain reading",
    EventKind.SHIPPED: "发货 / Shipped",
    EventKind.ARRIVED_AT_PICKUP: "到达自提点 / Arrived at pickup point",
    EventKind.PICKED_UP: "已自提 / Picked up",
}


class BatchNotFound(DomainError):
    code = "batch_not_found"
    status = 404
    default_message = "批次不存在或批次码无效 / Unknown or invalid batch code"


class TraceEvent(Base):
    __tablename__ = "trace_events"
    __table_args__ = (UniqueConstraint("batch_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), index=True)
    seq: Mapped[int] = mapped_column()
    kind: Mapped[str] = mapped_column(String(24))
    occurred_at: Mapped[datetime] = mapped_column()
    actor_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    location: Mapped[str] = mapped_column(String(200), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)

    def content(self) -> dict[str, Any]:
        """Exactly what the hash covers (recorded_at is bookkeeping, not evidence)."""
        return {
            "v": 1, "batch_id": self.batch_id, "seq": self.seq, "kind": self.kind,
            "occurred_at": iso(self.occurred_at), "actor_id": self.actor_id,
            "location": self.location, "note": self.note, "data": self.data or {},
            "prev": self.prev_hash,
        }

    def public_dict(self) -> dict[str, Any]:
        kind = EventKind(self.kind) if self.kind in EventKind.__members__.values() else None
        return {
            "seq": self.seq, "kind": self.kind, "label": EVENT_LABELS.get(kind, self.kind)
            if kind else self.kind, "occurred_at": iso(self.occurred_at), "location": self.location,
            "note": self.note, "data": dict(self.data or {}), "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


class TraceHead(Base):
    """The signed newest link of a batch's chain; deleting the last event can't go unnoticed."""

    __tablename__ = "trace_heads"

    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), primary_key=True)
    seq: Mapped[int] = mapped_column()
    hash: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str] = mapped_column(String(32))
    signed_at: Mapped[datetime] = mapped_column(default=utcnow)


class TraceLookupDaily(Base):
    """Scans/opens of a batch's trace per UTC day (anonymous ones included)."""

    __tablename__ = "trace_lookup_daily"
    __table_args__ = (UniqueConstraint("batch_id", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), index=True)
    day: Mapped[str] = mapped_column(String(10))
    count: Mapped[int] = mapped_column(default=0)


class TraceLookupUser(Base):
    """Signed-in users who looked a batch up: the dashboard's trace look-up rate reads this."""

    __tablename__ = "trace_lookup_users"
    __table_args__ = (UniqueConstraint("batch_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    first_at: Mapped[datetime] = mapped_column(default=utcnow)
    count: Mapped[int] = mapped_column(default=1)


def to_utc(value: datetime) -> datetime:
    """Store UTC: SQLite keeps a datetime's wall time and drops its offset, which would change
    the hashed value between writing and reading back."""
    return as_utc(value).astimezone(UTC)


def genesis_hash(batch: Batch) -> str:
    """The first event's `prev`: commits to the batch's origin, so editing it breaks the chain."""
    return sha256_hex({
        "v": GENESIS_PREFIX, "code": batch.code, "owner_id": batch.owner_id, "farm": batch.farm,
        "plot": batch.plot, "harvested_at": iso(batch.harvested_at),
    })


async def batch_by_code(db: AsyncSession, code: str) -> Batch:
    """The batch with this public code; a malformed or unknown code is the same 404."""
    if not CODE_RE.match(code):
        raise BatchNotFound(code_format="[A-Za-z0-9_-]{1,40}")
    batch = await find_batch(db, code)
    if batch is None:
        raise BatchNotFound()
    return batch


def ensure_batch_staff(batch: Batch, actor: Principal) -> None:
    """The batch's own host (or an admin; assistants record pickups) may add evidence."""
    if actor.is_admin or (actor.role is Role.HOST and batch.owner_id == actor.user_id):
        return
    raise Forbidden("这不是你的批次 / Not your batch")


async def events_for(db: AsyncSession, batch_id: int) -> list[TraceEvent]:
    rows = await db.execute(
        select(TraceEvent).where(TraceEvent.batch_id == batch_id).order_by(TraceEvent.seq)
    )
    return list(rows.scalars())


async def append_event(
    db: AsyncSession, signer: TraceSigner, batch: Batch, actor: Principal, kind: EventKind,
    occurred_at: datetime | None = None, location: str = "", note: str = "",
    data: dict[str, Any] | None = None,
) -> TraceEvent:
    """Link a new event to the head and re-sign the head. Callers have checked the actor's rights.

    The batch row is locked first, so appends to one batch queue up instead of racing for the
    same `seq` (FOR UPDATE on the head alone misses the first event and does nothing on SQLite)."""
    await lock_row(db, Batch, batch.id)
    head = (
        await db.execute(
            select(TraceHead).where(TraceHead.batch_id == batch.id).with_for_update()
        )
    ).scalar_one_or_none()
    if head is not None and head.seq >= MAX_EVENTS_PER_BATCH:
        raise InvalidInput("该批次的溯源记录已达上限 / This batch has too many trace events",
                           limit=MAX_EVENTS_PER_BATCH)
    # The chain continues from the stored head (the verified state), not from the event rows.
    prev = head.hash if head is not None else genesis_hash(batch)
    seq = head.seq + 1 if head is not None else 1
    event = TraceEvent(
        batch_id=batch.id, seq=seq, kind=kind.value, occurred_at=to_utc(occurred_at or utcnow()),
        actor_id=actor.user_id, location=location, note=note, data=data or {}, prev_hash=prev,
        hash="",
    )
    event.hash = sha256_hex(event.content())
    db.add(event)
    signature = signer.sign(batch.code, seq, event.hash)
    if head is None:
        db.add(TraceHead(batch_id=batch.id, seq=seq, hash=event.hash, signature=signature,
                         key_id=signer.key_id))
    else:
        head.seq, head.hash, head.signature = seq, event.hash, signature
        head.key_id, head.signed_at = signer.key_id, utcnow()
    try:
        await db.flush()
    except IntegrityError:
        await db.rollback()
        raise Conflict("溯源记录并发写入,请重试 / Concurrent trace write, retry") from None
    return event


async def head_for(db: AsyncSession, batch_id: int) -> TraceHead | None:
    return await db.get(TraceHead, batch_id)


async def count_lookup(db: AsyncSession, batch_id: int, user_id: int | None) -> None:
    """One upsert per look-up (plus one for signed-in users); works on SQLite and PostgreSQL."""
    dialect = db.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    day = utcnow().date().isoformat()
    daily = insert(TraceLookupDaily).values(batch_id=batch_id, day=day, count=1)
    await db.execute(daily.on_conflict_do_update(
        index_elements=["batch_id", "day"], set_={"count": TraceLookupDaily.count + 1}
    ))
    if user_id is not None:
        per_user = insert(TraceLookupUser).values(
            batch_id=batch_id, user_id=user_id, first_at=utcnow(), count=1
        )
        await db.execute(per_user.on_conflict_do_update(
            index_elements=["batch_id", "user_id"], set_={"count": TraceLookupUser.count + 1}
        ))


async def lookup_total(db: AsyncSession, batch_id: int) -> int:
    rows = await db.execute(
        select(TraceLookupDaily.count).where(TraceLookupDaily.batch_id == batch_id)
    )
    return sum(row[0] for row in rows)
