"""One owner per live session's media: the process that accepted its first publish.

The owner holds `linli:media:owner:{session}` as a lease (renewed while its stream lives) and
runs the publisher, the viewers' peers, live HLS and the recording. Every other process forwards
the session's signalling there. The session also keeps a lasting record of the last owner and
its node (`linli:media:rec:{session}`): the recording and the replay are files on that node, so
that is where they are built and served from.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from cluster.lease import Leases


@dataclass(frozen=True)
class MediaRecord:
    process_id: str
    node_id: str


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value


class MediaOwners:
    def __init__(self, redis: Redis, process_id: str, node_id: str, ttl_ms: int) -> None:
        self.redis = redis
        self.process_id = process_id
        self.node_id = node_id
        self.ttl_ms = ttl_ms
        self._leases = Leases(redis, process_id)

    @staticmethod
    def owner_key(session_id: int) -> str:
        return f"linli:media:owner:{session_id}"

    @staticmethod
    def record_key(session_id: int) -> str:
        return f"linli:media:rec:{session_id}"

    async def owner(self, session_id: int) -> str | None:
        return await self._leases.holder_of(self.owner_key(session_id))

    async def claim(self, session_id: int) -> str:
        """Become the owner unless another process is; returns the owner after the call."""
        holder = await self._leases.claim(self.owner_key(session_id), self.ttl_ms)
        if holder == self.process_id:
            await self.redis.hset(self.record_key(session_id),
                                  mapping={"process": self.process_id, "node": self.node_id})
        return holder

    async def take_over(self, session_id: int, dead: str) -> str:
        """`dead` owns the session but stopped answering: own it instead (if it still does)."""
        holder = await self._leases.take_over(self.owner_key(session_id), dead, self.ttl_ms)
        if holder == self.process_id:
            await self.redis.hset(self.record_key(session_id),
                                  mapping={"process": self.process_id, "node": self.node_id})
        return holder

    async def evict(self, session_id: int, dead: str) -> None:
        """Drop a dead owner's lease without taking it (the next publish claims it)."""
        await Leases(self.redis, dead).release(self.owner_key(session_id))

    async def renew(self, session_id: int) -> bool:
        """False: the lease is another process's now (this one was paused past the TTL)."""
        key = self.owner_key(session_id)
        if await self._leases.renew(key, self.ttl_ms):
            return True
        return await self._leases.claim(key, self.ttl_ms) == self.process_id

    async def release(self, session_id: int) -> None:
        await self._leases.release(self.owner_key(session_id))

    async def record(self, session_id: int) -> MediaRecord | None:
        raw = await self.redis.hgetall(self.record_key(session_id))
        data = {_text(k): _text(v) for k, v in raw.items()}
        process, node = data.get("process"), data.get("node")
        if not process or not node:
            return None
        return MediaRecord(process, node)
