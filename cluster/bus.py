"""Events every process must see, carried between processes and nodes by one Redis stream.

The in-process `EventBus` stays what it was: subscribers that write shared state (room history,
the audience snapshot) hear an event once, in the process that published it. Subscribers that
act on what only their own process holds (the media hub's peers, the RTMP connection, the
recorder, the token cut-offs and sockets) subscribe here instead and hear every process's events
of the carried kinds:

- an event published on the local bus is appended to the stream (XADD) as its kind, session,
  origin and typed payload (`EventPayload.to_json`, with its version);
- every process reads the stream from where it joined (XREAD, one connection) and hands each
  entry to its subscribers, one after the other, in the stream's order; a process's own entry
  is handed on as the very object it published (no round trip through JSON for it);
- the publish returns once this process's subscribers have had the event (ending a session
  over the API returns once the local stream has stopped).

So each process hears each event once and all of them hear the events in the same order (the
stream's), so in order per session. An entry of a version this process cannot read (a newer
process during a rolling upgrade) is logged by kind and skipped, never guessed at.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from redis.asyncio import Redis

from commerce.event_payloads import PayloadError, read_payload
from commerce.events import DomainEvent, EventBus, ensure_known
from infra.background import cancel_and_wait

log = logging.getLogger(__name__)

STREAM = "linli:cluster:events"
MAXLEN = 10_000  # approximate: a process away longer than this many events restarts from now
BLOCK_MS = 2_000
ERROR_PAUSE_S = 1.0
# A publish waits this long for the reader to reach its own entry, then hands it on itself
# (the reader skips it later): Redis slow or away must not hold a request for long. Once the
# reader has the entry, the publish waits for its subscribers however long they take.
OWN_ENTRY_WAIT_S = 5.0

Handler = Callable[[DomainEvent], Awaitable[None]]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class ClusterBus:
    def __init__(self, redis: Redis, process_id: str, kinds: Iterable[str],
                 stream: str = STREAM) -> None:
        self.redis = redis
        self.process_id = process_id
        self.kinds = frozenset(kinds)
        ensure_known(self.kinds)
        self.stream = stream
        self._handlers: list[tuple[Handler, frozenset[str]]] = []
        self._last_id = "0-0"
        self._task: asyncio.Task[None] | None = None
        # Own entries on their way round: token -> (the event, set once it was handed on).
        self._own: dict[str, tuple[DomainEvent, asyncio.Future[None]]] = {}
        self._sent = 0
        self.received = 0  # entries from other processes handed to subscribers
        self.unreadable = 0  # entries skipped: a payload this process cannot read

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

    @staticmethod
    def encode(event: DomainEvent, origin: str) -> dict[str, str]:
        return {"origin": origin, "kind": event.kind,
                "session": "" if event.session_id is None else str(event.session_id),
                "payload": event.payload.to_json()}

    @staticmethod
    def decode(fields: dict[str, str]) -> DomainEvent:
        """An entry as the event it carries (PayloadError: not one this process can read)."""
        kind = fields.get("kind", "")
        session = fields.get("session", "")
        payload = read_payload(kind, fields.get("payload", "{}"))
        return DomainEvent(kind, int(session) if session.isdigit() else None, payload,
                           origin=fields.get("origin") or None)

    async def _on_local(self, event: DomainEvent) -> None:
        reader = self._task
        if reader is None or reader.done() or asyncio.current_task() is reader:
            # Not reading (before start, after stop), or published by a subscriber the reader
            # is running: waiting for the reader would wait for ourselves.
            await self._append(event, "")
            await self._deliver(event)
            return
        # Registered before the XADD: the reader may see the entry before XADD's reply is read.
        self._sent += 1
        token = str(self._sent)
        done = asyncio.get_running_loop().create_future()
        self._own[token] = (event, done)
        if not await self._append(event, token):
            self._own.pop(token, None)
            await self._deliver(event)
            return
        try:
            await asyncio.wait_for(asyncio.shield(done), OWN_ENTRY_WAIT_S)
        except TimeoutError:
            if self._own.pop(token, None) is not None:
                log.warning("cluster bus reader late; event handed on here",
                            extra={"event": event.kind})
                await self._deliver(event)
            else:
                await done  # the reader has it: its subscribers are still at work

    async def _append(self, event: DomainEvent, token: str) -> bool:
        fields = {**self.encode(event, self.process_id), "token": token}
        try:
            await self.redis.xadd(self.stream, fields,  # type: ignore[arg-type]
                                  maxlen=MAXLEN, approximate=True)
        except Exception:
            # The other processes miss it; this one still acts on it.
            log.exception("cluster event not published", extra={"event": event.kind})
            return False
        return True

    async def _deliver(self, event: DomainEvent) -> None:
        wanted = [h for h, kinds in self._handlers if event.kind in kinds]
        results = await asyncio.gather(*(h(event) for h in wanted), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.error("cluster event handler failed", exc_info=result,
                          extra={"event": event.kind})

    # --- reading the stream ---------------------------------------------------------------
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
        # Publishes still waiting for their entry: handed on here, as without a reader.
        for event, done in list(self._own.values()):
            if not done.done():
                done.set_result(None)
                await self._deliver(event)
        self._own.clear()

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
            own = self._own.pop(fields.get("token", ""), None)
            if own is not None:  # else handed on already (no reader then, or it was late)
                event, done = own
                try:
                    await self._deliver(event)
                finally:
                    if not done.done():
                        done.set_result(None)
            return
        if fields.get("kind", "") not in self.kinds:
            return
        try:
            event = self.decode(fields)
        except (PayloadError, ValueError) as exc:
            self.unreadable += 1
            log.error("cluster event skipped: %s", exc, extra={"event": fields.get("kind")})
            return
        self.received += 1
        await self._deliver(event)
