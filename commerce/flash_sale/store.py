"""Flash-sale stock in Redis: one Lua script per transition, answers mapped to typed errors.

All keys of a sale share the hash tag `{id}` (`sale:{42}:meta`, `sale:{42}:holds`, ...), so a
Redis Cluster may hold many sales while each script still touches one slot. Scripts are
registered once (redis-py `AsyncScript`: EVALSHA, reloaded on NOSCRIPT). Times are passed in
from the caller so a replica or an AOF replay applies the same effects.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from commerce.base import MAX_ID
from commerce.errors import Conflict, DomainError, Forbidden, NotFound

RedisLike = Redis | RedisCluster
# Sales whose stock is in Redis; the sweeper and the log consumer walk this set.
ACTIVE_SALES = "sales:active"
MAX_QTY = 1000
# Reservations per script call: bounds how long one call keeps Redis busy (~a few ms).
MAX_BATCH = 256
# How long idempotency answers outlive their closed sale.
IDEM_KEEP_S = 7 * 24 * 3600


class SoldOut(DomainError):
    code = "sold_out"
    status = 409
    default_message = "已售罄 / Sold out"


class OverLimit(DomainError):
    code = "over_limit"
    status = 409
    default_message = "超过每人限购数量 / Over the per-buyer limit"


class NotOpen(DomainError):
    code = "not_open"
    status = 409
    default_message = "抢购尚未开始 / The sale has not started yet"


class Ended(DomainError):
    code = "ended"
    status = 409
    default_message = "抢购已结束 / The sale has ended"


class NotMember(DomainError):
    code = "not_member"
    status = 409
    default_message = "仅限本小区邻居购买 / Only members of the sale's communities may buy at this price"


class HoldExpired(DomainError):
    code = "hold_expired"
    status = 409
    default_message = "订单保留已过期,请重新下单 / The hold has expired, please order again"


class NoSuchHold(NotFound):
    code = "hold_not_found"
    default_message = "找不到该订单保留 / No such hold"


class SaleNotFound(NotFound):
    code = "sale_not_found"
    default_message = "找不到该抢购 / No such sale"


_REASONS: dict[str, type[DomainError]] = {
    "sold_out": SoldOut, "over_limit": OverLimit, "not_open": NotOpen, "ended": Ended,
    "not_member": NotMember, "unknown": SaleNotFound, "no_hold": NoSuchHold,
    "expired": HoldExpired,
}


def keys(sale_id: int) -> dict[str, str]:
    """Every key of one sale, under its hash tag."""
    tag = f"sale:{{{sale_id}}}:"
    names = ("meta", "holds", "expiry", "bought", "idem", "members", "community", "groups",
             "paid", "log", "refunded", "pickup")
    return {name: tag + name for name in names}


def sale_of_hold(hold_id: str) -> int:
    """Hold ids are `<sale>-<seq>`; 404 for anything else."""
    sale, sep, seq = hold_id.partition("-")
    if not sep or not (hold_id.isascii() and sale.isdigit() and seq.isdigit()) or len(sale) > 10 \
            or len(hold_id) > 40 or int(sale) > MAX_ID:
        raise NoSuchHold()
    return int(sale)


def now_ms() -> int:
    return int(time.time() * 1000)


def text(value: bytes | str) -> str:
    """Redis answers bytes (decode_responses=False); tolerate clients that decode."""
    return value.decode() if isinstance(value, bytes) else value


def _decode(raw: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(raw)
    err = data.get("err")
    if err is not None:
        if err == "not_yours":
            raise Forbidden("这不是你的订单 / Not your hold", reason="not_yours")
        error = _REASONS.get(str(err), Conflict)
        raise error(**{k: v for k, v in data.items() if k != "err"})
    return data


@dataclass(frozen=True)
class SaleSpec:
    """What Redis needs to sell: copied from the SQL sale when it opens."""

    sale_id: int
    session_id: int
    stock: int
    price_fen: int
    community_price_fen: int | None
    members_only: bool
    per_buyer_limit: int
    gift_first_n: int
    starts_ms: int
    ends_ms: int  # 0 = no end
    hold_ttl_s: int
    buckets: int = 1  # > 1: the stock is split over buckets (commerce/flash_sale/stock.py)


@dataclass(frozen=True)
class Counts:
    initial: int
    remaining: int
    held: int
    sold: int
    paid: int
    gift_n: int
    status: str
    ver: int = 0  # the sale's version in Redis (see open.lua)

    @property
    def gift_left(self) -> int:
        return max(0, self.gift_n - self.paid)


class FlashSaleStore:
    """The sale scripts bound to one Redis (or Redis Cluster) client; every read and write of a
    sale's keys goes through here, so the key layout above is this class's alone."""

    def __init__(self, redis: RedisLike) -> None:
        self._redis = redis
        self._scripts: dict[str, AsyncScript] = {}
        # Micro-batching of reservations: waiting requests and the one flusher task per sale.
        self._queues: dict[int, list[tuple[asyncio.Future[Any], list[Any], int | None]]] = {}
        self._flushers: dict[int, asyncio.Task[None]] = {}
        folder = resources.files("commerce.flash_sale") / "lua"
        for name in ("open", "reserve", "confirm", "release", "expire", "refund", "close",
                     "snapshot", "group", "progress"):
            source = (folder / f"{name}.lua").read_text(encoding="utf-8")
            self._scripts[name] = AsyncScript(redis, source)

    async def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self._scripts[name](keys=keys, args=args)

    async def open(self, spec: SaleSpec, members: dict[int, list[int]]) -> bool:
        """Load members (user -> their communities of this sale), then the stock; idempotent."""
        k = keys(spec.sale_id)
        if members:
            mapping: Any = {
                str(uid): "," + ",".join(str(c) for c in cids) + "," for uid, cids in members.items()
            }
            await self._redis.hset(k["members"], mapping=mapping)
        created = await self._run("open", [k["meta"]], [
            spec.sale_id, spec.stock, spec.price_fen,
            "" if spec.community_price_fen is None else spec.community_price_fen,
            "1" if spec.members_only else "0", spec.per_buyer_limit, spec.gift_first_n,
            spec.starts_ms, spec.ends_ms, spec.hold_ttl_s, spec.session_id,
            spec.buckets if spec.buckets > 1 else "",
        ])
        await self._redis.sadd(ACTIVE_SALES, str(spec.sale_id))
        return bool(created)

    async def add_member(self, sale_id: int, user_id: int, community_ids: list[int]) -> None:
        """A member approved after the sale opened (found on a not_member retry)."""
        value = "," + ",".join(str(c) for c in community_ids) + ","
        await self._redis.hset(keys(sale_id)["members"], str(user_id), value)

    async def remove_member(self, sale_id: int, user_id: int) -> None:
        """A member removed from every community of the sale: no community price from now on."""
        await self._redis.hdel(keys(sale_id)["members"], str(user_id))

    async def reserve(
        self, sale_id: int, buyer: int, qty: int, community: int | None, idem_key: str,
        now: int | None = None,
    ) -> dict[str, Any]:
        """Hold `qty` units; raises SoldOut, OverLimit, NotOpen, Ended, NotMember, SaleNotFound.

        Concurrent calls for one sale are gathered into one script call (micro-batching): while
        a call is in flight, new requests queue and go together in the next, in arrival order.
        Their answers are handed out newest first (see `_flush`).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        queue = self._queues.setdefault(sale_id, [])
        queue.append((future, [buyer, qty, "" if community is None else community, idem_key], now))
        if sale_id not in self._flushers:
            self._flushers[sale_id] = loop.create_task(self._flush(sale_id))
        return _decode(await future)

    async def _flush(self, sale_id: int) -> None:
        k = keys(sale_id)
        sale_keys = [k["meta"], k["holds"], k["expiry"], k["bought"], k["idem"], k["members"],
                     k["community"], k["groups"]]
        queue = self._queues[sale_id]
        try:
            while queue:
                batch = queue[:MAX_BATCH]
                del queue[:MAX_BATCH]
                args: list[Any] = [max((n for _f, _a, n in batch if n is not None), default=0)
                                   or now_ms()]
                for _future, entry, _now in batch:
                    args.extend(entry)
                try:
                    answers = await self._run("reserve", sale_keys, args)
                except Exception as exc:  # every waiter of this batch gets the failure
                    for future, _entry, _now in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                except BaseException:  # cancelled (shutdown): nobody may wait forever
                    for future, _entry, _now in batch + queue:
                        future.cancel()
                    queue.clear()
                    raise
                # Newest first: the waiters resume in the order their results are set, all in
                # the same turn of the loop, and the first to resume (the batch's last
                # reservation, the sale's newest version) is the one that tells the live room
                # (Checkout.reserve). The answers themselves were decided in arrival order.
                for (future, _entry, _now), answer in zip(reversed(batch), reversed(answers),
                                                          strict=True):
                    if not future.done():  # the request may have been cancelled meanwhile
                        future.set_result(answer)
        finally:
            del self._flushers[sale_id]
            if not queue:
                self._queues.pop(sale_id, None)

    async def hold(self, hold_id: str) -> dict[str, Any] | None:
        """A live hold (buyer b, qty q, community c, unit price p, expiry e), or None."""
        raw = await self._redis.hget(keys(sale_of_hold(hold_id))["holds"], hold_id)
        return None if raw is None else dict(json.loads(raw))

    async def paid(self, hold_id: str) -> dict[str, Any] | None:
        raw = await self._redis.hget(keys(sale_of_hold(hold_id))["paid"], hold_id)
        return None if raw is None else dict(json.loads(raw))

    async def confirm(
        self, hold_id: str, buyer: int | None, payment_ref: str, unit_price_fen: int,
        now: int | None = None,
    ) -> dict[str, Any]:
        """Hold → sold, logged to the sale's stream in the same script; repeat calls answer the same."""
        k = keys(sale_of_hold(hold_id))
        raw = await self._run("confirm", [k["meta"], k["holds"], k["expiry"], k["paid"], k["log"]], [
            hold_id, "" if buyer is None else buyer, payment_ref, now or now_ms(), unit_price_fen,
        ])
        return _decode(raw)

    async def release(self, hold_id: str, buyer: int | None) -> dict[str, Any]:
        k = keys(sale_of_hold(hold_id))
        raw = await self._run("release", [k["meta"], k["holds"], k["expiry"], k["bought"],
                                          k["community"]], [hold_id, "" if buyer is None else buyer])
        return _decode(raw)

    async def expire(self, sale_id: int, now: int | None = None, batch: int = 500) -> dict[str, Any]:
        k = keys(sale_id)
        raw = await self._run("expire", [k["meta"], k["holds"], k["expiry"], k["bought"],
                                         k["community"]], [now or now_ms(), batch])
        return _decode(raw)

    async def refund(self, hold_id: str, buyer: int, qty: int, community: int | None) -> dict[str, Any]:
        k = keys(sale_of_hold(hold_id))
        raw = await self._run("refund", [k["meta"], k["bought"], k["community"], k["refunded"]],
                              [hold_id, buyer, qty, "" if community is None else community])
        return _decode(raw)

    async def close(self, sale_id: int, now: int | None = None) -> dict[str, Any]:
        k = keys(sale_id)
        raw = await self._run("close", [k["meta"], k["idem"]], [now or now_ms(), IDEM_KEEP_S])
        return _decode(raw)

    async def counts(self, sale_id: int) -> Counts | None:
        values = await self._redis.hmget(
            keys(sale_id)["meta"],
            ["initial", "remaining", "held", "sold", "paid", "gift_n", "status", "ver"],
        )
        if any(v is None for v in values[:7]):
            return None
        ints = [int(v) for v in values[:6] if v is not None]
        return Counts(ints[0], ints[1], ints[2], ints[3], ints[4], ints[5],
                      status=text(values[6] or b""), ver=int(values[7] or 0))

    async def snapshot(self, sale_id: int) -> dict[str, Any] | None:
        """Counts and live-hold units read atomically; None for a sale Redis does not hold."""
        k = keys(sale_id)
        data: dict[str, Any] = json.loads(await self._run("snapshot", [k["meta"], k["holds"]], []))
        return None if "err" in data else data

    async def live_holds(self, sale_id: int) -> dict[str, dict[str, Any]]:
        raw = await self._redis.hgetall(keys(sale_id)["holds"])
        return {text(k): dict(json.loads(v)) for k, v in raw.items()}

    async def community_progress(self, sale_id: int, community_id: int) -> tuple[int, int]:
        """(people, units) of a community from live holds + paid orders."""
        people, units = await self._redis.hmget(
            keys(sale_id)["community"], [f"p:{community_id}", f"u:{community_id}"]
        )
        return int(people or 0), int(units or 0)

    async def set_group(self, sale_id: int, community_id: int, summary: dict[str, Any] | None) -> int:
        """Cache a group-buy summary where reserve.lua can hand it back with progress; returns
        the sale's version after the change (0 when Redis holds no such sale)."""
        k = keys(sale_id)
        value = "" if summary is None else json.dumps(summary)
        return int(await self._run("group", [k["meta"], k["groups"]], [community_id, value]))

    async def progress(self, sale_id: int) -> dict[str, Any] | None:
        """The sale's counters and its group-buys' progress read atomically, with the version
        they belong to; None for a sale Redis does not hold."""
        k = keys(sale_id)
        data: dict[str, Any] = json.loads(
            await self._run("progress", [k["meta"], k["community"], k["groups"]], []))
        return None if "err" in data else data

    async def active_sales(self) -> list[int]:
        return sorted(int(v) for v in await self._redis.smembers(ACTIVE_SALES))

    async def forget(self, sale_id: int) -> None:
        """Leave the active set (after close, once nothing is held)."""
        await self._redis.srem(ACTIVE_SALES, str(sale_id))

    async def mark_active(self, sale_id: int) -> None:
        """Back in the active set (a restart found the sale's stock in Redis already)."""
        await self._redis.sadd(ACTIVE_SALES, str(sale_id))

    async def session_of(self, sale_id: int) -> int | None:
        """The live session the sale was opened for; None for a sale Redis does not hold."""
        raw = await self._redis.hget(keys(sale_id)["meta"], "session")
        return None if raw is None else int(raw)

    async def last_hold_seq(self, sale_id: int) -> int | None:
        """The sequence number of the sale's newest hold (hold ids are `<sale>-<seq>`)."""
        raw = await self._redis.hget(keys(sale_id)["meta"], "seq")
        return None if raw is None else int(raw)

    async def ever_held(self, hold_id: str) -> bool:
        """Whether the hold was made (it may be paid, released or expired since)."""
        seq = await self.last_hold_seq(sale_of_hold(hold_id))
        return seq is not None and int(hold_id.partition("-")[2]) <= seq

    async def choose_pickup(self, sale_id: int, hold_id: str, point_id: int) -> None:
        """The pickup point the buyer chose for a hold (her community's; checked by the caller)."""
        await self._redis.hset(keys(sale_id)["pickup"], hold_id, str(point_id))

    async def chosen_pickup(self, sale_id: int, hold_id: str) -> int | None:
        raw = await self._redis.hget(keys(sale_id)["pickup"], hold_id)
        return None if raw is None else int(raw)

    async def bought_by(self, sale_id: int, user_id: int) -> int:
        """Units this buyer holds or has paid for in the sale (what the per-buyer limit counts)."""
        return int(await self._redis.hget(keys(sale_id)["bought"], str(user_id)) or 0)

    async def prices(self, sale_id: int) -> tuple[int, int | None] | None:
        """(list price, community price or None) as the sale's meta holds them; None for a sale
        not held here."""
        list_raw, community_raw = await self._redis.hmget(keys(sale_id)["meta"], ["price", "cprice"])
        if list_raw is None:
            return None
        return int(list_raw), (int(community_raw) if community_raw not in (None, b"", "") else None)

    async def group_summary(self, sale_id: int, community_id: int | str) -> dict[str, Any] | None:
        """The group-buy summary cached by `set_group` for one community, if any."""
        raw = await self._redis.hget(keys(sale_id)["groups"], str(community_id))
        return dict(json.loads(raw)) if raw else None

    async def first_membership_look(self, sale_id: int, user_id: int, every_s: int) -> bool:
        """True at most once per `every_s` for one buyer and sale: when a refused non-member may
        be looked up in SQL again."""
        return bool(await self._redis.set(f"sale:{{{sale_id}}}:nm:{user_id}", b"1", ex=every_s,
                                          nx=True))

    async def refunded_holds(self, sale_id: int) -> set[str]:
        """Holds whose units refund.lua already returned to stock."""
        return {text(k) for k in await self._redis.hkeys(keys(sale_id)["refunded"])}

    # --- the order log (confirm.lua appends, a consumer group carries it into SQL) -------------

    async def ensure_log_group(self, sale_id: int, group: str) -> None:
        try:
            await self._redis.xgroup_create(keys(sale_id)["log"], group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_log_group(self, sale_id: int, group: str, consumer: str, claim_idle_ms: int,
                             count: int) -> list[tuple[Any, Any]]:
        """Entries another (dead) consumer read but never acked, then entries nobody read yet."""
        stream = keys(sale_id)["log"]
        claimed: Any = await self._redis.xautoclaim(stream, group, consumer, claim_idle_ms, "0-0",
                                                    count=count)
        entries: list[tuple[Any, Any]] = list(claimed[1])
        fresh: Any = await self._redis.xreadgroup(group, consumer, {stream: ">"}, count=count)
        for _stream, items in fresh or []:
            entries.extend(items)
        return entries

    async def ack_log(self, sale_id: int, group: str, entry_ids: list[Any]) -> None:
        await self._redis.xack(keys(sale_id)["log"], group, *entry_ids)

    async def log_entries(self, sale_id: int) -> list[tuple[Any, Any]]:
        """The whole log (bounded by the sale's stock)."""
        raw: Any = await self._redis.xrange(keys(sale_id)["log"], "-", "+")
        return list(raw)

    async def log_groups(self, sale_id: int) -> list[dict[Any, Any]]:
        """XINFO GROUPS of the log; raises when the sale has no log yet."""
        raw: Any = await self._redis.xinfo_groups(keys(sale_id)["log"])
        return list(raw)

    # --- sale-creation idempotency records (commerce/flash_sale/lifecycle.py) ------------------

    async def claim_creation_record(self, name: str, value: str, ttl_s: int) -> bool:
        """SET NX: True when this call made the record (the first try of its key)."""
        return bool(await self._redis.set(name, value, nx=True, ex=ttl_s))

    async def creation_record(self, name: str) -> bytes | str | None:
        raw: bytes | str | None = await self._redis.get(name)
        return raw

    async def keep_creation_record(self, name: str, value: str, ttl_s: int) -> None:
        await self._redis.set(name, value, ex=ttl_s)

    async def drop_creation_record(self, name: str) -> None:
        await self._redis.delete(name)
