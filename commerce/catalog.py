"""Products, the batches they are sold from, and the host's product pins (讲解中).

A pin records which product (and batch) the host was explaining from when to when; replay
chapters, question context and order evidence are all read from these rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.accounts import Principal, Role
from commerce.base import Base, as_utc, utcnow
from commerce.errors import Forbidden, NotFound
from commerce.live_sessions import LiveSession
from commerce.locks import lock_row


class Batch(Base):
    """One harvest or production lot. `code` is public (printed as a QR code)."""

    __tablename__ = "batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    farm: Mapped[str] = mapped_column(String(120), default="")
    plot: Mapped[str] = mapped_column(String(120), default="")
    harvested_at: Mapped[datetime | None] = mapped_column(nullable=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def public_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "code": self.code, "farm": self.farm, "plot": self.plot,
            "harvested_at": as_utc(self.harvested_at).isoformat() if self.harvested_at else None,
            "description": self.description,
        }


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    unit: Mapped[str] = mapped_column(String(32), default="份")
    price_fen: Mapped[int] = mapped_column(BigInteger)
    description: Mapped[str] = mapped_column(Text, default="")
    photos: Mapped[list[str]] = mapped_column(JSON, default=list)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def public_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "unit": self.unit, "price_fen": self.price_fen,
            "description": self.description, "photos": list(self.photos or []),
            "batch_id": self.batch_id,
        }


class ProductPin(Base):
    """The host pinned `product_id` at `pinned_at`; `unpinned_at` is set by the next pin or unpin."""

    __tablename__ = "product_pins"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("live_sessions.id"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"), nullable=True)
    pinned_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    pinned_at: Mapped[datetime] = mapped_column(default=utcnow)
    unpinned_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # What viewers saw on the card at that moment (name, price, batch, QC summary).
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    def public_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "session_id": self.session_id, "product_id": self.product_id,
            "batch_id": self.batch_id, "pinned_at": as_utc(self.pinned_at).isoformat(),
            "unpinned_at": as_utc(self.unpinned_at).isoformat() if self.unpinned_at else None,
            "snapshot": dict(self.snapshot or {}),
        }


def ensure_product_owner(product: Product, actor: Principal) -> None:
    if actor.is_admin:
        return
    if actor.role is not Role.HOST or product.owner_id != actor.user_id:
        raise Forbidden("这不是你的商品 / Not your product")


async def create_product(
    db: AsyncSession, owner: Principal, name: str, price_fen: int, unit: str = "份",
    description: str = "", photos: list[str] | None = None, batch_id: int | None = None,
) -> Product:
    """A host lists a product; `batch_id` must be the host's own batch."""
    if owner.role not in (Role.HOST, Role.ADMIN):
        raise Forbidden("只有主播可以上架商品 / Only hosts can list products")
    if batch_id is not None:
        await _ensure_batch_of(db, owner, batch_id)
    product = Product(
        owner_id=owner.user_id, name=name, price_fen=price_fen, unit=unit,
        description=description, photos=photos or [], batch_id=batch_id,
    )
    db.add(product)
    await db.flush()
    return product


async def _ensure_batch_of(db: AsyncSession, owner: Principal, batch_id: int) -> None:
    batch = await get_batch(db, batch_id)
    if not owner.is_admin and batch.owner_id != owner.user_id:
        raise Forbidden("这不是你的批次 / Not your batch")


async def update_product(db: AsyncSession, actor: Principal, product_id: int,
                         values: dict[str, Any]) -> Product:
    """The product's host (or an admin) changes what is given in `values` (name, unit,
    price_fen, description, photos, batch_id); a batch must be the host's own."""
    product = await get_product(db, product_id)
    ensure_product_owner(product, actor)
    if values.get("batch_id") is not None:
        await _ensure_batch_of(db, actor, values["batch_id"])
    for name in ("name", "unit", "price_fen", "description", "photos", "batch_id"):
        if name in values:
            setattr(product, name, values[name])
    await db.flush()
    return product


async def get_product(db: AsyncSession, product_id: int) -> Product:
    product = await db.get(Product, product_id)
    if product is None:
        raise NotFound("商品不存在 / No such product")
    return product


async def create_batch(
    db: AsyncSession, owner: Principal, code: str, farm: str = "", plot: str = "",
    harvested_at: datetime | None = None, description: str = "",
) -> Batch:
    if owner.role not in (Role.HOST, Role.ADMIN):
        raise Forbidden("只有主播可以登记批次 / Only hosts can register batches")
    batch = Batch(owner_id=owner.user_id, code=code, farm=farm, plot=plot,
                  harvested_at=harvested_at, description=description)
    db.add(batch)
    await db.flush()
    return batch


async def get_batch(db: AsyncSession, batch_id: int) -> Batch:
    batch = await db.get(Batch, batch_id)
    if batch is None:
        raise NotFound("批次不存在 / No such batch")
    return batch


async def find_batch(db: AsyncSession, code: str) -> Batch | None:
    return (await db.execute(select(Batch).where(Batch.code == code))).scalar_one_or_none()


async def pin_product(
    db: AsyncSession, session_id: int, product_id: int, actor: Principal,
    snapshot: dict[str, Any] | None = None,
) -> ProductPin:
    """Close the open pin of the session (if any) and open a new one for `product_id`."""
    product = await get_product(db, product_id)
    now = utcnow()
    await unpin(db, session_id, at=now)
    pin = ProductPin(
        session_id=session_id, product_id=product.id, batch_id=product.batch_id,
        pinned_by=actor.user_id, pinned_at=now,
        snapshot=snapshot or {"name": product.name, "price_fen": product.price_fen,
                              "unit": product.unit},
    )
    db.add(pin)
    await db.flush()
    return pin


async def unpin(db: AsyncSession, session_id: int, at: datetime | None = None) -> None:
    # A session has at most one open pin (the product on screen, which claims and replay
    # chapters point at): pins made at once take turns on the session row.
    await lock_row(db, LiveSession, session_id)
    at = at or utcnow()
    open_pins = await db.execute(
        select(ProductPin).where(ProductPin.session_id == session_id, ProductPin.unpinned_at.is_(None))
    )
    for pin in open_pins.scalars():
        pin.unpinned_at = at
    await db.flush()


async def current_pin(db: AsyncSession, session_id: int) -> ProductPin | None:
    return (
        await db.execute(
            select(ProductPin)
            .where(ProductPin.session_id == session_id, ProductPin.unpinned_at.is_(None))
            .order_by(ProductPin.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def pins_for_session(db: AsyncSession, session_id: int) -> list[ProductPin]:
    """Every pin of a session in time order: the source of replay chapters."""
    rows = await db.execute(
        select(ProductPin).where(ProductPin.session_id == session_id).order_by(ProductPin.pinned_at)
    )
    return list(rows.scalars())
