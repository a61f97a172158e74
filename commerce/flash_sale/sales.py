"""Flash sales as SQL rows: what was put on sale, when, at what price, for whom.

The live counts (remaining, held, sold) are in Redis while the sale runs (commerce/flash_sale/store.py);
this row is the durable description a restart re-opens the Redis side from.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce import catalog, live_sessions
from commerce.accounts import Community, Membership, Principal
from commerce.base import Base, as_utc, utcnow
from commerce.errors import DomainError, InvalidInput, InvalidState
from commerce.flash_sale.store import SaleNotFound, SaleSpec
from commerce.locks import lock_row

MAX_STOCK = 1_000_000
MAX_PRICE_FEN = 100_000_000  # 1,000,000 yuan
MAX_COMMUNITIES = 50


class BucketsUnsupported(DomainError):
    """What a sale whose stock is split over buckets cannot do (yet): group-buys count a
    community's people and units in the same step as the stock, and buckets have no one step."""

    code = "buckets_unsupported"
    status = 409
    default_message = ("分桶库存的抢购不支持拼团 / A sale whose stock is split over buckets "
                       "cannot have group-buys")


class SaleOverlaps(DomainError):
    """Another sale of the product in the session is (or will be) reservable in the same window:
    two prices for one product side by side confuse the room's tabs and split its stock."""

    code = "sale_overlaps"
    status = 409
    default_message = ("该商品在本场已有时段重叠的秒杀,请先关闭它 / "
                       "This product already has a sale in this session whose window overlaps: "
                       "close it first")


class SaleStatus(enum.StrEnum):
    OPEN = "open"  # reservable between starts_at and ends_at
    CLOSED = "closed"


class Sale(Base):
    __tablename__ = "sales"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("live_sessions.id"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    stock: Mapped[int] = mapped_column()
    price_fen: Mapped[int] = mapped_column(BigInteger)
    community_price_fen: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    community_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    members_only: Mapped[bool] = mapped_column(default=False)
    per_buyer_limit: Mapped[int] = mapped_column()
    gift_first_n: Mapped[int] = mapped_column(default=0)
    gift_text: Mapped[str] = mapped_column(String(200), default="")
    # Over how many Redis buckets the stock is split (commerce/flash_sale/stock.py); 1 = one hash.
    buckets: Mapped[int] = mapped_column(default=1, server_default="1")
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # When the goods are promised at the pickup point (or delivered): on-time fulfilment is
    # measured against it. None = no promise made, such orders are not in that figure.
    pickup_by: Mapped[datetime | None] = mapped_column(nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=SaleStatus.OPEN.value)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(nullable=True)

    def spec(self, hold_ttl_s: int) -> SaleSpec:
        return SaleSpec(
            sale_id=self.id, session_id=self.session_id, stock=self.stock, price_fen=self.price_fen,
            community_price_fen=self.community_price_fen, members_only=self.members_only,
            per_buyer_limit=self.per_buyer_limit, gift_first_n=self.gift_first_n,
            starts_ms=int(as_utc(self.starts_at).timestamp() * 1000),
            ends_ms=int(as_utc(self.ends_at).timestamp() * 1000) if self.ends_at else 0,
            hold_ttl_s=hold_ttl_s, buckets=self.buckets or 1,
        )

    def public_dict(self) -> dict[str, Any]:
        now = utcnow()
        starts = as_utc(self.starts_at)
        ends = as_utc(self.ends_at) if self.ends_at else None
        return {
            "id": self.id, "session_id": self.session_id, "product_id": self.product_id,
            "price_fen": self.price_fen, "community_price_fen": self.community_price_fen,
            "community_ids": list(self.community_ids or []), "members_only": self.members_only,
            "per_buyer_limit": self.per_buyer_limit, "gift_first_n": self.gift_first_n,
            "gift_text": self.gift_text, "buckets": self.buckets or 1,
            "starts_at": starts.isoformat(),
            "ends_at": ends.isoformat() if ends else None, "status": self.phase(now),
            "pickup_by": as_utc(self.pickup_by).isoformat() if self.pickup_by else None,
            # Countdown fields: seconds until the start and until the end (None = no end).
            "starts_in_s": max(0, int((starts - now).total_seconds())),
            "ends_in_s": max(0, int((ends - now).total_seconds())) if ends else None,
            "server_time": now.isoformat(),
        }

    def phase(self, now: datetime) -> str:
        """scheduled | open | ended | closed, as viewers see it."""
        if self.status == SaleStatus.CLOSED:
            return "closed"
        if as_utc(self.starts_at) > now:
            return "scheduled"
        if self.ends_at is not None and as_utc(self.ends_at) <= now:
            return "ended"
        return "open"


async def insert_sale(
    db: AsyncSession, actor: Principal, session_id: int, product_id: int, stock: int,
    price_fen: int, per_buyer_limit: int, *, starts_at: datetime | None = None,
    ends_at: datetime | None = None, community_ids: list[int] | None = None,
    community_price_fen: int | None = None, members_only: bool = False, gift_first_n: int = 0,
    gift_text: str = "", pickup_by: datetime | None = None,
    sold_out: Callable[[int], Awaitable[bool]] | None = None, buckets: int = 1,
) -> Sale:
    """The sale's row, checked against its session and product; `lifecycle.create_sale` writes it
    and opens it in Redis. Reservable at once when `starts_at` is absent.

    Raises SaleOverlaps while another sale of the product in the session is open or scheduled
    in an overlapping window. `sold_out(sale_id)` tells a sale with nothing left to sell: such a
    sale no longer blocks, and is closed here so a unit coming back from an expired hold cannot
    make it reservable beside the new one (the caller closes its Redis side after commit).
    Without `sold_out` every overlapping sale blocks."""
    # Against the session ending meanwhile (live_sessions.end_session locks it too).
    await lock_row(db, live_sessions.LiveSession, session_id)
    session = await live_sessions.get_session(db, session_id)
    live_sessions.ensure_owner(session, actor)
    if session.status == live_sessions.SessionStatus.ENDED:
        raise InvalidState("直播已结束 / The session has ended")
    product = await catalog.get_product(db, product_id)
    catalog.ensure_product_owner(product, actor)
    now = utcnow()
    starts = as_utc(starts_at) if starts_at else now
    if ends_at is not None and as_utc(ends_at) <= max(starts, now):
        raise InvalidInput("结束时间必须晚于开始时间 / ends_at must be after starts_at and now",
                           field="ends_at")
    communities = sorted(set(community_ids or []))
    if communities:
        found = (await db.execute(select(Community.id).where(Community.id.in_(communities)))).all()
        if len(found) != len(communities):
            raise InvalidInput("小区不存在 / Unknown community", field="community_ids")
    if pickup_by is not None and as_utc(pickup_by) <= starts:
        raise InvalidInput("取货时间须晚于开售时间 / pickup_by must be after starts_at",
                           field="pickup_by")
    if (community_price_fen is not None or members_only) and not communities:
        raise InvalidInput("社区价需要指定小区 / A community price needs community_ids",
                           field="community_ids")
    ends = as_utc(ends_at) if ends_at else None
    # Read after the session's lock: a concurrent creation has committed its row or waits.
    for other in await overlapping_sales(db, session_id, product_id, starts, ends):
        if sold_out is None or not await sold_out(other.id):
            raise SaleOverlaps(sale_id=other.id)
        await mark_closed(db, other.id, None)
    sale = Sale(
        session_id=session_id, product_id=product_id, stock=stock, price_fen=price_fen,
        community_price_fen=community_price_fen, community_ids=communities,
        members_only=members_only, per_buyer_limit=per_buyer_limit, gift_first_n=gift_first_n,
        gift_text=gift_text, starts_at=starts, ends_at=ends,
        pickup_by=as_utc(pickup_by) if pickup_by else None, created_by=actor.user_id,
        buckets=buckets,
    )
    db.add(sale)
    await db.flush()
    return sale


async def overlapping_sales(db: AsyncSession, session_id: int, product_id: int,
                           starts: datetime, ends: datetime | None) -> list[Sale]:
    """Sales of the product in the session, not closed nor past their end, whose window
    [starts_at, ends_at) meets [starts, ends) (an absent end runs on). Compared in Python:
    SQLite keeps naive datetimes."""
    rows = await db.execute(select(Sale).where(
        Sale.session_id == session_id, Sale.product_id == product_id,
        Sale.status == SaleStatus.OPEN.value).order_by(Sale.id))
    now = utcnow()
    found = []
    for sale in rows.scalars():
        other_starts = as_utc(sale.starts_at)
        other_ends = as_utc(sale.ends_at) if sale.ends_at else None
        if other_ends is not None and other_ends <= now:
            continue  # ended: its closing is only waiting for the sweeper
        if (ends is None or other_starts < ends) and (other_ends is None or starts < other_ends):
            found.append(sale)
    return found


async def get_sale(db: AsyncSession, sale_id: int) -> Sale:
    sale = await db.get(Sale, sale_id)
    if sale is None:
        raise SaleNotFound()
    return sale


async def sales_of_session(db: AsyncSession, session_id: int) -> list[Sale]:
    rows = await db.execute(select(Sale).where(Sale.session_id == session_id).order_by(Sale.id))
    return list(rows.scalars())


async def unclosed_sales(db: AsyncSession) -> list[Sale]:
    """Sales whose Redis side must exist (re-opened at start-up; open.lua is idempotent)."""
    rows = await db.execute(select(Sale).where(Sale.status == SaleStatus.OPEN.value))
    return list(rows.scalars())


async def sale_members(db: AsyncSession, sale: Sale) -> dict[int, list[int]]:
    """Approved members of the sale's communities: user id -> their community ids (sale order)."""
    if not sale.community_ids:
        return {}
    rows = await db.execute(
        select(Membership.user_id, Membership.community_id).where(
            Membership.community_id.in_(sale.community_ids), Membership.status == "approved"
        )
    )
    members: dict[int, list[int]] = {}
    for user_id, community_id in rows:
        members.setdefault(user_id, []).append(community_id)
    order = {cid: i for i, cid in enumerate(sale.community_ids)}
    return {uid: sorted(cids, key=order.__getitem__) for uid, cids in members.items()}


async def mark_closed(db: AsyncSession, sale_id: int, actor: Principal | None) -> Sale:
    """The row's side of `lifecycle.close_sale` (its host, or the system once ends_at passed);
    idempotent."""
    sale = await get_sale(db, sale_id)
    if actor is not None:
        session = await live_sessions.get_session(db, sale.session_id)
        live_sessions.ensure_owner(session, actor)
    if sale.status != SaleStatus.CLOSED:
        sale.status = SaleStatus.CLOSED.value
        sale.closed_at = utcnow()
        await db.flush()
    return sale


async def due_to_close(db: AsyncSession) -> list[Sale]:
    """Open sales whose end has passed (compared in Python: SQLite keeps naive datetimes), and
    open sales of ended sessions (a session's end closes them; this finishes one cut short)."""
    now = utcnow()
    ended = set((await db.execute(
        select(Sale.id).join(live_sessions.LiveSession, live_sessions.LiveSession.id == Sale.session_id)
        .where(Sale.status == SaleStatus.OPEN.value,
               live_sessions.LiveSession.status == live_sessions.SessionStatus.ENDED.value)
    )).scalars())
    return [sale for sale in await unclosed_sales(db)
            if sale.id in ended or (sale.ends_at is not None and as_utc(sale.ends_at) <= now)]
