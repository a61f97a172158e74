"""A flash sale's life: created on a host's request (at most once per Idempotency-Key), opened
in Redis, closed by its host, its end time or its session's end.

A host's retry (a lost answer, a double tap) must not put a second sale, and twice the stock, on
offer: bench/chaos.py made two. With a key, the first sale is the answer to every repeat.

A key belongs to the one who sent it and to the session it was sent for: the same key on another
session opens a new sale there. Its record lives in Redis, next to the sale's stock:

    idem:sale-create:s{session}:u{user}:{key} -> {"fp": body fingerprint}    the first try runs
                                                 {"fp": ..., "sale": id}     it made this sale

The record is claimed (SET NX, short expiry) before the SQL row is written and dropped again if
nothing was made, so a failed try may be retried with the same key.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from commerce import catalog, live_sessions
from commerce.accounts import Principal
from commerce.base import as_utc, check_idempotency_key
from commerce.errors import Conflict, IdempotencyKeyReused
from commerce.flash_sale import sales
from commerce.flash_sale.checkout import Checkout
from commerce.flash_sale.sales import Sale, SaleStatus
from commerce.flash_sale.store import FlashSaleStore

log = logging.getLogger(__name__)
# A made sale is the answer for a day: far longer than any client retries.
KEEP_S = 24 * 3600
# A claim outlives a first try that died mid-way by this much; until then repeats hear
# "in progress". Creating a sale takes milliseconds, so this only bounds the wait after a crash.
PENDING_S = 60


@dataclass(frozen=True)
class SaleDraft:
    """What the host asked to put on sale (the body of the request)."""

    product_id: int
    stock: int
    price_fen: int
    per_buyer_limit: int
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    community_ids: tuple[int, ...] = ()
    community_price_fen: int | None = None
    members_only: bool = False
    gift_first_n: int = 0
    gift_text: str = ""
    pickup_by: datetime | None = None
    buckets: int = 1

    def fingerprint(self) -> str:
        """Equal for drafts that make the same sale (same instants, same set of communities)."""
        data = asdict(self)
        if self.buckets == 1:  # as before the field existed: a key's record stays valid
            del data["buckets"]
        data["community_ids"] = sorted(set(self.community_ids))
        for name in ("starts_at", "ends_at", "pickup_by"):
            when = getattr(self, name)
            data[name] = None if when is None else as_utc(when).astimezone(UTC).isoformat()
        canonical = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


async def create_sale(checkout: Checkout, actor: Principal, session_id: int, draft: SaleDraft,
                      hold_ttl_s: int, idempotency_key: str | None = None) -> Sale:
    """Write the sale and open it in Redis; with a key, a repeat answers the sale the key made.

    Raises Conflict (reason in_progress) while the first request with the key is still being
    handled, and IdempotencyKeyReused when the key already stands for a different draft.
    """
    if idempotency_key is None:
        return await _create(checkout, actor, session_id, draft, hold_ttl_s)
    check_idempotency_key(idempotency_key)
    claim = _Claim(checkout.store, actor.user_id, session_id, idempotency_key,
                   draft.fingerprint())
    earlier = await claim.take()
    if earlier is not None:
        return await _resume(checkout, earlier, hold_ttl_s)
    superseded: list[int] = []
    try:
        async with checkout.uow() as db:
            sale = await _write(db, checkout.store, actor, session_id, draft, superseded)
    except BaseException:
        await claim.drop()  # nothing was made: a retry with this key may try again
        raise
    await claim.made(sale.id)
    await _close_superseded(checkout, superseded)
    await open_sale(checkout, sale, hold_ttl_s)
    return sale


async def _create(checkout: Checkout, actor: Principal, session_id: int, draft: SaleDraft,
                  hold_ttl_s: int) -> Sale:
    superseded: list[int] = []
    async with checkout.uow() as db:
        sale = await _write(db, checkout.store, actor, session_id, draft, superseded)
    await _close_superseded(checkout, superseded)
    await open_sale(checkout, sale, hold_ttl_s)
    return sale


async def _write(db: AsyncSession, store: FlashSaleStore, actor: Principal, session_id: int,
                 draft: SaleDraft, superseded: list[int]) -> Sale:
    """The row; `superseded` collects the sold-out sales of the product it closed."""

    async def sold_out(sale_id: int) -> bool:
        # A sale not (yet) in Redis was just made by a concurrent request: it is selling.
        counts = await store.counts(sale_id)
        if counts is None or counts.remaining > 0:
            return False
        superseded.append(sale_id)
        return True

    return await sales.insert_sale(
        db, actor, session_id, draft.product_id, draft.stock, draft.price_fen,
        draft.per_buyer_limit, starts_at=draft.starts_at, ends_at=draft.ends_at,
        community_ids=list(draft.community_ids), community_price_fen=draft.community_price_fen,
        members_only=draft.members_only, gift_first_n=draft.gift_first_n,
        gift_text=draft.gift_text, pickup_by=draft.pickup_by, sold_out=sold_out,
        buckets=draft.buckets,
    )


async def _close_superseded(checkout: Checkout, sale_ids: list[int]) -> None:
    """The Redis side and the room's word for the sold-out sales a new sale replaced (their
    rows were closed with its insert; live holds keep their payment window, as on any close)."""
    for sale_id in sale_ids:
        await close_sale(checkout, sale_id, None)


async def _resume(checkout: Checkout, sale_id: int, hold_ttl_s: int) -> Sale:
    """The sale an earlier try made; opened in Redis if that try died before it got there."""
    async with checkout.uow() as db:
        sale = await sales.get_sale(db, sale_id)
    if sale.status == SaleStatus.OPEN.value and await checkout.store.counts(sale.id) is None:
        await open_sale(checkout, sale, hold_ttl_s)
    return sale


def _in_progress() -> Conflict:
    return Conflict("同一请求正在处理,请稍后重试 / The same request is still being handled",
                    reason="in_progress")


class _Claim:
    """One key's record in Redis: taken by the first try, then the sale it made."""

    def __init__(self, store: FlashSaleStore, user_id: int, session_id: int, key: str,
                 fingerprint: str) -> None:
        self.store = store
        self.name = f"idem:sale-create:s{session_id}:u{user_id}:{key}"
        self.fingerprint = fingerprint

    async def take(self) -> int | None:
        """None when this try is the first (the key is now ours); else the sale made earlier."""
        pending = json.dumps({"fp": self.fingerprint})
        # Twice: a first try that failed may drop the record between our SET and GET.
        for _ in range(2):
            if await self.store.claim_creation_record(self.name, pending, PENDING_S):
                return None
            raw = await self.store.creation_record(self.name)
            if raw is None:
                continue
            record = json.loads(raw)
            # Unlike a hold (reserve.lua keeps only the first answer and repeats it: a hold is the
            # buyer's own units for minutes, and the hot path stays one script call), a sale sets
            # the price and stock everyone buys at: answering a different body with the first
            # sale would leave the host believing the second one is on offer.
            if record.get("fp") != self.fingerprint:
                raise IdempotencyKeyReused()
            if "sale" not in record:
                raise _in_progress()
            return int(record["sale"])
        raise _in_progress()

    async def made(self, sale_id: int) -> None:
        record = json.dumps({"fp": self.fingerprint, "sale": sale_id})
        await self.store.keep_creation_record(self.name, record, KEEP_S)

    async def drop(self) -> None:
        # Best effort: if Redis is what failed, the claim lapses after PENDING_S by itself, and
        # the caller should see the original error, not this one.
        try:
            await self.store.drop_creation_record(self.name)
        except RedisError:
            log.warning("could not drop a sale-creation claim", extra={"key": self.name})


async def open_sale(checkout: Checkout, sale: Sale, hold_ttl_s: int) -> None:
    """Copy the sale and its communities' members into Redis, then announce it."""
    async with checkout.uow() as db:
        members = await sales.sale_members(db, sale)
        product = await catalog.get_product(db, sale.product_id)
    await checkout.store.open(sale.spec(hold_ttl_s), members)
    async with checkout.uow() as db:
        closed = (await sales.get_sale(db, sale.id)).status == sales.SaleStatus.CLOSED
    if closed:
        # Closed while it was being opened (its session ended meanwhile): close.lua found
        # nothing to close then, so the stock just put in Redis must stop selling now.
        await close_sale(checkout, sale.id, None)
        return
    await checkout.sale_event("sale_opened", sale, product.name)


async def close_sale(checkout: Checkout, sale_id: int, actor: Principal | None) -> Sale:
    """No new reservations; live holds may still be paid until they expire."""
    async with checkout.uow() as db:
        sale = await sales.mark_closed(db, sale_id, actor)
        product = await catalog.get_product(db, sale.product_id)
    await checkout.store.close(sale_id)
    await checkout.sale_event("sale_closed", sale, product.name)
    # The room's last word on this sale's counters and group-buys, read with their version.
    await checkout.settle(sale_id, force=True)
    return sale


async def close_session_sales(checkout: Checkout, session_id: int) -> list[Sale]:
    """Close every sale of the session not closed yet (holds keep their payment window; group-buys
    are decided at their deadlines as always). Idempotent: a second call closes nothing."""
    async with checkout.uow() as db:
        found = await sales.sales_of_session(db, session_id)
    return [await close_sale(checkout, sale.id, None) for sale in found
            if sale.status != sales.SaleStatus.CLOSED]


async def end_session_and_sales(checkout: Checkout, session_id: int,
                               actor: Principal | None) -> live_sessions.LiveSession:
    """End the live session, then close its sales: a hold that reaches Redis before its sale's
    close is an ordinary hold, one after it is refused (`ended`); a sale made meanwhile is
    refused (the session row is locked on both sides) or closed by open_sale. The caller
    announces `session_ended` after this returns."""
    async with checkout.uow() as db:
        session = await live_sessions.end_session(db, session_id, actor)
    await close_session_sales(checkout, session_id)
    return session
