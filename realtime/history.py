"""Room history: a per-room sequence number and epoch, and a bounded Redis Stream of room events.

Every room event (a comment, a deletion, an approved question, a pin, a sale opening...) is
appended by `append.lua`, which numbers it, stores it under stream id "<seq>-0" and publishes it
on the hub's pub/sub channel in one atomic step. A client that reconnects with `(epoch, last_seq)`
gets exactly the events after `last_seq` (Centrifugo's offset model), or "reload" when its epoch
is gone or its position has been trimmed away. All keys of a room share the hash tag `{room}`.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

from redis.asyncio import Redis

from commerce.base import as_utc

Event = dict[str, Any]

# History bounds: how many events a room keeps and for how long after its last event.
HISTORY_LENGTH = 2000
HISTORY_TTL_S = 2 * 24 * 3600
RECENT_COMMENTS = 50


def room_key(room: int, name: str) -> str:
    return f"rt:{{{room}}}:{name}"


def dumps(data: Any) -> str:
    """Compact JSON, Chinese kept as is; datetimes as ISO strings."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).isoformat()  # never a zone-less time on the wire
    isoformat = getattr(value, "isoformat", None)
    if isoformat is not None:
        return isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def load_script(redis: Redis, name: str) -> Any:
    """A registered Lua script (EVALSHA, reloaded on NOSCRIPT by redis-py)."""
    source = resources.files("realtime").joinpath("lua", name).read_text(encoding="utf-8")
    return redis.register_script(source)


@dataclass(frozen=True)
class Appended:
    epoch: str
    first_seq: int
    last_seq: int


@dataclass(frozen=True)
class Position:
    """Where a room's history stands: its epoch and the last sequence number given out."""

    epoch: str | None
    seq: int

    @property
    def floor(self) -> int:
        """The oldest sequence number still kept (older ones were trimmed)."""
        return max(1, self.seq - HISTORY_LENGTH + 1)


@dataclass(frozen=True)
class Resume:
    """The answer to "I have everything up to `last_seq`": the missed events, or reload."""

    events: list[Event]
    reload_reason: str | None = None


class RoomHistory:
    def __init__(self, redis: Redis, channel: str) -> None:
        self._redis = redis
        self._channel = channel
        self._append = load_script(redis, "append.lua")

    async def append(self, room: int, *events: Event) -> Appended:
        """Number, store and publish events (JSON objects with "ev", the frame name; "seq" is added)."""
        bodies = []
        for event in events:
            if "seq" in event or "ev" not in event:
                raise ValueError("events carry their frame name in 'ev' and get their seq here")
            bodies.append(dumps(event))
        epoch, first, last = await self._append(
            keys=[room_key(room, "seq"), room_key(room, "epoch"), room_key(room, "log")],
            args=[self._channel, room, HISTORY_LENGTH, HISTORY_TTL_S, secrets.token_hex(4), *bodies],
        )
        return Appended(_text(epoch), int(first), int(last))

    async def start_room(self, room: int) -> Position:
        """The room's position, giving it an epoch first if it has none (so clients always know it)."""
        await self._redis.set(room_key(room, "epoch"), secrets.token_hex(4), nx=True, ex=HISTORY_TTL_S)
        return await self.position(room)

    async def heads(self, rooms: list[int]) -> list[int]:
        """The last seq of each room (rooms live in different hash slots: a pipeline, not MGET)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for room in rooms:
                pipe.get(room_key(room, "seq"))
            values = await pipe.execute()
        return [int(v or 0) for v in values]

    async def position(self, room: int) -> Position:
        epoch, seq = await self._redis.mget(room_key(room, "epoch"), room_key(room, "seq"))
        return Position(_text(epoch) if epoch is not None else None, int(seq or 0))

    async def between(self, room: int, after: int, upto: int) -> list[Event]:
        """Events with after < seq <= upto, in order (deleted comments are simply absent)."""
        if upto <= after:
            return []
        rows = await self._redis.xrange(room_key(room, "log"), f"{after + 1}-0", f"{upto}-0")
        return [_event(fields) for _id, fields in rows or []]

    async def recent_comments(self, room: int, upto: int, limit: int = RECENT_COMMENTS) -> list[Event]:
        """The last `limit` comments up to `upto`, oldest first: what a late joiner sees."""
        if upto <= 0:
            return []
        rows = await self._redis.xrevrange(room_key(room, "log"), f"{upto}-0", "-", count=limit * 3)
        comments = [event for event in (_event(f) for _i, f in rows or [])
                    if event.get("ev") == "comment"]
        return list(reversed(comments[:limit]))

    async def resume(self, room: int, epoch: str | None, last_seq: int, upto: int,
                     current: Position) -> Resume:
        """What a client at (epoch, last_seq) missed up to `upto`, or why it must reload."""
        if current.epoch is None or epoch != current.epoch:
            return Resume([], "epoch_changed")
        if last_seq > current.seq:
            return Resume([], "ahead_of_server")
        if last_seq + 1 < current.floor:
            return Resume([], "too_old")
        return Resume(await self.between(room, last_seq, upto))

    async def get(self, room: int, seq: int) -> Event | None:
        rows = await self._redis.xrange(room_key(room, "log"), f"{seq}-0", f"{seq}-0")
        return _event(rows[0][1]) if rows else None

    async def remove(self, room: int, seq: int) -> bool:
        """Delete one event from history (a moderator removed the comment)."""
        return bool(await self._redis.xdel(room_key(room, "log"), f"{seq}-0"))


def _event(fields: Any) -> Event:
    event: Event = json.loads(fields[b"e"])
    return event


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
