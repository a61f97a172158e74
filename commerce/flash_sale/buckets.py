"""Bucketed stock: one sale's units split over K buckets in different Redis Cluster slots.

One sale's stock in one key can never sell faster than the one Redis core that owns its slot.
Here the stock is split over K buckets, each a hash tag of its own (`bsale:{<sale>.<b>.<n>}:…`,
`n` chosen so bucket b's slot lies in the b-th K-th of the slot range: with the slots split
evenly over the nodes, K buckets land on K nodes). Every script call touches one slot, so the
steps of a reservation are driven from here:

1. `bucket_take.lua` on the buyer's own key (`bsale:{<sale>.u<buyer>}:buyer`, her own slot)
   counts the units against her per-buyer limit, marks them in flight under the request's
   idempotency key, or answers what that key was answered before. The limit is exact: the
   buyer's units live in one key whichever buckets serve her.
2. `bucket_reserve.lua` on the bucket her id hashes to: a hold if it has the units, else
   "empty", and the next bucket is asked, at most K calls in all.
3. With a hold, `bucket_rank.lua` gives it its sale-wide rank in the sale's coordinating key
   (`bsale:{<sale>}:ranks`, assign-once per hold: unique and dense; the holds of concurrent
   requests are ranked in one call, as this key is the step every success shares), then
   `bucket_done.lua` stores the answer on the buyer's key. With no hold, `bucket_give.lua`
   gives the units back and stores "sold_out" (or, for an ended or not yet open sale, stores
   nothing).

A request sees "sold_out" when no single bucket holds its quantity; one-unit requests drain
every bucket to zero. A worker that dies between the steps leaves its units marked in flight
on the buyer's key: a retry with the same key answers `in_flight` (409) until `reconcile`
finishes it (the hold exists: rank and answer) or gives the units back (no bucket made it),
once the mark is older than any live request can be. Payments take a sale-wide payment rank
the same way; the first `gift_first_n` payments get the gift. Hold ids keep the shape
`<sale>-<number>`, the bucket being the number modulo K.

The app reaches this through commerce/flash_sale/stock.py, which pays with `pay` (the bucket's
step only) and takes the payment's rank with its order-log entry in the sale's own slot.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from redis.commands.core import AsyncScript
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from commerce.errors import Conflict
from commerce.flash_sale.store import (
    MAX_BATCH,
    MAX_QTY,
    NoSuchHold,
    RedisLike,
    SaleNotFound,
    SaleSpec,
    _decode,
    now_ms,
    sale_of_hold,
    text,
)

MAX_BUCKETS = 16
# An in-flight mark older than this belongs to a dead worker (requests time out long before).
STALE_MS = 60_000
# Holds per sweep call of one bucket (bounds one script's run time).
SWEEP_BATCH = 500
_SCRIPTS = ("bucket_open", "bucket_take", "bucket_give", "bucket_done", "bucket_reserve",
            "bucket_confirm", "bucket_release", "bucket_rank", "bucket_close", "bucket_refund",
            "snapshot")


class InFlight(Conflict):
    code = "in_flight"
    default_message = "上一次请求仍在处理,请稍后再试 / The first try of this request is still being handled"


@lru_cache(maxsize=4096)
def bucket_tag(sale_id: int, bucket: int, buckets: int) -> str:
    """The hash tag of one bucket: its slot lies in the bucket's share of the slot range."""
    low = bucket * REDIS_CLUSTER_HASH_SLOTS // buckets
    high = (bucket + 1) * REDIS_CLUSTER_HASH_SLOTS // buckets
    n = 0
    while True:
        tag = f"{sale_id}.{bucket}.{n}"
        if low <= key_slot(tag.encode()) < high:
            return tag
        n += 1


def bucket_keys(sale_id: int, bucket: int, buckets: int) -> dict[str, str]:
    tag = f"bsale:{{{bucket_tag(sale_id, bucket, buckets)}}}:"
    return {name: tag + name for name in ("meta", "holds", "expiry", "keys", "paid", "back",
                                          "unlogged", "refunded")}


def buyer_key(sale_id: int, buyer: int) -> str:
    return f"bsale:{{{sale_id}.u{buyer}}}:buyer"


def sale_keys(sale_id: int) -> dict[str, str]:
    """The sale's coordinating keys (one slot): its shape and its ranks."""
    return {"spec": f"bsale:{{{sale_id}}}:spec", "ranks": f"bsale:{{{sale_id}}}:ranks"}


def first_bucket(buyer: int, buckets: int) -> int:
    """Where a buyer's reservations start (a multiplicative hash: neighbours' ids spread)."""
    return (buyer * 2654435761 & 0xFFFFFFFF) % buckets


def shares(stock: int, buckets: int) -> list[int]:
    return [stock // buckets + (1 if b < stock % buckets else 0) for b in range(buckets)]


@dataclass(frozen=True)
class Shape:
    """What every step needs to know of a bucketed sale (immutable once it opened)."""

    buckets: int
    limit: int
    gift_n: int
    initial: int


@dataclass
class BucketCounts:
    initial: int
    remaining: int
    held: int
    sold: int
    buckets: list[dict[str, int]] = field(default_factory=list)
    ver: int = 0  # the sum of the buckets' versions (each only ever grows)


@dataclass
class BucketReport:
    """What `reconcile` found: `ok` when every bucket balances, nothing is oversold and every
    buyer's counted units equal her holds and payments plus her requests in flight."""

    sale_id: int
    initial: int
    remaining: int
    held: int
    sold: int
    unbalanced_buckets: list[int] = field(default_factory=list)
    oversold: int = 0
    buyer_drift: dict[int, tuple[int, int]] = field(default_factory=dict)  # buyer → (counted, true)
    finished: int = 0  # in-flight requests whose hold existed: ranked and answered now
    given_back: int = 0  # in-flight requests no bucket served: units returned
    given_back_holds: int = 0  # holds back in their bucket, the buyer not yet given her units
    ranked_late: int = 0  # payments whose rank was not given yet
    repaired: int = 0

    @property
    def ok(self) -> bool:
        return not (self.unbalanced_buckets or self.oversold or self.buyer_drift)


def _paid_fields(record: dict[str, Any]) -> dict[str, Any]:
    return {"buyer": record["b"], "qty": int(record["q"]), "price": int(record.get("p") or 0),
            "community": record.get("c") or "", "ref": record["ref"],
            "at": int(record.get("at") or 0)}


class BucketedStore:
    """The bucket scripts bound to one Redis or Redis Cluster client."""

    def __init__(self, redis: RedisLike) -> None:
        self._redis = redis
        folder = resources.files("commerce.flash_sale") / "lua"
        self._scripts = {name: AsyncScript(redis, (folder / f"{name}.lua").read_text("utf-8"))
                         for name in _SCRIPTS}
        self._shapes: dict[int, Shape] = {}
        # Rank requests waiting per (sale, kind), and the one task per key sending them.
        self._rank_queues: dict[tuple[int, str], list[tuple[str, asyncio.Future[int]]]] = {}
        self._rankers: dict[tuple[int, str], asyncio.Task[None]] = {}

    async def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self._scripts[name](keys=keys, args=args)

    # --- shape -----------------------------------------------------------------------------

    async def open(self, spec: SaleSpec, buckets: int) -> bool:
        """Split the stock over `buckets` buckets; idempotent (an open sale keeps its counts)."""
        if not 1 <= buckets <= MAX_BUCKETS:
            raise ValueError(f"buckets must be 1..{MAX_BUCKETS}")
        k = sale_keys(spec.sale_id)
        created = bool(await self._redis.hsetnx(k["spec"], "buckets", buckets))
        if created:
            await self._redis.hset(k["spec"], mapping={
                "limit": spec.per_buyer_limit, "gift_n": spec.gift_first_n, "initial": spec.stock})
        shape = await self.shape(spec.sale_id)
        for bucket, share in enumerate(shares(spec.stock, shape.buckets)):
            await self._run("bucket_open", [bucket_keys(spec.sale_id, bucket, shape.buckets)["meta"]],
                            [spec.sale_id, bucket, shape.buckets, share, spec.starts_ms,
                             spec.ends_ms, spec.hold_ttl_s])
        return created

    async def shape(self, sale_id: int) -> Shape:
        shape = self._shapes.get(sale_id)
        if shape is None:
            raw = await self._redis.hmget(sale_keys(sale_id)["spec"],
                                          ["buckets", "limit", "gift_n", "initial"])
            if any(v is None for v in raw):
                raise SaleNotFound()
            buckets, limit, gift_n, initial = (int(v or 0) for v in raw)
            shape = self._shapes[sale_id] = Shape(buckets, limit, gift_n, initial)
        return shape

    # --- reserving -------------------------------------------------------------------------

    async def reserve(self, sale_id: int, buyer: int, qty: int, idem_key: str,
                      now: int | None = None, community: str = "",
                      price: int = 0) -> dict[str, Any]:
        """Hold `qty` units from the first bucket that has them; raises SoldOut, OverLimit,
        NotOpen, Ended, SaleNotFound or InFlight. A retry with the same key answers the same.
        The hold keeps the community the buyer buys through and the unit price quoted."""
        if not 1 <= qty <= MAX_QTY:
            raise ValueError("qty out of range")
        shape = await self.shape(sale_id)
        now = now or now_ms()
        mine = buyer_key(sale_id, buyer)
        taken = json.loads(await self._run("bucket_take", [mine],
                                           [idem_key, qty, shape.limit, now]))
        if "answer" in taken:
            return _decode(taken["answer"])
        if taken.get("err") == "in_flight":
            found = await self._made(sale_id, shape, buyer, idem_key)
            if found is None:
                raise InFlight()
            return await self._finish(sale_id, mine, idem_key, found)
        start = first_bucket(buyer, shape.buckets)
        for step in range(shape.buckets):
            bucket = (start + step) % shape.buckets
            k = bucket_keys(sale_id, bucket, shape.buckets)
            made = json.loads(await self._run(
                "bucket_reserve", [k["meta"], k["holds"], k["expiry"], k["keys"]],
                [now, buyer, qty, idem_key, community, price]))
            if made.get("ok"):
                made["bucket"] = bucket
                return await self._finish(sale_id, mine, idem_key, made)
            if made["err"] != "empty":  # ended, not_open, unknown: the same for every bucket
                await self._run("bucket_give", [mine], [qty, idem_key, ""])
                return _decode(json.dumps(made))
        answer = json.dumps({"err": "sold_out", "remaining": 0})
        await self._run("bucket_give", [mine], [qty, idem_key, answer])
        return _decode(answer)

    async def settle_stale(self, sale_id: int, buyer: int, idem_key: str, now: int | None = None,
                           stale_ms: int = STALE_MS) -> bool:
        """One request's in-flight mark, once older than `stale_ms` (its worker died): finished
        if a bucket made its hold, else its units given back, as `reconcile` does for all.
        True when the mark is gone now (a retry gets an answer)."""
        shape = await self.shape(sale_id)
        mine = buyer_key(sale_id, buyer)
        raw = await self._redis.hget(mine, "p:" + idem_key)
        if raw is None:
            return True
        qty, _sep, since = text(raw).partition(":")
        if (now or now_ms()) - int(since) < stale_ms:
            return False
        made = await self._made(sale_id, shape, buyer, idem_key)
        if made is None:
            await self._run("bucket_give", [mine], [int(qty), idem_key, ""])
        else:
            await self._finish(sale_id, mine, idem_key, made)
        return True

    async def _finish(self, sale_id: int, mine: str, idem_key: str,
                      made: dict[str, Any]) -> dict[str, Any]:
        rank = await self._rank(sale_id, "h", str(made["hold"]))
        answer = json.dumps({"ok": 1, "hold": made["hold"], "qty": made["qty"],
                             "expires": made["expires"], "remaining": made["remaining"],
                             "rank": rank, "bucket": made["bucket"],
                             "community": made.get("community") or "",
                             "price": int(made.get("price") or 0)})
        return _decode(await self._run("bucket_done", [mine], [idem_key, answer]))

    async def _rank(self, sale_id: int, kind: str, hold: str) -> int:
        """The hold's sale-wide rank. Concurrent calls for one sale go in one script call: the
        coordinating slot is the one step every success shares, so it must not take one call
        per reservation (ranks stay in arrival order within a call)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        key = (sale_id, kind)
        self._rank_queues.setdefault(key, []).append((hold, future))
        if key not in self._rankers:
            self._rankers[key] = loop.create_task(self._send_ranks(key))
        return await future

    async def _send_ranks(self, key: tuple[int, str]) -> None:
        sale_id, kind = key
        queue = self._rank_queues[key]
        try:
            while queue:
                batch = queue[:MAX_BATCH]
                del queue[:MAX_BATCH]
                try:
                    ranks = await self._run("bucket_rank", [sale_keys(sale_id)["ranks"]],
                                            [kind, *(hold for hold, _f in batch)])
                except Exception as exc:  # every waiter of this batch gets the failure
                    for _hold, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                except BaseException:  # cancelled (shutdown): nobody may wait forever
                    for _hold, future in batch + queue:
                        future.cancel()
                    queue.clear()
                    raise
                for (_hold, future), rank in zip(batch, ranks, strict=True):
                    if not future.done():  # the request may have been cancelled meanwhile
                        future.set_result(int(rank))
        finally:
            del self._rankers[key]
            if not queue:
                self._rank_queues.pop(key, None)

    async def _made(self, sale_id: int, shape: Shape, buyer: int,
                    idem_key: str) -> dict[str, Any] | None:
        """The hold a request made, looked up in every bucket (after a worker died mid-way)."""
        for bucket in range(shape.buckets):
            k = bucket_keys(sale_id, bucket, shape.buckets)
            hold = await self._redis.hget(k["keys"], f"{buyer}:{idem_key}")
            if hold is None:
                continue
            raw = await self._redis.hget(k["holds"], hold) or await self._redis.hget(k["paid"], hold)
            h = json.loads(raw) if raw is not None else {"q": 0}
            remaining = int(await self._redis.hget(k["meta"], "remaining") or 0)
            return {"hold": text(hold), "qty": int(h["q"]), "expires": int(h.get("e", 0)),
                    "remaining": remaining, "bucket": bucket, "community": h.get("c") or "",
                    "price": int(h.get("p") or 0)}
        return None

    # --- after the hold ------------------------------------------------------------------------

    async def _bucket_of(self, hold_id: str) -> tuple[int, Shape, dict[str, str]]:
        sale_id = sale_of_hold(hold_id)
        try:
            shape = await self.shape(sale_id)
        except SaleNotFound:
            raise NoSuchHold() from None
        bucket = int(hold_id.partition("-")[2]) % shape.buckets
        return sale_id, shape, bucket_keys(sale_id, bucket, shape.buckets)

    async def confirm(self, hold_id: str, buyer: int | None, payment_ref: str,
                      now: int | None = None) -> dict[str, Any]:
        """Hold → sold; the payment's sale-wide rank decides the first-N gift. Repeats answer
        the same rank."""
        sale_id, shape, k = await self._bucket_of(hold_id)
        paid = _decode(await self._run(
            "bucket_confirm", [k["meta"], k["holds"], k["expiry"], k["paid"]],
            [hold_id, "" if buyer is None else buyer, payment_ref, now or now_ms()]))
        rank = await self._rank(sale_id, "p", hold_id)
        return {**paid, "hold": hold_id, "paid_rank": rank, "gift": int(rank <= shape.gift_n)}

    async def release(self, hold_id: str, buyer: int | None) -> dict[str, Any]:
        """A live hold goes back to its bucket and its units to the buyer's allowance."""
        sale_id, _shape, k = await self._bucket_of(hold_id)
        out = _decode(await self._run(
            "bucket_release", [k["meta"], k["holds"], k["expiry"], k["back"]],
            ["hold", hold_id, "" if buyer is None else buyer]))
        await self._give_back(sale_id, k, out.get("back", []))
        return out

    async def hold(self, hold_id: str) -> dict[str, Any] | None:
        """A live hold (buyer b, qty q, community c, unit price p, expiry e), or None."""
        _sale_id, _shape, k = await self._bucket_of(hold_id)
        raw = await self._redis.hget(k["holds"], hold_id)
        return None if raw is None else dict(json.loads(raw))

    async def ever_held(self, hold_id: str) -> bool:
        """Whether the hold's bucket made it (it may be gone since): hold `n` is the bucket's
        (n // buckets)-th."""
        _sale_id, shape, k = await self._bucket_of(hold_id)
        seq = int(await self._redis.hget(k["meta"], "seq") or 0)
        return int(hold_id.partition("-")[2]) // shape.buckets <= seq

    async def pay(self, hold_id: str, buyer: int | None, payment_ref: str, unit_price_fen: int,
                  now: int | None = None) -> dict[str, Any]:
        """Hold → sold in its bucket at the price charged, listed as not yet logged until
        `logged` (the sale-wide step is the caller's); repeats answer the first payment."""
        _sale_id, _shape, k = await self._bucket_of(hold_id)
        return _decode(await self._run(
            "bucket_confirm", [k["meta"], k["holds"], k["expiry"], k["paid"], k["unlogged"]],
            [hold_id, "" if buyer is None else buyer, payment_ref, now or now_ms(),
             unit_price_fen]))

    async def logged(self, hold_id: str) -> None:
        """The payment's sale-wide step is done: the sweeper need not finish it."""
        _sale_id, _shape, k = await self._bucket_of(hold_id)
        await self._redis.zrem(k["unlogged"], hold_id)

    async def paid_record(self, hold_id: str) -> dict[str, Any] | None:
        """The payment of a hold as its bucket holds it (buyer, qty, community, price, ref, at),
        refunded or not; None when the bucket has not paid it."""
        _sale_id, _shape, k = await self._bucket_of(hold_id)
        raw = await self._redis.hget(k["paid"], hold_id) or await self._redis.hget(k["refunded"],
                                                                                  hold_id)
        return None if raw is None else _paid_fields(json.loads(raw))

    async def unlogged(self, sale_id: int, paid_before_ms: int) -> list[tuple[str, dict[str, Any]]]:
        """Payments made before `paid_before_ms` whose sale-wide step is not known to be done
        (its worker died in between), with their paid records (as `paid_record`)."""
        shape = await self.shape(sale_id)
        found: list[tuple[str, dict[str, Any]]] = []
        for bucket in range(shape.buckets):
            k = bucket_keys(sale_id, bucket, shape.buckets)
            listed: Any = await self._redis.zrangebyscore(
                k["unlogged"], "-inf", paid_before_ms, start=0, num=SWEEP_BATCH)
            for raw_hold in listed:
                hold = text(raw_hold)
                raw = await self._redis.hget(k["paid"], hold) or \
                    await self._redis.hget(k["refunded"], hold)
                if raw is not None:
                    found.append((hold, _paid_fields(json.loads(raw))))
        return found

    async def refund(self, hold_id: str) -> dict[str, Any]:
        """A paid hold's units back to its bucket, and to the buyer's allowance; once per hold."""
        sale_id, _shape, k = await self._bucket_of(hold_id)
        out = _decode(await self._run(
            "bucket_refund", [k["meta"], k["paid"], k["back"], k["refunded"]], [hold_id]))
        if not out["again"]:
            await self._give_back(sale_id, k, [[out["buyer"], out["qty"], hold_id]])
        return out

    async def refunded_holds(self, sale_id: int) -> set[str]:
        shape = await self.shape(sale_id)
        found: set[str] = set()
        for bucket in range(shape.buckets):
            k = bucket_keys(sale_id, bucket, shape.buckets)
            found.update(text(h) for h in await self._redis.hkeys(k["refunded"]))
        return found

    async def live_holds(self, sale_id: int) -> dict[str, dict[str, Any]]:
        shape = await self.shape(sale_id)
        found: dict[str, dict[str, Any]] = {}
        for bucket in range(shape.buckets):
            raw = await self._redis.hgetall(bucket_keys(sale_id, bucket, shape.buckets)["holds"])
            found.update({text(h): dict(json.loads(v)) for h, v in raw.items()})
        return found

    async def snapshots(self, sale_id: int) -> list[dict[str, Any]]:
        """Each bucket's counts and live-hold units, read atomically per bucket (snapshot.lua)."""
        shape = await self.shape(sale_id)
        found = []
        for bucket in range(shape.buckets):
            k = bucket_keys(sale_id, bucket, shape.buckets)
            found.append(dict(json.loads(await self._run("snapshot", [k["meta"], k["holds"]], []))))
        return found

    async def expire(self, sale_id: int, now: int | None = None) -> int:
        """Every hold past its expiry goes back, in every bucket; returns how many."""
        shape = await self.shape(sale_id)
        expired = 0
        for bucket in range(shape.buckets):
            k = bucket_keys(sale_id, bucket, shape.buckets)
            await self._give_back_leftovers(sale_id, k)
            while True:
                out = _decode(await self._run(
                    "bucket_release", [k["meta"], k["holds"], k["expiry"], k["back"]],
                    ["expired", now or now_ms(), SWEEP_BATCH]))
                back = out.get("back", [])
                await self._give_back(sale_id, k, back)
                expired += len(back)
                if len(back) < SWEEP_BATCH:
                    break
        return expired

    async def _give_back(self, sale_id: int, k: dict[str, str], back: list[list[Any]]) -> None:
        """The buyers' allowance for holds that went back to bucket `k` (once per hold), then
        the bucket forgets them; a worker dying in between leaves them listed for the sweeper."""
        for buyer, qty, hold in back:
            await self._run("bucket_give", [buyer_key(sale_id, int(buyer))],
                            [int(qty), "", "", hold])
        for at in range(0, len(back), SWEEP_BATCH):
            await self._redis.hdel(k["back"], *(hold for _b, _q, hold in back[at:at + SWEEP_BATCH]))

    async def _give_back_leftovers(self, sale_id: int, k: dict[str, str]) -> int:
        listed = await self._redis.hgetall(k["back"])
        back = [[*text(value).split(":"), text(hold)] for hold, value in listed.items()]
        await self._give_back(sale_id, k, back)
        return len(back)

    async def close(self, sale_id: int) -> int:
        """Every bucket stops selling; returns how many were still open."""
        shape = await self.shape(sale_id)
        closed = 0
        for bucket in range(shape.buckets):
            closed += int(await self._run(
                "bucket_close", [bucket_keys(sale_id, bucket, shape.buckets)["meta"]], []))
        return closed

    # --- reading -----------------------------------------------------------------------------

    async def counts(self, sale_id: int) -> BucketCounts:
        shape = await self.shape(sale_id)
        out = BucketCounts(initial=shape.initial, remaining=0, held=0, sold=0)
        # All at once: on a cluster each bucket is another node (one read is atomic per bucket).
        found = await asyncio.gather(*(
            self._redis.hmget(bucket_keys(sale_id, bucket, shape.buckets)["meta"],
                              ["initial", "remaining", "held", "sold", "ver"])
            for bucket in range(shape.buckets)))
        for raw in found:
            initial, remaining, held, sold, ver = (int(v or 0) for v in raw)
            out.remaining, out.held, out.sold = out.remaining + remaining, out.held + held, \
                out.sold + sold
            out.ver += ver
            out.buckets.append({"initial": initial, "remaining": remaining, "held": held,
                                "sold": sold})
        return out

    async def bought_by(self, sale_id: int, buyer: int) -> int:
        """Units counted against the buyer's limit (held, paid, or in flight)."""
        return int(await self._redis.hget(buyer_key(sale_id, buyer), "n") or 0)

    async def ranks(self, sale_id: int, kind: str) -> dict[str, int]:
        """hold id → its rank, for kind "h" (holds) or "p" (payments)."""
        raw = await self._redis.hgetall(sale_keys(sale_id)["ranks"])
        prefix = kind + ":"
        return {text(f)[len(prefix):]: int(v) for f, v in raw.items() if text(f).startswith(prefix)}

    # --- the books -------------------------------------------------------------------------------

    async def reconcile(self, sale_id: int, now: int | None = None, stale_ms: int = STALE_MS,
                        repair: bool = False, rank_payments: bool = True) -> BucketReport:
        """Check every bucket balances (initial = remaining + held + sold, held = units of live
        holds, sold = units paid) and every buyer's counted units equal her holds and payments
        plus her requests in flight. In-flight marks older than `stale_ms` are finished (their
        hold exists) or given back (it does not). With `repair`, a buyer's count is set to what
        the buckets say: only for a quiet sale (a request running meanwhile would be missed).
        Without `rank_payments` the payment ranks are left to the caller (the app ranks them in
        the sale's meta, commerce/flash_sale/stock.py)."""
        now = now or now_ms()
        shape = await self.shape(sale_id)
        report = BucketReport(sale_id, shape.initial, 0, 0, 0)
        true_units: dict[int, int] = defaultdict(int)
        initial_total = 0
        paid_ranks = await self.ranks(sale_id, "p")
        for bucket in range(shape.buckets):
            k = bucket_keys(sale_id, bucket, shape.buckets)
            report.given_back_holds += await self._give_back_leftovers(sale_id, k)
            raw = await self._redis.hmget(k["meta"], ["initial", "remaining", "held", "sold"])
            initial, remaining, held, sold = (int(v or 0) for v in raw)
            initial_total += initial
            report.remaining += remaining
            report.held += held
            report.sold += sold
            held_units = paid_units = 0
            for value in (await self._redis.hgetall(k["holds"])).values():
                h = json.loads(value)
                held_units += int(h["q"])
                true_units[int(h["b"])] += int(h["q"])
            for hold, value in (await self._redis.hgetall(k["paid"])).items():
                p = json.loads(value)
                paid_units += int(p["q"])
                true_units[int(p["b"])] += int(p["q"])
                if rank_payments and text(hold) not in paid_ranks:  # its worker died first
                    await self._rank(sale_id, "p", text(hold))
                    report.ranked_late += 1
            if remaining < 0 or initial != remaining + held + sold or held != held_units \
                    or sold != paid_units:
                report.unbalanced_buckets.append(bucket)
        report.oversold = max(0, report.held + report.sold - shape.initial) + \
            abs(initial_total - shape.initial)
        pattern = re.compile(rf"^bsale:\{{{sale_id}\.u(\d+)\}}:buyer$")
        for raw_key in [text(key) async for key in
                        self._redis.scan_iter(match=f"bsale:{{{sale_id}.u*}}:buyer", count=1000)]:
            match = pattern.match(raw_key)
            if match is None:
                continue
            buyer = int(match.group(1))
            fields = {text(f): text(v) for f, v in (await self._redis.hgetall(raw_key)).items()}
            in_flight = 0
            for name, value in fields.items():
                if not name.startswith("p:"):
                    continue
                idem_key = name[2:]
                qty, _sep, since = value.partition(":")
                made = await self._made(sale_id, shape, buyer, idem_key)
                if now - int(since) < stale_ms:
                    if made is None:  # a made hold counts among the holds already
                        in_flight += int(qty)
                    continue
                if made is None:
                    await self._run("bucket_give", [raw_key], [int(qty), idem_key, ""])
                    report.given_back += 1
                else:
                    await self._finish(sale_id, raw_key, idem_key, made)
                    report.finished += 1
            counted = int(await self._redis.hget(raw_key, "n") or 0)
            truth = true_units.pop(buyer, 0) + in_flight
            if counted != truth:
                if repair:
                    await self._redis.hset(raw_key, "n", truth)
                    report.repaired += 1
                else:
                    report.buyer_drift[buyer] = (counted, truth)
        for buyer, truth in true_units.items():  # units held by a buyer with no key: lost count
            if truth:
                report.buyer_drift[buyer] = (0, truth)
        return report
