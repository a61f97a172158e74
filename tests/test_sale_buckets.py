"""Bucketed stock (commerce/flash_sale/buckets.py) on a real Redis and a real 3-node Redis Cluster.

A hypothesis state machine drives the bucket scripts with reservations, idempotent retries,
workers dying between the steps of a reservation, payments, releases, the clock, sweeps,
closing and reconciling, against a plain model, and after every step checks:

- no bucket below zero, `initial = remaining + held + sold` in every bucket, and the buckets'
  shares add up to the sale's stock: never oversold;
- every buyer's counted units are exactly her live holds, payments and requests in flight,
  never above the limit;
- hold ranks and payment ranks are unique and dense (1..n); the first N payments get the gift;
- the same (buyer, key) answers the same.

Then bursts of concurrent requests (many more than the stock, several per buyer) on one Redis
and on the cluster, where the buckets sit on three different nodes.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import os
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from commerce.errors import DomainError, Forbidden
from commerce.flash_sale.buckets import (
    STALE_MS,
    BucketedStore,
    InFlight,
    bucket_keys,
    buyer_key,
    first_bucket,
    sale_keys,
    shares,
)
from commerce.flash_sale.store import (
    Ended,
    HoldExpired,
    NoSuchHold,
    OverLimit,
    RedisLike,
    SaleSpec,
    SoldOut,
    text,
)

EXAMPLES = int(os.environ.get("LINLI_PROPERTY_EXAMPLES", "120"))
STEPS = int(os.environ.get("LINLI_PROPERTY_STEPS", "50"))
BASE_MS = 1_767_225_600_000
TTL_S = 60
BUYERS = st.integers(min_value=1, max_value=4)
KEYS = st.sampled_from(["k1", "k2", "k3"])
_SALE_IDS = itertools.count(8_000_000)
T = TypeVar("T")


def spec(sale_id: int, stock: int, limit: int, gift: int = 0) -> SaleSpec:
    return SaleSpec(sale_id=sale_id, session_id=1, stock=stock, price_fen=900,
                    community_price_fen=None, members_only=False, per_buyer_limit=limit,
                    gift_first_n=gift, starts_ms=0, ends_ms=0, hold_ttl_s=TTL_S)


async def wipe(redis: RedisLike, sale_id: int, buckets: int) -> None:
    names = [*sale_keys(sale_id).values()]
    for bucket in range(buckets):
        names += bucket_keys(sale_id, bucket, buckets).values()
    for name in names:  # one by one: the keys live in different cluster slots
        await redis.delete(name)
    async for name in redis.scan_iter(match=f"bsale:{{{sale_id}.u*}}:buyer"):
        await redis.delete(name)


@dataclass
class ModelHold:
    buyer: int
    qty: int
    bucket: int
    expires: int
    state: str = "live"  # live | paid | released | expired


@dataclass
class InFlightReq:
    qty: int
    since: int
    hold: str | None  # the hold a bucket made before the worker died, if it got that far


def _outcome(call_result: dict[str, Any] | DomainError) -> tuple[str, Any]:
    if isinstance(call_result, DomainError):
        return ("err", call_result.code)
    return ("ok", call_result["hold"])


class BucketMachine(RuleBasedStateMachine):
    holds = Bundle("holds")

    def __init__(self, redis_url: str) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.redis = Redis.from_url(redis_url)
        self.store = BucketedStore(self.redis)
        self.sale_id = next(_SALE_IDS)
        self.now = BASE_MS
        self.model: dict[str, ModelHold] = {}
        self.answers: dict[tuple[int, str], tuple[str, Any]] = {}
        self.flight: dict[tuple[int, str], InFlightReq] = {}
        self.closed = False
        self.paid_order: list[str] = []

    def run(self, call: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(call)

    def teardown(self) -> None:
        self.run(wipe(self.redis, self.sale_id, self.buckets))
        self.run(self.redis.aclose())
        self.loop.close()

    @initialize(stock=st.integers(1, 15), buckets=st.integers(1, 4), limit=st.integers(1, 6),
                gift=st.integers(0, 6))
    def open_sale(self, stock: int, buckets: int, limit: int, gift: int) -> None:
        self.stock, self.buckets, self.limit, self.gift_n = stock, buckets, limit, gift
        self.remaining = shares(stock, buckets)
        assert self.run(self.store.open(spec(self.sale_id, stock, limit, gift), buckets))
        assert not self.run(self.store.open(spec(self.sale_id, 999, limit, gift), buckets))

    # --- model helpers -----------------------------------------------------------------------

    def counted(self, buyer: int) -> int:
        return sum(h.qty for h in self.model.values() if h.buyer == buyer and h.state in
                   ("live", "paid")) + sum(f.qty for (b, _k), f in self.flight.items()
                                           if b == buyer and f.hold is None)

    def pick_bucket(self, buyer: int, qty: int) -> int | None:
        start = first_bucket(buyer, self.buckets)
        for step in range(self.buckets):
            bucket = (start + step) % self.buckets
            if self.remaining[bucket] >= qty:
                return bucket
        return None

    def new_hold(self, hold: str, buyer: int, qty: int, bucket: int) -> None:
        assert int(hold.partition("-")[2]) % self.buckets == bucket
        assert hold not in self.model
        self.remaining[bucket] -= qty
        self.model[hold] = ModelHold(buyer, qty, bucket, self.now + TTL_S * 1000)

    async def _call(self, call: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any] | DomainError:
        try:
            return await call
        except DomainError as exc:
            return exc

    # --- buyers ------------------------------------------------------------------------------

    @rule(target=holds, buyer=BUYERS, qty=st.integers(1, 3), key=KEYS)
    def reserve(self, buyer: int, qty: int, key: str) -> Any:
        got = self.run(self._call(self.store.reserve(self.sale_id, buyer, qty, key, now=self.now)))
        seen = self.answers.get((buyer, key))
        if seen is not None:
            assert _outcome(got) == seen, (got, seen)
            return multiple()
        flying = self.flight.get((buyer, key))
        if flying is not None:
            if flying.hold is None:
                assert isinstance(got, InFlight), got
                return multiple()
            # The retry finds the hold the dead worker's bucket made and finishes it.
            assert not isinstance(got, DomainError) and got["hold"] == flying.hold, got
            del self.flight[(buyer, key)]
            self.answers[(buyer, key)] = _outcome(got)
            return multiple(flying.hold)
        if self.counted(buyer) + qty > self.limit:
            assert isinstance(got, OverLimit), got
            self.answers[(buyer, key)] = _outcome(got)
            return multiple()
        if self.closed:
            assert isinstance(got, Ended), got
            return multiple()
        bucket = self.pick_bucket(buyer, qty)
        if bucket is None:
            assert isinstance(got, SoldOut), got
            self.answers[(buyer, key)] = _outcome(got)
            return multiple()
        assert not isinstance(got, DomainError), got
        assert got["bucket"] == bucket and got["qty"] == qty
        self.new_hold(got["hold"], buyer, qty, bucket)
        self.answers[(buyer, key)] = _outcome(got)
        return multiple(got["hold"])

    @rule(buyer=BUYERS, qty=st.integers(1, 3), key=KEYS, far=st.booleans())
    def worker_dies_mid_reservation(self, buyer: int, qty: int, key: str, far: bool) -> None:
        """A worker runs the first step (and with `far`, the bucket step too), then dies."""
        if (buyer, key) in self.answers or (buyer, key) in self.flight or self.closed:
            return
        if self.counted(buyer) + qty > self.limit:
            return
        store = self.store
        taken = json.loads(self.run(store._run("bucket_take", [buyer_key(self.sale_id, buyer)],
                                               [key, qty, self.limit, self.now])))
        assert taken == {"taken": 1}, taken
        hold = None
        if far:
            start = first_bucket(buyer, self.buckets)
            for step in range(self.buckets):
                bucket = (start + step) % self.buckets
                k = bucket_keys(self.sale_id, bucket, self.buckets)
                made = json.loads(self.run(store._run(
                    "bucket_reserve", [k["meta"], k["holds"], k["expiry"], k["keys"]],
                    [self.now, buyer, qty, key])))
                if made.get("ok"):
                    hold = str(made["hold"])
                    self.new_hold(hold, buyer, qty, bucket)
                    break
        self.flight[(buyer, key)] = InFlightReq(qty, self.now, hold)

    @rule(hold=holds, right_buyer=st.booleans())
    def pay(self, hold: str, right_buyer: bool) -> None:
        h = self.model[hold]
        buyer = h.buyer if right_buyer else h.buyer % 4 + 1
        got = self.run(self._call(self.store.confirm(hold, buyer, "ref", now=self.now)))
        if h.state in ("released", "expired"):
            assert isinstance(got, NoSuchHold), got
        elif not right_buyer:
            assert isinstance(got, Forbidden), got
        elif h.state == "paid":
            assert not isinstance(got, DomainError) and got["again"] == 1
            assert got["paid_rank"] == self.paid_order.index(hold) + 1
        elif self.now >= h.expires:
            assert isinstance(got, HoldExpired), got
        else:
            assert not isinstance(got, DomainError) and got["again"] == 0, got
            h.state = "paid"
            self.paid_order.append(hold)
            assert got["paid_rank"] == len(self.paid_order)
            assert got["gift"] == int(len(self.paid_order) <= self.gift_n)

    @rule(hold=holds)
    def release(self, hold: str) -> None:
        h = self.model[hold]
        got = self.run(self._call(self.store.release(hold, h.buyer)))
        if h.state != "live":
            assert isinstance(got, NoSuchHold), got
            return
        assert not isinstance(got, DomainError), got
        h.state = "released"
        self.remaining[h.bucket] += h.qty

    # --- the clock, the sweeper, staff ---------------------------------------------------------

    @rule(step=st.sampled_from([1_000, 30_000, STALE_MS + 1_000]))
    def time_passes(self, step: int) -> None:
        self.now += step

    @rule()
    def sweep(self) -> None:
        expired = self.run(self.store.expire(self.sale_id, now=self.now))
        due = [h for h in self.model.values() if h.state == "live" and h.expires <= self.now]
        assert expired == len(due)
        for h in due:
            h.state = "expired"
            self.remaining[h.bucket] += h.qty

    @rule()
    def close(self) -> None:
        self.run(self.store.close(self.sale_id))
        self.closed = True

    @rule()
    def reconcile(self) -> None:
        report = self.run(self.store.reconcile(self.sale_id, now=self.now))
        stale = {bk: f for bk, f in self.flight.items() if self.now - f.since >= STALE_MS}
        assert report.ok, report
        assert report.finished == sum(1 for f in stale.values() if f.hold is not None)
        assert report.given_back == sum(1 for f in stale.values() if f.hold is None)
        for (buyer, key), f in stale.items():
            del self.flight[(buyer, key)]
            if f.hold is not None:  # finished: a retry now answers that hold
                raw = self.run(self.redis.hget(buyer_key(self.sale_id, buyer), f"a:{key}"))
                assert raw is not None and json.loads(raw)["hold"] == f.hold
                self.answers[(buyer, key)] = ("ok", f.hold)

    # --- what must always hold ---------------------------------------------------------------

    @invariant()
    def never_oversold(self) -> None:
        if not hasattr(self, "stock"):
            return
        counts = self.run(self.store.counts(self.sale_id))
        assert sum(b["initial"] for b in counts.buckets) == self.stock
        for bucket, b in enumerate(counts.buckets):
            assert b["remaining"] >= 0
            assert b["initial"] == b["remaining"] + b["held"] + b["sold"]
            assert b["remaining"] == self.remaining[bucket]
        assert counts.held + counts.sold <= self.stock
        assert counts.sold == sum(h.qty for h in self.model.values() if h.state == "paid")

    @invariant()
    def limits_exact(self) -> None:
        if not hasattr(self, "stock"):
            return
        for buyer in range(1, 5):
            counted = self.run(self.store.bought_by(self.sale_id, buyer))
            assert counted == self.counted(buyer)
            assert counted <= self.limit

    @invariant()
    def ranks_unique_and_dense(self) -> None:
        if not hasattr(self, "stock"):
            return
        for kind in ("h", "p"):
            ranks = self.run(self.store.ranks(self.sale_id, kind))
            assert sorted(ranks.values()) == list(range(1, len(ranks) + 1)), ranks
        paid = self.run(self.store.ranks(self.sale_id, "p"))
        assert paid == {hold: i + 1 for i, hold in enumerate(self.paid_order)}
        # Every hold a buyer was answered has its rank; a hold still in flight has none yet.
        ranked = self.run(self.store.ranks(self.sale_id, "h"))
        answered = {v for kind, v in self.answers.values() if kind == "ok"}
        assert set(ranked) == answered


@pytest.mark.slow
def test_any_interleaving_keeps_bucketed_books(redis_url: str) -> None:
    run_state_machine_as_test(
        lambda: BucketMachine(redis_url),
        settings=settings(max_examples=EXAMPLES, stateful_step_count=STEPS, derandomize=True,
                          database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.filter_too_much]),
    )


# --- many at once --------------------------------------------------------------------------------

async def burst(store: BucketedStore, redis: RedisLike, sale_id: int, buckets: int) -> None:
    """60 buyers × 2 tries (one a retry of the same key) at once for 30 units over the buckets,
    limit 2 each: exactly 30 held, no buyer over 2, ranks 1..30, retries answered the same."""
    await wipe(redis, sale_id, buckets)
    await store.open(spec(sale_id, 30, 2), buckets)
    gate = asyncio.Semaphore(64)  # the cluster client's per-node pool is bounded

    async def attempt(buyer: int, key: str) -> str:
        async with gate:
            try:
                return str((await store.reserve(sale_id, buyer, 1, key))["hold"])
            except DomainError as exc:
                return exc.code

    tries = [(buyer, f"k{buyer}-{n % 2}") for buyer in range(1, 61) for n in range(3)]
    results = await asyncio.gather(*(attempt(b, k) for b, k in tries))
    answered: dict[tuple[int, str], set[str]] = collections.defaultdict(set)
    for (buyer, key), result in zip(tries, results, strict=True):
        answered[(buyer, key)].add(result)
    in_flight = [k for k, v in answered.items() if "in_flight" in v]
    assert all(len(v - {"in_flight"}) <= 1 for v in answered.values()), answered
    holds = {r for r in results if "-" in r}
    assert len(holds) == 30, collections.Counter(r for r in results if "-" not in r)
    counts = await store.counts(sale_id)
    assert (counts.remaining, counts.held, counts.sold) == (0, 30, 0)
    assert all(b["remaining"] == 0 for b in counts.buckets)
    for buyer in range(1, 61):
        assert await store.bought_by(sale_id, buyer) <= 2
    ranks = await store.ranks(sale_id, "h")
    assert set(ranks) == holds and sorted(ranks.values()) == list(range(1, 31))
    report = await store.reconcile(sale_id)
    assert report.ok, (report, in_flight)


async def test_a_burst_on_one_redis_never_oversells(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        for buckets in (1, 3):
            await burst(BucketedStore(redis), redis, next(_SALE_IDS), buckets)
    finally:
        await redis.aclose()



@pytest.mark.slow
async def test_buckets_on_three_cluster_nodes(cluster_ports: list[int]) -> None:
    client = RedisCluster(host="127.0.0.1", port=cluster_ports[0])
    try:
        await client.initialize()
        sale_id = next(_SALE_IDS)
        nodes = {client.get_node_from_key(bucket_keys(sale_id, b, 3)["meta"]).name
                 for b in range(3)}
        assert len(nodes) == 3, nodes  # one bucket per node: one sale on three cores
        store = BucketedStore(client)
        await burst(store, client, sale_id, 3)
        # Pay, give back, sweep and close on the cluster too; the books stay exact.
        ranked = await store.ranks(sale_id, "h")
        first, second, *rest = sorted(ranked, key=ranked.__getitem__)
        holder = int(json.loads(await client.hget(
            bucket_keys(sale_id, int(first.split("-")[1]) % 3, 3)["holds"], first) or b"{}")["b"])
        paid = await store.confirm(first, holder, "ref")
        again = await store.confirm(first, holder, "ref")
        assert paid["paid_rank"] == again["paid_rank"] == 1 and again["again"] == 1
        await store.release(second, None)
        assert (await store.counts(sale_id)).remaining == 1
        assert await store.expire(sale_id, now=BASE_MS * 2) == len(rest)
        assert await store.close(sale_id) == 3
        counts = await store.counts(sale_id)
        assert (counts.remaining, counts.held, counts.sold) == (29, 0, 1)
        report = await store.reconcile(sale_id)
        assert report.ok and report.sold == 1, report
        assert await store.bought_by(sale_id, holder) == 1
        keys_left = [text(k) async for k in client.scan_iter(match=f"bsale:{{{sale_id}.u*}}:buyer")]
        assert len(keys_left) == 60
    finally:
        await client.aclose()
