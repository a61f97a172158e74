"""Where a sale's stock lives, chosen by the sale: one hash, or buckets over Redis Cluster slots.

A sale opened with `buckets` = 1 (the default) keeps its stock in `sale:{id}:meta` and every
transition is one script of store.py. With `buckets` > 1 the units and the holds live in the
buckets of buckets.py (each its own slot, so one sale can sell faster than one Redis core),
while everything else of the sale stays in its own slot under the same keys as ever: its
description and status, members, the payment ranks and the order log, the paid answers,
pickup choices. `SaleStock` answers every call of `FlashSaleStore` for both kinds, so callers
(checkout, lifecycle, the sweeper, the order log, reconcile, refunds, payment providers) never
ask which kind a sale is. What the bucketed kind does differently:

- reserve: the buyer's community and price are decided here from the sale's members hash (as
  reserve.lua does), then buckets.py takes her allowance, finds a bucket with stock and ranks
  the hold sale-wide;
- pay: bucket_confirm.lua moves the units to sold in their bucket, then bucket_paid.lua gives
  the payment its sale-wide rank (the first-N gift) and its order-log entry, once per hold. A
  worker dying between the two leaves the payment listed in its bucket's `unlogged` set, and
  the sweeper finishes it;
- counts are the sums over the buckets; the sale's version is the sum of its buckets' versions
  and its meta's. Each only grows, so a read made after another ended never has a lower sum,
  and two reads with the same sum saw the same values: the room keeps the latest state as it
  does with one hash.

Group-buys need a community's people and units counted in the same step as the stock, which
buckets cannot do: a bucketed sale refuses them (commerce/group_buys.py).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.commands.core import AsyncScript

from commerce.errors import Forbidden
from commerce.flash_sale.buckets import BucketedStore, InFlight
from commerce.flash_sale.store import (
    Counts,
    FlashSaleStore,
    NoSuchHold,
    NotMember,
    RedisLike,
    SaleSpec,
    _decode,
    keys,
    now_ms,
    sale_of_hold,
    text,
)

log = logging.getLogger(__name__)
MAX_CACHED_SALES = 10_000
# A payment whose sale-wide step is missing this long after it was made lost its worker.
UNLOGGED_AFTER_MS = 5_000


@dataclass(frozen=True)
class _Described:
    """What a bucketed sale's reservations need of its meta (fixed once it opened)."""

    session: int
    price: int
    cprice: int | None
    members_only: bool


class SaleStock(FlashSaleStore):
    """Every sale's stock, in one hash or in buckets as the sale was opened."""

    def __init__(self, redis: RedisLike) -> None:
        super().__init__(redis)
        self.buckets = BucketedStore(redis)
        source = (resources.files("commerce.flash_sale") / "lua" / "bucket_paid.lua").read_text(
            encoding="utf-8")
        self._paid_script = AsyncScript(redis, source)
        self._kinds: dict[int, int] = {}
        self._described: dict[int, _Described] = {}
        # Concurrent count reads of one sale share one read that starts after they asked.
        self._count_waiters: dict[int, list[asyncio.Future[Counts | None]]] = {}
        self._counters: dict[int, asyncio.Task[None]] = {}
        # Bucketed reservations running in this process, by (sale, buyer, idempotency key).
        self._reserving: dict[tuple[int, int, str], asyncio.Task[dict[str, Any]]] = {}

    async def bucket_count(self, sale_id: int) -> int:
        """1 for a sale whose stock is one hash (or one Redis does not hold), else its buckets."""
        found = self._kinds.get(sale_id)
        if found is None:
            status, buckets = await self._redis.hmget(keys(sale_id)["meta"], ["status", "buckets"])
            if status is None:
                return 1  # not in Redis (yet): the one-hash scripts answer "unknown"
            if len(self._kinds) >= MAX_CACHED_SALES:
                self._kinds.clear()
            found = self._kinds[sale_id] = int(buckets or 1)
        return found

    async def _bucketed(self, sale_id: int) -> bool:
        return await self.bucket_count(sale_id) > 1

    async def _describe(self, sale_id: int) -> _Described:
        found = self._described.get(sale_id)
        if found is None:
            session, price, cprice, members_only = await self._redis.hmget(
                keys(sale_id)["meta"], ["session", "price", "cprice", "members_only"])
            if len(self._described) >= MAX_CACHED_SALES:
                self._described.clear()
            found = self._described[sale_id] = _Described(
                int(session or 0), int(price or 0),
                int(cprice) if cprice not in (None, b"", "") else None,
                text(members_only or b"0") == "1")
        return found

    # --- opening and closing -------------------------------------------------------------------

    async def open(self, spec: SaleSpec, members: dict[int, list[int]]) -> bool:
        if spec.buckets > 1:
            # The buckets first: once the meta exists and names them, every call goes there.
            await self.buckets.open(spec, spec.buckets)
        return await super().open(spec, members)

    async def close(self, sale_id: int, now: int | None = None) -> dict[str, Any]:
        result = await super().close(sale_id, now)
        if not await self._bucketed(sale_id):
            return result
        await self.buckets.close(sale_id)
        return {**result, **await self._counts_fields(sale_id)}

    # --- reserving -----------------------------------------------------------------------------

    async def reserve(
        self, sale_id: int, buyer: int, qty: int, community: int | None, idem_key: str,
        now: int | None = None,
    ) -> dict[str, Any]:
        if not await self._bucketed(sale_id):
            return await super().reserve(sale_id, buyer, qty, community, idem_key, now)
        # A repeat of a request still running here (a double tap) waits for its answer rather
        # than hearing in_flight; one in another process still does. The steps run as a task of
        # their own, so a client hanging up mid-way does not leave them half done.
        key = (sale_id, buyer, idem_key)
        running = self._reserving.get(key)
        if running is None:
            running = asyncio.get_running_loop().create_task(
                self._reserve_bucketed(sale_id, buyer, qty, community, idem_key, now))
            self._reserving[key] = running
            def done(task: asyncio.Task[dict[str, Any]]) -> None:
                self._reserving.pop(key, None)
                if not task.cancelled():
                    task.exception()  # retrieved: every waiter may have gone meanwhile

            running.add_done_callback(done)
        return dict(await asyncio.shield(running))

    async def _reserve_bucketed(
        self, sale_id: int, buyer: int, qty: int, community: int | None, idem_key: str,
        now: int | None,
    ) -> dict[str, Any]:
        sale = await self._describe(sale_id)
        # The buyer's community and price as reserve.lua decides them for a one-hash sale.
        home = await self._redis.hget(keys(sale_id)["members"], str(buyer))
        mine = [c for c in text(home).split(",") if c] if home is not None else []
        chosen = ""
        if community is not None:
            if str(community) not in mine:
                raise NotMember()
            chosen = str(community)
        elif mine:
            chosen = mine[0]
        if sale.members_only and not chosen:
            raise NotMember()
        price = sale.cprice if chosen and sale.cprice is not None else sale.price
        try:
            answer = await self.buckets.reserve(sale_id, buyer, qty, idem_key, now, chosen, price)
        except InFlight:
            # The first try's worker died mid-way long ago: settle its mark, then answer.
            if not await self.buckets.settle_stale(sale_id, buyer, idem_key, now):
                raise
            answer = await self.buckets.reserve(sale_id, buyer, qty, idem_key, now, chosen, price)
        return {**answer, **await self._counts_fields(sale_id), "session": sale.session,
                "list": sale.price, "cprice": "" if sale.cprice is None else sale.cprice,
                "people": 0, "units": 0, "group": False}

    async def hold(self, hold_id: str) -> dict[str, Any] | None:
        if not await self._bucketed(sale_of_hold(hold_id)):
            return await super().hold(hold_id)
        return await self.buckets.hold(hold_id)

    async def ever_held(self, hold_id: str) -> bool:
        if not await self._bucketed(sale_of_hold(hold_id)):
            return await super().ever_held(hold_id)
        return await self.buckets.ever_held(hold_id)

    async def bought_by(self, sale_id: int, user_id: int) -> int:
        if not await self._bucketed(sale_id):
            return await super().bought_by(sale_id, user_id)
        return await self.buckets.bought_by(sale_id, user_id)

    # --- paying, giving back -------------------------------------------------------------------

    async def confirm(
        self, hold_id: str, buyer: int | None, payment_ref: str, unit_price_fen: int,
        now: int | None = None,
    ) -> dict[str, Any]:
        sale_id = sale_of_hold(hold_id)
        if not await self._bucketed(sale_id):
            return await super().confirm(hold_id, buyer, payment_ref, unit_price_fen, now)
        done = await self.paid(hold_id)
        if done is not None:
            if buyer is not None and int(done["buyer"]) != buyer:
                raise Forbidden("这不是你的订单 / Not your hold", reason="not_yours")
            return {**done, **await self._counts_fields(sale_id)}
        paid = await self.buckets.pay(hold_id, buyer, payment_ref, unit_price_fen, now)
        return await self._log_payment(sale_id, hold_id, paid)

    async def paid(self, hold_id: str) -> dict[str, Any] | None:
        done = await super().paid(hold_id)
        sale_id = sale_of_hold(hold_id)
        if done is not None or not await self._bucketed(sale_id):
            return done
        # Paid in its bucket, its sale-wide step not done yet (running now, or its worker
        # died): done here, once, so the hold never looks gone while it is being paid.
        record = await self.buckets.paid_record(hold_id)
        return None if record is None else await self._log_payment(sale_id, hold_id, record)

    async def _log_payment(self, sale_id: int, hold_id: str,
                           paid: dict[str, Any]) -> dict[str, Any]:
        """The payment's rank and order-log entry (once per hold), then its bucket forgets it
        was waiting for them."""
        k = keys(sale_id)
        answer = _decode(await self._paid_script(keys=[k["meta"], k["paid"], k["log"]], args=[
            hold_id, paid["buyer"], paid["qty"], paid["price"], paid["community"], paid["ref"],
            paid["at"]]))
        await self.buckets.logged(hold_id)
        return {**answer, **await self._counts_fields(sale_id)}

    async def finish_payments(self, sale_id: int, now: int | None = None,
                              older_than_ms: int | None = None) -> int:
        """Payments whose worker died between their bucket and their sale-wide step (made more
        than `older_than_ms` ago, by default UNLOGGED_AFTER_MS) get the latter now; returns how
        many."""
        age = UNLOGGED_AFTER_MS if older_than_ms is None else older_than_ms
        due = await self.buckets.unlogged(sale_id, (now or now_ms()) - age)
        for hold_id, record in due:
            await self._log_payment(sale_id, hold_id, record)
        return len(due)

    async def forget(self, sale_id: int) -> None:
        # A payment still waiting for its sale-wide step gets it first, and the sale stays
        # active until the order-log consumer has carried that entry into SQL too.
        if await self._bucketed(sale_id) and await self.finish_payments(sale_id, older_than_ms=0):
            return
        await super().forget(sale_id)

    async def release(self, hold_id: str, buyer: int | None) -> dict[str, Any]:
        sale_id = sale_of_hold(hold_id)
        if not await self._bucketed(sale_id):
            return await super().release(hold_id, buyer)
        out = await self.buckets.release(hold_id, buyer)
        back = out.get("back") or [[buyer, 0, hold_id]]
        return {"ok": 1, "qty": int(back[0][1]), "community": "", "people": 0, "units": 0,
                **await self._counts_fields(sale_id)}

    async def expire(self, sale_id: int, now: int | None = None, batch: int = 500) -> dict[str, Any]:
        if not await self._bucketed(sale_id):
            return await super().expire(sale_id, now, batch)
        await self.finish_payments(sale_id, now)
        expired = await self.buckets.expire(sale_id, now)
        return {"expired": expired, "communities": {}, **await self._counts_fields(sale_id)}

    async def refund(self, hold_id: str, buyer: int, qty: int, community: int | None) -> dict[str, Any]:
        sale_id = sale_of_hold(hold_id)
        if not await self._bucketed(sale_id):
            return await super().refund(hold_id, buyer, qty, community)
        again = 1
        try:
            again = int((await self.buckets.refund(hold_id))["again"])
        except NoSuchHold:
            # Never paid in its bucket: nothing to give back (reconcile lists it as a refund
            # Redis is missing).
            log.error("refund of a hold no bucket has paid", extra={"hold_id": hold_id})
        return {"ok": 1, "again": again, "people": 0, "units": 0,
                **await self._counts_fields(sale_id)}

    async def refunded_holds(self, sale_id: int) -> set[str]:
        if not await self._bucketed(sale_id):
            return await super().refunded_holds(sale_id)
        return await self.buckets.refunded_holds(sale_id)

    # --- reading -------------------------------------------------------------------------------

    async def counts(self, sale_id: int) -> Counts | None:
        if not await self._bucketed(sale_id):
            return await super().counts(sale_id)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Counts | None] = loop.create_future()
        self._count_waiters.setdefault(sale_id, []).append(future)
        if sale_id not in self._counters:
            self._counters[sale_id] = loop.create_task(self._read_counts(sale_id))
        return await future

    async def _read_counts(self, sale_id: int) -> None:
        """One read for every caller waiting when it starts; those who come while it runs get
        the next (what they are told is never older than their own change)."""
        waiters = self._count_waiters[sale_id]
        try:
            while waiters:
                batch = waiters[:]
                del waiters[:]
                try:
                    counts = await self._bucketed_counts(sale_id)
                except Exception as exc:  # every waiter of this read gets the failure
                    for future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                except BaseException:  # cancelled (shutdown): nobody may wait forever
                    for future in batch + waiters:
                        future.cancel()
                    waiters.clear()
                    raise
                for future in batch:
                    if not future.done():  # the caller may have been cancelled meanwhile
                        future.set_result(counts)
        finally:
            del self._counters[sale_id]
            if not waiters:
                self._count_waiters.pop(sale_id, None)

    async def _bucketed_counts(self, sale_id: int) -> Counts | None:
        meta, summed = await asyncio.gather(
            self._redis.hmget(keys(sale_id)["meta"], ["initial", "paid", "gift_n", "status", "ver"]),
            self.buckets.counts(sale_id))
        initial, paid, gift_n, status, ver = meta
        if status is None:
            return None
        return Counts(int(initial or 0), summed.remaining, summed.held, summed.sold,
                      int(paid or 0), int(gift_n or 0), status=text(status),
                      ver=int(ver or 0) + summed.ver)

    async def _counts_fields(self, sale_id: int) -> dict[str, Any]:
        """The sale-wide counters a script of the one-hash kind hands back with its answer."""
        counts = await self.counts(sale_id)
        if counts is None:
            return {}
        return {"remaining": counts.remaining, "held": counts.held, "sold": counts.sold,
                "gift_left": counts.gift_left, "ver": counts.ver}

    async def snapshot(self, sale_id: int) -> dict[str, Any] | None:
        if not await self._bucketed(sale_id):
            return await super().snapshot(sale_id)
        counts = await self.counts(sale_id)
        if counts is None:
            return None
        out: dict[str, Any] = {"initial": 0, "remaining": 0, "held": 0, "sold": 0,
                               "hold_units": 0, "holds": 0, "paid": counts.paid,
                               "gift_n": counts.gift_n, "status": counts.status,
                               "unbalanced_buckets": []}
        for bucket, snap in enumerate(await self.buckets.snapshots(sale_id)):
            for name in ("initial", "remaining", "held", "sold", "hold_units", "holds"):
                out[name] += int(snap.get(name) or 0)
            if int(snap["initial"]) != int(snap["remaining"]) + int(snap["held"]) + \
                    int(snap["sold"]) or int(snap["held"]) != int(snap["hold_units"]) \
                    or int(snap["remaining"]) < 0:
                out["unbalanced_buckets"].append(bucket)
        if out["initial"] != counts.initial:  # the buckets' shares must add up to the stock
            out["unbalanced_buckets"].append(-1)
        return out

    async def progress(self, sale_id: int) -> dict[str, Any] | None:
        if not await self._bucketed(sale_id):
            return await super().progress(sale_id)
        counts = await self.counts(sale_id)
        if counts is None:
            return None
        return {"ver": counts.ver, "session": (await self._describe(sale_id)).session,
                "status": counts.status, "remaining": counts.remaining, "held": counts.held,
                "sold": counts.sold, "paid": counts.paid, "gift_n": counts.gift_n}

    async def live_holds(self, sale_id: int) -> dict[str, dict[str, Any]]:
        if not await self._bucketed(sale_id):
            return await super().live_holds(sale_id)
        return await self.buckets.live_holds(sale_id)
