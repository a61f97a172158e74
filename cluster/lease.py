"""Leases in Redis: a key holding its holder's id that expires unless the holder renews it.

Claim is `SET NX PX`; renew, release and take-over compare the holder first (Lua), so a process
that lost its lease (paused past the TTL, another process took it) can never extend or delete
the new holder's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from redis.asyncio import Redis

# KEYS[1] lease; ARGV[1] holder, ARGV[2] ttl ms. 1 if renewed, 0 if not ours (any more).
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS[1] lease; ARGV[1] holder. 1 if deleted.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# Claim, or keep if already ours: returns the holder after the call.
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return current
"""

# KEYS[1] lease; ARGV[1] the holder known dead, ARGV[2] new holder, ARGV[3] ttl ms.
# Takes the lease over only if the dead holder still has it; returns the holder after the call.
_TAKE_OVER = """
local current = redis.call('GET', KEYS[1])
if (not current) or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return ARGV[2]
end
return current
"""


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value


class Leases:
    """The lease operations, on keys the caller names; `holder` is this process's id."""

    def __init__(self, redis: Redis, holder: str) -> None:
        self.redis = redis
        self.holder = holder
        self._claim = redis.register_script(_CLAIM)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._take_over = redis.register_script(_TAKE_OVER)

    async def claim(self, key: str, ttl_ms: int) -> str:
        """Claim `key` (or extend it when ours); returns whoever holds it now."""
        return _text(await self._claim(keys=[key], args=[self.holder, ttl_ms])) or ""

    async def renew(self, key: str, ttl_ms: int) -> bool:
        return bool(await self._renew(keys=[key], args=[self.holder, ttl_ms]))

    async def release(self, key: str) -> bool:
        return bool(await self._release(keys=[key], args=[self.holder]))

    async def take_over(self, key: str, dead: str, ttl_ms: int) -> str:
        """Replace `dead` as the holder (it stopped answering); returns the holder after."""
        return _text(await self._take_over(keys=[key], args=[dead, self.holder, ttl_ms])) or ""

    async def holder_of(self, key: str) -> str | None:
        return _text(await self.redis.get(key))

    @contextlib.asynccontextmanager
    async def hold(self, key: str, ttl_ms: int, poll_s: float = 0.2) -> AsyncIterator[None]:
        """A cluster-wide lock: wait until `key` is ours, keep renewing it, release it at exit."""
        # Polled: the holder is another process, no local event can say it let go.
        while await self.claim(key, ttl_ms) != self.holder:  # noqa: ASYNC110
            await asyncio.sleep(poll_s)

        async def keep() -> None:
            while True:
                await asyncio.sleep(ttl_ms / 3000)
                await self.renew(key, ttl_ms)

        renewer = asyncio.ensure_future(keep())
        try:
            yield
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.release(key)
