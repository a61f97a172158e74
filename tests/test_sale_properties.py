"""Property tests of the flash-sale scripts: any interleaving keeps the books, on a real Redis.

A hypothesis state machine drives `FlashSaleStore` (commerce/flash_sale/lua/*.lua) with reservations
(alone, or a burst gathered into one script call), idempotent retries, payments (also late and
by the wrong buyer), releases, refunds, closing, clock advances and sweeps, and keeps a plain
Python model of what the contract says must happen. After every step it reads Redis back and
checks:

- stock never below zero, and `initial = remaining + held + sold`;
- `held` is the units of the live holds, and the expiry set lists exactly the live holds;
- no buyer over the per-buyer limit; community progress counts what is held or paid in it;
- the same (buyer, idempotency key) answers the same, for every answer the contract stores;
- hold ranks and paid ranks are unique and dense; exactly the first N payments get the gift;
- a paid hold can't be released, an expired hold can't be paid, a refund applies once.

Bounded for CI (seeded, derandomized); `LINLI_PROPERTY_EXAMPLES=2000` goes bigger by hand.
"""

from __future__ import annotations

import asyncio
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
    precondition,
    rule,
    run_state_machine_as_test,
)
from redis.asyncio import Redis

from commerce.errors import DomainError, Forbidden
from commerce.flash_sale.store import (
    Ended,
    FlashSaleStore,
    HoldExpired,
    NoSuchHold,
    NotMember,
    NotOpen,
    OverLimit,
    SaleSpec,
    SoldOut,
    keys,
    text,
)

EXAMPLES = int(os.environ.get("LINLI_PROPERTY_EXAMPLES", "200"))
STEPS = int(os.environ.get("LINLI_PROPERTY_STEPS", "50"))
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: the machine's clock starts here
TTL_S = 60
COMMUNITY = 7
MEMBERS = {1: [COMMUNITY], 2: [COMMUNITY]}  # buyers 3 and 4 belong to no community
BUYERS = st.integers(min_value=1, max_value=4)
KEYS = st.sampled_from(["k1", "k2", "k3"])
# Sale ids of this module: far from what other tests create, one fresh sale per example.
_SALE_IDS = itertools.count(7_000_000)
T = TypeVar("T")


@dataclass
class ModelHold:
    hold_id: str
    buyer: int
    qty: int
    community: str  # "" when the hold counts for no community
    price: int
    expires: int
    state: str = "live"  # live | paid | released | expired | refunded


@dataclass(frozen=True)
class Answer:
    """What one reserve/confirm call answered: a result, or an error's type and details."""

    result: dict[str, Any] | None
    error: type[DomainError] | None = None
    details: tuple[tuple[str, Any], ...] = ()


async def _answer(call: Coroutine[Any, Any, dict[str, Any]]) -> Answer:
    try:
        return Answer(await call)
    except DomainError as exc:
        return Answer(None, type(exc), tuple(sorted(exc.details.items())))


class SaleMachine(RuleBasedStateMachine):
    """One sale in Redis against its model; rules are buyers, staff, the clock and the sweeper."""

    holds = Bundle("holds")

    def __init__(self, redis_url: str) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.redis = Redis.from_url(redis_url, decode_responses=False)
        self.store = FlashSaleStore(self.redis)
        self.sale_id = next(_SALE_IDS)
        self.now = BASE_MS
        self.model: dict[str, ModelHold] = {}
        self.answers: dict[tuple[int, str], Answer] = {}  # stored idempotency answers
        self.confirmed: dict[str, dict[str, Any]] = {}  # hold id -> first confirm answer
        self.seq = 0
        self.paid = 0
        self.closed = False

    def run(self, call: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(call)

    def teardown(self) -> None:
        self.run(self.redis.delete(*keys(self.sale_id).values()))
        self.run(self.redis.srem("sales:active", str(self.sale_id)))
        self.run(self.redis.aclose())
        self.loop.close()

    # --- the sale ------------------------------------------------------------------------------

    @initialize(stock=st.integers(1, 15), limit=st.integers(1, 6), gift=st.integers(0, 15),
                community_price=st.sampled_from([None, 500]),
                starts_in=st.sampled_from([0, 0, 0, 30_000]), ends_in=st.sampled_from([0, 0, 0, 600_000]))
    def open_sale(self, stock: int, limit: int, gift: int, community_price: int | None,
                  starts_in: int, ends_in: int) -> None:
        self.stock, self.limit, self.gift_n = stock, limit, min(gift, stock)
        self.price, self.community_price = 900, community_price
        self.starts = BASE_MS + starts_in
        self.ends = self.starts + ends_in if ends_in else 0
        self.run(self.redis.delete(*keys(self.sale_id).values()))
        spec = SaleSpec(sale_id=self.sale_id, session_id=1, stock=stock, price_fen=self.price,
                        community_price_fen=community_price, members_only=False,
                        per_buyer_limit=limit, gift_first_n=self.gift_n, starts_ms=self.starts,
                        ends_ms=self.ends, hold_ttl_s=TTL_S)
        assert self.run(self.store.open(spec, MEMBERS)) is True
        # Opening again (a restart, a second worker) must not reset what is being sold.
        assert self.run(self.store.open(spec, MEMBERS)) is False

    # --- model helpers -------------------------------------------------------------------------

    def live(self) -> list[ModelHold]:
        return [h for h in self.model.values() if h.state == "live"]

    def held(self) -> int:
        return sum(h.qty for h in self.live())

    def sold(self) -> int:
        return sum(h.qty for h in self.model.values() if h.state == "paid")

    def remaining(self) -> int:
        return self.stock - self.held() - self.sold()

    def bought(self, buyer: int) -> int:
        return sum(h.qty for h in self.model.values() if h.buyer == buyer and h.state in ("live", "paid"))

    def expect_reserve(self, buyer: int, qty: int, want: int | None, key: str) -> tuple[Any, bool]:
        """The contract's answer: (error type or ModelHold, stored under the key?)."""
        if self.closed or (self.ends and self.now >= self.ends):
            return Ended, False
        if self.starts > self.now:
            return NotOpen, False
        home = MEMBERS.get(buyer, [])
        if want is not None and want not in home:
            return NotMember, False
        community = str(want if want is not None else (home[0] if home else ""))
        if self.bought(buyer) + qty > self.limit:
            return OverLimit, True
        if self.remaining() < qty:
            return SoldOut, True
        price = self.community_price if community and self.community_price is not None else self.price
        hold = ModelHold(f"{self.sale_id}-{self.seq + 1}", buyer, qty, community, price,
                         self.now + TTL_S * 1000)
        return hold, True

    def apply_reserve(self, buyer: int, key: str, expected: Any, stored: bool,
                      got: Answer) -> str | None:
        """Check one answer against the model, update the model; the new hold id, if any."""
        seen = self.answers.get((buyer, key))
        if seen is not None:
            assert got == seen, f"retry of {buyer}:{key} answered {got}, first {seen}"
            return None
        if isinstance(expected, ModelHold):
            assert got.result is not None, f"expected a hold, got {got}"
            result = got.result
            self.seq += 1
            assert (result["hold"], result["rank"], result["expires"]) == (
                expected.hold_id, self.seq, expected.expires)
            assert (result["price"], result["community"]) == (expected.price, expected.community)
            self.model[expected.hold_id] = expected
            assert result["remaining"] == self.remaining() and result["held"] == self.held()
            assert result["gift_left"] == max(0, self.gift_n - self.paid)
            new: str | None = expected.hold_id
        else:
            assert got.error is expected, f"expected {expected.__name__}, got {got}"
            new = None
        if stored:
            self.answers[(buyer, key)] = got
        return new

    # --- buyers --------------------------------------------------------------------------------

    @rule(target=holds, buyer=BUYERS, qty=st.integers(1, 3),
          want=st.sampled_from([None, None, COMMUNITY, 99]), key=KEYS)
    def reserve(self, buyer: int, qty: int, want: int | None, key: str) -> Any:
        expected, stored = self.expect_reserve(buyer, qty, want, key)
        got = self.run(_answer(self.store.reserve(self.sale_id, buyer, qty, want, key, now=self.now)))
        new = self.apply_reserve(buyer, key, expected, stored, got)
        return multiple(new) if new else multiple()

    @rule(target=holds, burst=st.lists(st.tuples(BUYERS, st.integers(1, 2), KEYS), min_size=2,
                                       max_size=6))
    def reserve_burst(self, burst: list[tuple[int, int, str]]) -> Any:
        """Concurrent requests: gathered into one script call, applied in arrival order."""

        async def together() -> list[Answer]:
            return list(await asyncio.gather(*(
                _answer(self.store.reserve(self.sale_id, b, q, None, k, now=self.now))
                for b, q, k in burst)))

        answers = self.run(together())
        made = []
        for (buyer, qty, key), got in zip(burst, answers, strict=True):
            expected, stored = self.expect_reserve(buyer, qty, None, key)
            new = self.apply_reserve(buyer, key, expected, stored, got)
            if new:
                made.append(new)
        return multiple(*made)

    @rule(hold=holds, wrong_buyer=st.booleans())
    def pay(self, hold: str, wrong_buyer: bool) -> None:
        h = self.model[hold]
        buyer = h.buyer % 4 + 1 if wrong_buyer else h.buyer
        got = self.run(_answer(self.store.confirm(hold, buyer, f"pay-{hold}", h.price, now=self.now)))
        if hold in self.confirmed:
            # Paying again (any caller) answers the first confirmation, unchanged.
            assert got == Answer(self.confirmed[hold]), got
            return
        if h.state != "live":
            assert got.error is NoSuchHold, got
        elif wrong_buyer:
            assert got.error is Forbidden and dict(got.details)["reason"] == "not_yours", got
        elif h.expires <= self.now:
            # Expired but not swept yet: still can't be paid.
            assert got.error is HoldExpired, got
        else:
            assert got.result is not None, got
            self.paid += 1
            h.state = "paid"
            result = got.result
            assert (result["paid_rank"], result["gift"]) == (self.paid, int(self.paid <= self.gift_n))
            assert (result["qty"], result["price"], result["buyer"]) == (h.qty, h.price, str(h.buyer))
            assert (result["held"], result["sold"]) == (self.held(), self.sold())
            self.confirmed[hold] = result

    @rule(hold=holds, by=st.sampled_from(["buyer", "other", "staff"]))
    def release(self, hold: str, by: str) -> None:
        h = self.model[hold]
        actor = {"buyer": h.buyer, "other": h.buyer % 4 + 1, "staff": None}[by]
        got = self.run(_answer(self.store.release(hold, actor)))
        if h.state != "live":
            # Paid, released, swept or refunded: nothing to give back (a paid hold stays sold).
            assert got.error is NoSuchHold, got
        elif by == "other":
            assert got.error is Forbidden, got
        else:
            assert got.result is not None, got
            h.state = "released"
            assert got.result["remaining"] == self.remaining()

    # --- staff, clock, sweeper -----------------------------------------------------------------

    @rule(hold=holds)
    def refund(self, hold: str) -> None:
        h = self.model[hold]
        if h.state not in ("paid", "refunded"):
            return  # only paid orders are refunded (fulfilment.refund_order)
        community = int(h.community) if h.community else None
        result = self.run(self.store.refund(hold, h.buyer, h.qty, community))
        # Applied once; a retry (reconcile --repair after a crash) changes nothing.
        assert result["again"] == (1 if h.state == "refunded" else 0), result
        h.state = "refunded"
        assert (result["remaining"], result["sold"]) == (self.remaining(), self.sold())

    @rule(ms=st.sampled_from([1, 999, 15_000, TTL_S * 1000 - 1, TTL_S * 1000, 90_000]),
          sweep=st.booleans())
    def advance_clock(self, ms: int, sweep: bool) -> None:
        """Time passes; the sweeper may or may not have run since (expired holds linger)."""
        self.now += ms
        if not sweep:
            return
        due = [h for h in self.live() if h.expires <= self.now]
        result = self.run(self.store.expire(self.sale_id, now=self.now))
        assert result["expired"] == len(due)
        for h in due:
            h.state = "expired"
        assert (result["remaining"], result["held"]) == (self.remaining(), self.held())
        # A second sweep at the same instant finds nothing: no hold is returned twice.
        assert self.run(self.store.expire(self.sale_id, now=self.now))["expired"] == 0

    # Closing early would leave little to interleave; closing again answers "already closed".
    @precondition(lambda self: self.seq >= 6 and not self.closed)
    @rule()
    def close(self) -> None:
        assert self.run(self.store.close(self.sale_id, now=self.now))["closed"] == 1
        self.closed = True
        assert self.run(self.store.close(self.sale_id, now=self.now))["closed"] == 0

    # --- what must always hold -----------------------------------------------------------------

    @invariant()
    def books_balance(self) -> None:
        if not hasattr(self, "stock"):
            return  # before the sale opened
        k = keys(self.sale_id)
        snap = self.run(self.store.snapshot(self.sale_id))
        assert snap is not None
        remaining, held, sold = snap["remaining"], snap["held"], snap["sold"]
        assert remaining >= 0 and held >= 0 and sold >= 0, snap
        assert snap["initial"] == remaining + held + sold == self.stock, snap
        assert (remaining, held, sold) == (self.remaining(), self.held(), self.sold()), snap
        assert snap["hold_units"] == held and snap["paid"] == self.paid, snap

        live_ids = {h.hold_id for h in self.live()}
        assert {text(m) for m in self.run(self.redis.zrange(k["expiry"], 0, -1))} == live_ids
        assert set(self.run(self.store.live_holds(self.sale_id))) == live_ids

        bought = {int(text(b)): int(v) for b, v in self.run(self.redis.hgetall(k["bought"])).items()}
        for buyer in range(1, 5):
            assert bought.get(buyer, 0) == self.bought(buyer) <= self.limit, (buyer, bought)

        counted = [h for h in self.model.values()
                   if h.community and h.state in ("live", "paid")]
        people, units = self.run(self.store.community_progress(self.sale_id, COMMUNITY))
        assert units == sum(h.qty for h in counted)
        assert people == len({h.buyer for h in counted})

        # Hold ranks: 1..seq, one per hold; paid ranks: 1..paid, the first N with the gift.
        assert sorted(int(h.split("-")[1]) for h in self.model) == list(range(1, self.seq + 1))
        ranks = sorted(a["paid_rank"] for a in self.confirmed.values())
        assert ranks == list(range(1, self.paid + 1))
        assert sum(a["gift"] for a in self.confirmed.values()) == min(self.paid, self.gift_n)
        stored = self.run(self.redis.hgetall(k["paid"]))
        assert {text(h): json.loads(v) for h, v in stored.items()} == self.confirmed


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_any_interleaving_keeps_the_sale_books(redis_url: str) -> None:
    run_state_machine_as_test(
        lambda: SaleMachine(redis_url),
        settings=settings(max_examples=EXAMPLES, stateful_step_count=STEPS, derandomize=True,
                          database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]),
    )
