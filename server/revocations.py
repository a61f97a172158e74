"""Token revocation: a disabled account or a changed role ends that user's tokens everywhere.

Tokens are stateless JWTs, so "log this user out" is a cut-off time per user: tokens issued
before it are refused. The cut-offs live in one Redis hash (what a process starting later reads);
the process that revokes applies its cut-off at once and publishes `token_revoked`, which the
cluster bus carries to every other process (docs/CLUSTER.md), so a revoked token stops working
everywhere as soon as the event is read. Each process also reads the hash every `REFRESH_S`, a
backstop for an event missed while Redis was away, and to forget old cut-offs. On learning of a
revocation each process also drops that user's open sockets (listeners, see
server/realtime_component.py); their reconnect is then refused with `token_revoked`.

An entry is needed only while tokens issued before it could still be unexpired: it is removed
once `token_ttl_s` has passed.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from redis.asyncio import Redis

from commerce.event_payloads import TokenRevoked
from commerce.events import DomainEvent, EventBus
from infra.background import PeriodicTask
from server.auth import TokenService
from server.cluster_component import subscribe_everywhere
from server.keys import events_key, redis_key, settings_key, tokens_key

log = logging.getLogger(__name__)

KEY = "linli:auth:revoked_before"
REFRESH_S = 30.0

Listener = Callable[[int], None]


class Revocations:
    def __init__(self, tokens: TokenService, ttl_s: int) -> None:
        self.tokens = tokens
        self.ttl_s = ttl_s
        self.redis: Redis | None = None
        self.events: EventBus | None = None
        self.unsubscribe: Callable[[], None] = lambda: None
        # Told the user id of each revocation this process learns of (once per cut-off).
        self.listeners: list[Listener] = []

    async def revoke(self, user_id: int) -> float:
        """End every token `user_id` holds now, in every process; returns the cut-off."""
        cutoff = time.time()
        assert self.redis is not None, "revocations used before start-up"
        await self.redis.hset(KEY, str(user_id), repr(cutoff))
        self._apply({user_id: cutoff})
        if self.events is not None:
            await self.events.publish(DomainEvent("token_revoked", None,
                                                  TokenRevoked(user_id=user_id, cutoff=cutoff)))
        return cutoff

    async def on_event(self, event: DomainEvent) -> None:
        """A revocation made in any process (this one's own changes nothing more)."""
        if isinstance(event.payload, TokenRevoked):
            self._apply({event.payload.user_id: event.payload.cutoff})

    async def refresh(self) -> None:
        """Learn the cut-offs other processes wrote; forget those older than any live token."""
        if self.redis is None:
            return
        raw = await self.redis.hgetall(KEY)
        now = time.time()
        current: dict[int, float] = {}
        stale: list[bytes | str] = []
        for field, value in raw.items():
            try:
                user_id, cutoff = int(field), float(value)
            except ValueError:
                stale.append(field)
                continue
            if cutoff + self.ttl_s < now:
                stale.append(field)
            else:
                current[user_id] = cutoff
        if stale:
            await self.redis.hdel(KEY, *stale)
        self._apply(current, forget_before=now - self.ttl_s)

    def _apply(self, cutoffs: dict[int, float], forget_before: float | None = None) -> None:
        known = self.tokens.revoked_before
        fresh = {uid: cutoff for uid, cutoff in cutoffs.items() if known.get(uid, -1.0) < cutoff}
        if forget_before is not None:
            # Drop only cut-offs no unexpired token can precede; what this process revoked itself
            # stays even when this read raced its own write.
            for uid in [uid for uid, c in known.items() if c < forget_before]:
                del known[uid]
        known.update(fresh)
        for user_id in fresh:
            for listener in self.listeners:
                try:
                    listener(user_id)
                except Exception:
                    log.exception("revocation listener failed")

    async def _step(self) -> int:
        # A failure is logged by PeriodicTask and retried; the cut-offs already known stay
        # (they are only ever added to), so Redis being away never re-admits a token.
        await self.refresh()
        return 0  # paced by REFRESH_S either way

    def poller(self) -> PeriodicTask:
        return PeriodicTask("token-revocations", self._step, idle_s=REFRESH_S,
                            error_pause_s=REFRESH_S)


revocations_key = web.AppKey("revocations", Revocations)


async def revocations_ctx(app: web.Application) -> AsyncIterator[None]:
    revocations = app[revocations_key]
    revocations.redis = app[redis_key]
    revocations.events = app[events_key]
    with contextlib.suppress(Exception):
        await revocations.refresh()  # a process started after a revocation knows it at once
    poller = revocations.poller()
    poller.start()
    try:
        yield
    finally:
        await poller.stop()


async def _hear_every_process(app: web.Application) -> None:
    # On start-up, after every cleanup context: the cluster bus exists by then.
    revocations = app[revocations_key]
    revocations.unsubscribe = subscribe_everywhere(app, revocations.on_event,
                                                   kinds=("token_revoked",))


async def _stop_hearing(app: web.Application) -> None:
    app[revocations_key].unsubscribe()


def install(app: web.Application) -> None:
    """After redis_ctx: components may add listeners at set-up."""
    app[revocations_key] = Revocations(app[tokens_key], app[settings_key].token_ttl_s)
    app.cleanup_ctx.append(revocations_ctx)
    app.on_startup.append(_hear_every_process)
    app.on_shutdown.append(_stop_hearing)
