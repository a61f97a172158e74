"""Trial samples (试用装): zero-price orders a host sends from a batch to the programme's members.

A batch's sample stock is its own counter (`koc_sample_stock`: units set aside, units sent):
a send takes a unit with a conditional UPDATE (`sent < units`), so twenty sends at once never
send more than were set aside, and one KOC gets at most one sample of a batch (UNIQUE). Samples
live beside the paid orders rather than in `orders`: those rows are confirmations of Redis
holds (hold id, payment, rank) and every money report and reconciliation reads them; a sample
has no hold, no payment and no refund. A sample is the KOC's verified order of its batch: she
may write her 晒单 from it, and it is due by `due_at`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.accounts import Principal, Role
from commerce.base import Base, as_utc, utcnow
from commerce.catalog import Batch, Product, get_batch, get_product
from commerce.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound
from trust.programmes import badge_for

MAX_UNITS = 10_000
MAX_DUE_DAYS = 60


class NoSamplesLeft(DomainError):
    code = "no_samples_left"
    status = 409
    default_message = "试用装已发完 / No samples left for this batch"


class SampleStock(Base):
    __tablename__ = "koc_sample_stock"

    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), primary_key=True,
                                          autoincrement=False)
    units: Mapped[int] = mapped_column(default=0)
    sent: Mapped[int] = mapped_column(default=0)

    def public_dict(self) -> dict[str, Any]:
        return {"batch_id": self.batch_id, "units": self.units, "sent": self.sent,
                "left": self.units - self.sent}


class Sample(Base):
    __tablename__ = "koc_samples"
    __table_args__ = (UniqueConstraint("batch_id", "user_id", name="uq_koc_samples_batch_user"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    sent_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    price_fen: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(16), default="sent")  # sent | reviewed
    due_at: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def public_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": "sample", "batch_id": self.batch_id,
                "product_id": self.product_id, "user_id": self.user_id, "price_fen": 0,
                "amount_fen": 0, "status": self.status, "due_at": as_utc(self.due_at).isoformat(),
                "created_at": as_utc(self.created_at).isoformat()}


def _own_batch(batch: Batch, actor: Principal) -> None:
    if not actor.is_admin and (actor.role is not Role.HOST or batch.owner_id != actor.user_id):
        raise Forbidden("这不是你的批次 / Not your batch")


async def set_stock(db: AsyncSession, actor: Principal, batch_id: int, units: int) -> SampleStock:
    """The host sets aside `units` samples of a batch (never fewer than already sent)."""
    if not 0 <= units <= MAX_UNITS:
        raise InvalidInput(f"数量须为 0–{MAX_UNITS} / units must be 0–{MAX_UNITS}", field="units")
    _own_batch(await get_batch(db, batch_id), actor)
    stock = await db.get(SampleStock, batch_id)
    if stock is None:
        stock = SampleStock(batch_id=batch_id, units=0, sent=0)
        db.add(stock)
        await db.flush()
    moved = await db.execute(update(SampleStock).where(SampleStock.batch_id == batch_id,
                                                       SampleStock.sent <= units)
                             .values(units=units).execution_options(synchronize_session=False))
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("少于已发出的数量 / Fewer than already sent", reason="below_sent")
    await db.refresh(stock)
    return stock


async def send(db: AsyncSession, actor: Principal, product_id: int, user_id: int,
               due_days: int) -> Sample:
    """Send one sample of the product's batch to a live member of the host's programmes."""
    if not 1 <= due_days <= MAX_DUE_DAYS:
        raise InvalidInput(f"due_days 须为 1–{MAX_DUE_DAYS} / due_days must be 1–{MAX_DUE_DAYS}",
                           field="due_days")
    product = await get_product(db, product_id)
    if product.batch_id is None:
        raise InvalidInput("商品没有批次 / The product has no batch", field="product_id")
    batch = await get_batch(db, product.batch_id)
    _own_batch(batch, actor)
    if await badge_for(db, user_id, batch.owner_id) is None:
        raise Conflict("对方不是你的品鉴官 / Not a member of your programme", reason="not_koc")
    taken = await db.execute(
        update(SampleStock).where(SampleStock.batch_id == batch.id,
                                  SampleStock.sent < SampleStock.units)
        .values(sent=SampleStock.sent + 1).execution_options(synchronize_session=False))
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        raise NoSamplesLeft(batch_id=batch.id)
    sample = Sample(batch_id=batch.id, product_id=product.id, user_id=user_id,
                    sent_by=actor.user_id, due_at=utcnow() + timedelta(days=due_days))
    db.add(sample)
    try:
        await db.flush()
    except IntegrityError:
        # The whole transaction (with its unit) is rolled back by the caller's unit of work.
        raise Conflict("已给该品鉴官寄过此批次 / Already sent this batch to this member",
                       reason="already_sent") from None
    return sample


async def mine(db: AsyncSession, user_id: int) -> list[dict[str, Any]]:
    rows = await db.execute(select(Sample, Product.name, Batch.code)
                            .join(Product, Product.id == Sample.product_id)
                            .join(Batch, Batch.id == Sample.batch_id)
                            .where(Sample.user_id == user_id).order_by(Sample.id.desc()).limit(100))
    return [{**s.public_dict(), "product_name": name, "batch_code": code} for s, name, code in rows]


async def of_batch(db: AsyncSession, actor: Principal, batch_id: int) -> dict[str, Any]:
    _own_batch(await get_batch(db, batch_id), actor)
    stock = await db.get(SampleStock, batch_id)
    rows = (await db.execute(select(Sample).where(Sample.batch_id == batch_id)
                             .order_by(Sample.id))).scalars()
    return {"stock": stock.public_dict() if stock else {"batch_id": batch_id, "units": 0,
                                                         "sent": 0, "left": 0},
            "samples": [s.public_dict() for s in rows]}


async def own_sample(db: AsyncSession, actor: Principal, sample_id: int) -> Sample:
    sample = await db.get(Sample, sample_id)
    if sample is None:
        raise NotFound("试用装不存在 / No such sample", sample_id=sample_id)
    if sample.user_id != actor.user_id:
        raise Forbidden("这不是你的试用装 / Not your sample")
    return sample
