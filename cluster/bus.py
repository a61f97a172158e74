"""Events every process must see, carried between processes and nodes by one Redis stream.

The in-process `EventBus` stays what it was: subscribers that write shared state (room history,
the audience snapshot) hear an event once, in the process that published it. Subscribers that
act on what only their own process holds (the media hub's peers, the RTMP connection, the
recorder) subscribe here instead and hear every process's events of the bridged kinds:

- an event published on the local bus is appended to the stream (XADD) and handed to this
  process's cluster subscribers at once, inside the publish (as before: ending a session over
  the API returns once the local stream has stopped);
- every process reads the stream from where it joined (XREAD, one connection) and hands the
  other processes' entries to its subscribers, one entry after the other: each process gets
  each event once, in the order the stream holds them (so in order per session).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from commerce.base import as_utc
from commerce.events import DomainEvent, EventBus
from infra.background import cancel_and_wait

log = logging.getLogger(__name__)

STREAM = "linli:cluster:events"
MAXLEN = 10_000  # approximate: a process away longer than this many events restarts from now
BLOCK_MS = 2_000
ERROR_PAUSE_S = 1.0

Handler = Callable[[DomainEvent], Awaitable[None]]


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class ClusterBus:
    def __init__(self, redis: Redis, process_id: str, kinds: Iterable[str],
                 stream: str = STREAM) -> None:
        self.redis = redis
        self.process_id = process_id
        self.kinds = frozenset(kinds)
        self.stream = stream
        self._handlers: list[tuple[Handler, frozenset[str]]] = []
        self._last_id = "0-0"
        self._task: asyncio.Task[None] | None = None
        self.received = 0  # entries from other processes handed to subscribers

    def subscribe(self, handler: Handler, kinds: Iterable[str]) -> Callable[[], None]:
        wanted = frozenset(kinds)
        if not wanted <= self.kinds:
            raise ValueError(f"not carried between processes: {sorted(wanted - self.kinds)}")
        entry = (handler, wanted)
        self._handlers.append(entry)
        return lambda: self._handlers.remove(entry)

    def attach(self, local: EventBus) -> Callable[[], None]:
        """Carry the local bus's events of our kinds out to every other process."""
        return local.subscribe(self._on_local, kinds=self.kinds)

    async def _on_local(self, event: DomainEvent) -> None:
        fields = {"origin": self.process_id, "kind": event.kind,
                  "session": "" if event.session_id is None else str(event.session_id),
                  "data": json.dumps(event.data, default=_json_default)}
        try:
            await self.redis.xadd(self.stream, fields, maxlen=MAXLEN, approximate=True)  # type: ignore[arg-type]
        except Exception:
            # The other processes miss it; this one still acts on it.
            log.exception("cluster event not published", extra={"event": event.kind})
        await self._deliver(event)

    async def _deliver(self, event: DomainEvent) -> None:
        wanted = [h for h, kinds in self._handlers if event.kind in kinds]
        results = await asyncio.gather(*(h(event) for h in wanted), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.error("cluster event handler failed", exc_info=result,
                          extra={"event": event.kind})

    # --- reading the other processes' events ------------------------------------------------
    async def start(self) -> None:
        """Join at the stream's current end: what happened before this process started is
        already reflected in the database it reads."""
        newest = await self.redis.xrevrange(self.stream, count=1)
        self._last_id = _text(newest[0][0]) if newest else "0-0"  # type: ignore[arg-type]
        self._task = asyncio.create_task(self._run(), name="cluster-bus")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)  # a cancellation lost inside redis-py is sent again

    async def _run(self) -> None:
        while True:
            try:
                batch: Any = await self.redis.xread({self.stream: self._last_id}, block=BLOCK_MS,
                                               count=100)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cluster bus read failed")
                await asyncio.sleep(ERROR_PAUSE_S)
                continue
            for _stream, entries in batch or []:
                for entry_id, fields in entries:
                    self._last_id = _text(entry_id)
                    await self._handle(fields)

    async def _handle(self, raw: dict[Any, Any]) -> None:
        fields = {_text(k): _text(v) for k, v in raw.items()}
        if fields.get("origin") == self.process_id:
            return  # delivered when it was published
        kind = fields.get("kind", "")
        if kind not in self.kinds:
            return
        session = fields.get("session", "")
        try:
            data = json.loads(fields.get("data", "{}"))
        except ValueError:
            data = {}
        event = DomainEvent(kind, int(session) if session.isdigit() else None,
                            {**data, "origin": fields.get("origin")})
        self.received += 1
        await self._deliver(event)
