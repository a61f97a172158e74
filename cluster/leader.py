"""Work that must run once per cluster: done only by the process holding its lease.

Hold sweeps, group-buy deadlines, ending the sessions of a dead media owner: correct when
several processes run them (each step is atomic), but N processes sweeping every half second
is N times the load for nothing. One process holds `linli:cluster:leader:{name}`; the others
check every `ttl/3` and take over once it lapses (the holder died or stopped).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from cluster.lease import Leases

Step = Callable[[], Awaitable[int]]


class ClusterLeader:
    def __init__(self, redis: Redis, holder: str, name: str, ttl_ms: int = 6_000) -> None:
        self.key = f"linli:cluster:leader:{name}"
        self.ttl_ms = ttl_ms
        self._leases = Leases(redis, holder)
        self._leading = False
        self._checked = 0.0

    async def leading(self) -> bool:
        now = time.monotonic()
        if now - self._checked >= self.ttl_ms / 3000:
            self._checked = now
            self._leading = await self._leases.claim(self.key, self.ttl_ms) == self._leases.holder
        return self._leading

    async def resign(self) -> None:
        """Let another process lead at once (if Redis is away, the lease lapses by itself)."""
        if self._leading:
            self._leading = False
            with contextlib.suppress(Exception):
                await self._leases.release(self.key)

    def guard(self, step: Step) -> Step:
        """`step`, run only while leading (0: nothing done, the task idles)."""
        async def guarded() -> int:
            return await step() if await self.leading() else 0

        return guarded
