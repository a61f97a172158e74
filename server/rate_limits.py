"""Request rate limits per user and per client address, shared by every worker process.

The flash-sale hot path must not wait for Redis twice, so decisions are local and counts are
shared in the background: each process counts what it admits and adds those counts to Redis
in one script call (`rate_limit_add.lua`), learning in the same round trip what every process
together has admitted. A decision uses that last known total plus what this process admitted
since. A Redis outage leaves each process limiting on its own counts (fail open, never shut).

Counts are shared in two lanes. A counter goes out at the next fast tick (`SYNC_S`) when this
process has not learned its total yet, when its estimate has reached half the limit, or when
this process holds more than `Rule.slack` (limit // 8) counts of it not yet shared; any other
counter (far below its limit, the common case: a buyer tapping once a second against 100 per
10 s) waits for the slow tick (`rate_limit_slow_sync_s`). Worst case across P processes, for one
subject's counter of one window: `limit + (P - 1) × (slack + 1)` admitted when every process
shares its fast lane before its next decision (tests/test_abuse_limits.py reaches that bound and
shows it holds): a process that has not learned the others' latest counts admits its unshared
`slack`, plus the one count that moves the counter to the fast lane, before it learns. In real
time add what the other processes admit during one fast tick and one Redis round trip, as
before the slow lane existed. With limit < 8 the slack is 0 and the bound is `limit + P - 1`,
the same as with one lane.

Windows slide: the estimate is `previous window × the part of it still inside the last
`window_s` (rounded up) + current window` (two fixed Redis counters per subject), so a burst on
a window boundary does not get twice the allowance. Refused requests are not counted: a client that
keeps retrying gets in again at the allowed rate.

Per-address limits use the client address as the app sees it (`client_ip`): the peer, or the
X-Forwarded-For entry a trusted proxy added. Addresses in `rate_limit_exempt` (loopback by
default: health checks, benchmarks, a local proxy that adds no X-Forwarded-For) are not
limited per address; per-user limits still apply to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import ipaddress
import logging
import math
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from aiohttp import web
from redis.asyncio import Redis

from commerce.errors import RateLimited
from infra.background import cancel_and_wait
from infra.settings import Rate, Settings
from server.keys import redis_key, settings_key

log = logging.getLogger(__name__)

SYNC_S = 0.1
PREFIX = "rl:"
# Counters per script call: bounds how long one call keeps Redis busy (~1 ms).
SYNC_BATCH = 1000
# Distinct addresses whose parsing is remembered (per process; cleared when full).
ADDRESS_CACHE = 4096
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Rule:
    """`limit` requests per `window_s` seconds, per subject (a user id or an address)."""

    name: str
    limit: int
    window_s: int
    per: str  # "user" or "ip": what the subject is (shown to the client)
    # Unshared counts a process may hold of one counter in the slow lane.
    slack: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "slack", max(0, self.limit) // 8)

    @classmethod
    def of(cls, name: str, rate: Rate, per: str) -> Rule:
        return cls(name, rate[0], rate[1], per)

    @property
    def off(self) -> bool:
        return self.limit <= 0


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.rate_limits
        self.trusted = _parse(settings.trusted_proxies)
        self.exempt = _parse(settings.rate_limit_exempt)
        self.login_ip = Rule.of("login", settings.rate_login_per_ip, "ip")
        self.holds_user = Rule.of("holds", settings.rate_holds_per_user, "user")
        self.holds_ip = Rule.of("holds", settings.rate_holds_per_ip, "ip")
        self.comments_ip = Rule.of("comments", settings.rate_comments_per_ip, "ip")
        self.connects_ip = Rule.of("connects", settings.rate_socket_connects_per_ip, "ip")
        self.signup_ip = Rule.of("signup", settings.rate_signup_per_ip, "ip")
        self.slow_sync_s = settings.rate_limit_slow_sync_s
        self.redis: Redis | None = None
        self._add: Any = None  # rate_limit_add.lua, registered with the client
        self.refused = 0
        self._known: dict[str, int] = {}  # key → total of all processes, as last learned
        self._pending: dict[str, int] = {}  # key → admitted here, not yet added to Redis
        # key → admitted here and on its way to Redis: still counted while the sync waits, or a
        # request arriving meanwhile would see neither the batch nor the total it produces.
        self._in_flight: dict[str, int] = {}
        self._ttl: dict[str, int] = {}  # key → its Redis TTL (s)
        # (forget after, key), a heap: the sweep looks only at the keys that are due. Walking
        # every key each second allocated a tuple per key (thousands in a flash sale), and those
        # allocations set off the garbage collector on the request path.
        self._forget: list[tuple[float, str]] = []
        self._urgent: set[str] = set()  # keys for the next fast tick (see the module's note)
        self._swept = 0.0
        # Address parsing was 8% of a worker's time on the holds path: peers repeat, so cache.
        self._peers: dict[str, tuple[str, bool] | None] = {}  # peer → (address, trusted proxy)
        self._exempt: dict[str, bool] = {}

    # --- deciding ------------------------------------------------------------------------
    def hit(self, checks: Iterable[tuple[Rule, str]], now: float | None = None) -> None:
        """Admit one request under every (rule, subject) or raise RateLimited (429) naming the
        first one exceeded; nothing is counted for a refused request."""
        if not self.enabled:
            return
        now = time.time() if now is None else now
        todo: list[tuple[str, Rule]] = []
        for rule, subject in checks:
            if rule.off or (rule.per == "ip" and self.is_exempt(subject)):
                continue
            index, into = divmod(now, rule.window_s)
            base = f"{PREFIX}{rule.name}:{rule.per}:{subject}:"
            current, previous = f"{base}{int(index)}", f"{base}{int(index) - 1}"
            prev, cur = self._count(previous), self._count(current)
            # A part of a request still counts as one: no extra admission just past a boundary.
            if math.ceil(prev * (1.0 - into / rule.window_s)) + cur >= rule.limit:
                self.refused += 1
                raise RateLimited(
                    "操作太频繁,请稍后再试 / Too many requests, try again shortly",
                    reason=f"{rule.name}_per_{rule.per}", limit=rule.limit, window_s=rule.window_s,
                    retry_after=_retry_after(rule, prev, cur, into),
                )
            todo.append((current, rule))
        pending, urgent = self._pending, self._urgent
        for key, rule in todo:
            count = pending[key] = pending.get(key, 0) + 1
            if key not in self._ttl:
                self._ttl[key] = 2 * rule.window_s + 1
                heapq.heappush(self._forget, (now + 2 * rule.window_s, key))
            if key in urgent:
                continue
            known = self._known.get(key)
            unshared = self._in_flight.get(key, 0) + count
            if known is None or unshared > rule.slack or 2 * (known + unshared) >= rule.limit:
                urgent.add(key)

    def _count(self, key: str) -> int:
        return self._known.get(key, 0) + self._in_flight.get(key, 0) + self._pending.get(key, 0)

    # --- addresses -----------------------------------------------------------------------
    def client_ip(self, peer: str | None, forwarded_for: str | None) -> str:
        """The client's address: the peer's, or when the peer is a trusted proxy the right-most
        X-Forwarded-For entry that is not itself a trusted proxy (left ones are client-made)."""
        known = self._peer(peer) if peer else None
        if known is None:
            return peer or "unknown"
        text, trusted = known
        if not forwarded_for or not trusted:
            return text
        address = _address(text)
        for part in reversed(forwarded_for.split(",")):
            hop = _address(part.strip())
            if hop is None:
                break  # garbage: keep the last address we could trust
            address = hop
            if not _within(hop, self.trusted):
                break
        return str(address)

    def request_ip(self, request: web.BaseRequest) -> str:
        return self.client_ip(request.remote, request.headers.get("X-Forwarded-For"))

    def environ_ip(self, environ: Mapping[str, object]) -> str:
        """The client address of a Socket.IO connection (its Engine.IO environ)."""
        request = environ.get("aiohttp.request")
        if isinstance(request, web.BaseRequest):
            return self.request_ip(request)
        remote = environ.get("REMOTE_ADDR")
        return self.client_ip(remote if isinstance(remote, str) else None, None)

    def is_exempt(self, ip: str) -> bool:
        exempt = self._exempt.get(ip)
        if exempt is None:
            address = _address(ip)
            exempt = address is not None and _within(address, self.exempt)
            if len(self._exempt) >= ADDRESS_CACHE:
                self._exempt.clear()
            self._exempt[ip] = exempt
        return exempt

    def _peer(self, peer: str) -> tuple[str, bool] | None:
        if peer not in self._peers:
            address = _address(peer)
            if len(self._peers) >= ADDRESS_CACHE:
                self._peers.clear()  # a crude bound: a flood of new peers only costs re-parsing
            self._peers[peer] = None if address is None else (
                str(address), _within(address, self.trusted))
        return self._peers[peer]

    # --- sharing -------------------------------------------------------------------------
    async def sync(self, everything: bool = True) -> None:
        """Add this process's new counts to Redis and learn the totals of all processes: every
        count, or (`everything=False`, the fast tick) only the counters in the fast lane."""
        if self.redis is None or not self._pending:
            return
        if everything:
            batch, self._pending = self._pending, {}
            self._urgent = set()
        else:
            if not self._urgent:
                return
            pending = self._pending
            batch = {key: pending.pop(key) for key in self._urgent if key in pending}
            self._urgent = set()
        self._in_flight = batch
        if self._add is None:
            self._add = self.redis.register_script(_source("rate_limit_add.lua"))
        names = list(batch)
        totals: list[Any] = []
        try:
            for at in range(0, len(names), SYNC_BATCH):
                chunk = names[at:at + SYNC_BATCH]
                args: list[int] = []
                for key in chunk:
                    args.append(batch[key])
                    args.append(self._ttl.get(key, 3600))
                totals.extend(await self._add(keys=chunk, args=args))
        except Exception:
            # Keep limiting on local counts; the counts go to Redis with the next sync (those
            # a finished chunk delivered are learned now, the rest stay unshared).
            for key, total in zip(names, totals, strict=False):
                self._known[key] = int(total)
            for key in names[len(totals):]:
                self._pending[key] = self._pending.get(key, 0) + batch[key]
                self._urgent.add(key)
            self._in_flight = {}
            log.warning("rate limit sync failed", exc_info=True)
            return
        for key, total in zip(names, totals, strict=True):
            self._known[key] = int(total)
        self._in_flight = {}
        self._sweep()

    def _sweep(self) -> None:
        now = time.time()
        if now - self._swept < 1.0:
            return
        self._swept = now
        due, busy = self._forget, []
        while due and due[0][0] < now:
            entry = heapq.heappop(due)
            if entry[1] in self._pending:
                busy.append(entry)  # counted here since: forgotten by a later sweep
                continue
            self._ttl.pop(entry[1], None)
            self._known.pop(entry[1], None)
        for entry in busy:
            heapq.heappush(due, entry)

    async def run(self) -> None:
        last_full = time.monotonic()
        while True:
            await asyncio.sleep(SYNC_S)
            now = time.monotonic()
            everything = now - last_full >= self.slow_sync_s
            if everything:
                last_full = now
            await self.sync(everything)


rate_limiter_key = web.AppKey("rate_limiter", RateLimiter)


async def rate_limiter_ctx(app: web.Application) -> AsyncIterator[None]:
    limiter = app[rate_limiter_key]
    limiter.redis = app[redis_key]
    task = asyncio.ensure_future(limiter.run())
    try:
        yield
    finally:
        await cancel_and_wait(task)
        # Hand the last counts over, but never hold up shutdown for them.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(limiter.sync(), 2.0)


def install(app: web.Application) -> None:
    """Create the app's limiter now (components take it at set-up); it syncs once Redis is up."""
    app[rate_limiter_key] = RateLimiter(app[settings_key])
    app.cleanup_ctx.append(rate_limiter_ctx)


@cache
def _source(name: str) -> str:
    return resources.files("server").joinpath(name).read_text(encoding="utf-8")


def _retry_after(rule: Rule, prev: int, cur: int, into: float) -> int:
    """Seconds until the sliding estimate drops below the limit, if nothing else arrives."""
    window, room = rule.window_s, rule.limit - 1
    if cur < rule.limit and prev > 0:
        # Still this window: ceil(prev × (1 - t/W)) + cur < limit.
        wait = window * (1 - (room - cur) / prev) - into
    else:
        # Next window: ceil(cur × (1 - t/W)) < limit.
        wait = (window - into) + max(0.0, window * (1 - room / max(cur, 1)))
    return max(1, math.ceil(wait))


def _parse(values: Iterable[str]) -> tuple[IpNetwork, ...]:
    return tuple(ipaddress.ip_network(v, strict=False) for v in values)


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: ipaddress.IPv4Address | ipaddress.IPv6Address,
            networks: tuple[IpNetwork, ...]) -> bool:
    return any(address.version == net.version and address in net for net in networks)
