"""The Socket.IO hub: one python-socketio AsyncServer on the aiohttp app, shared through Redis.

Processes share rooms through `AsyncRedisManager` (python-socketio's own cross-process emits,
used by /moderation) and through our own messages on the same pub/sub channel (prefixed
`linli:`: numbered room events, state snapshots, heartbeats, kicks), which `HubManager._listen`
takes out of the stream before python-socketio sees it. One subscription per process, watched:

python-socketio #1581: the manager's listener can die or go deaf while the process keeps serving
sockets, silently. Every second the hub publishes a heartbeat and expects to hear its own back;
when it does not within `LISTENER_DEADLINE_S` (or the listener task has ended) it restarts the
listener, logs it and counts it in /metrics. Events published while the listener was away are
not lost: each room compares itself with the history head every second and fills holes from the
stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import socketio
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from infra.background import cancel_and_wait
from realtime.broadcast import Rooms
from realtime.history import RoomHistory, dumps
from realtime.moderation import Moderation
from realtime.state import StateCoalescer, snapshot
from realtime.transport import MAX_QUEUED_BYTES, MAX_QUEUED_FRAMES, DirectSockets, Frame

log = logging.getLogger(__name__)

CHANNEL = "linli-socketio"
PREFIX = b"linli:"
HEARTBEAT_S = 1.0
LISTENER_DEADLINE_S = 4.0
# Largest Engine.IO packet a client may send (a comment is ≤ 200 characters): bigger ones close
# the connection (WebSocket close 1009) before any handler runs.
MAX_PACKET_BYTES = 16 * 1024


def origin_policy(extra: Sequence[str]) -> Callable[[str | None, dict[str, Any]], bool]:
    """Which browser pages may open a socket: the same origin (scheme://Host, the scheme as a
    proxy forwarded it) and the configured ones (LINLI_ALLOWED_ORIGINS, LINLI_PUBLIC_URL).

    Engine.IO asks only when the request carries an Origin header, which browsers always send
    on WebSocket and cross-origin requests; a page on another site is answered 400 before any
    handshake, so it can neither read a room nor act with a token it stole.
    """
    allowed = {origin.rstrip("/") for origin in extra}

    def check(origin: str | None, environ: dict[str, Any]) -> bool:
        if not origin or "*" in allowed or origin in allowed:
            return True
        host = environ.get("HTTP_HOST")
        if not isinstance(host, str) or not host:
            return False
        schemes = {str(environ.get("wsgi.url_scheme", "http"))}
        forwarded = environ.get("HTTP_X_FORWARDED_PROTO")
        if isinstance(forwarded, str) and forwarded:
            schemes.add(forwarded.split(",")[0].strip())
        return origin in {f"{scheme}://{host}" for scheme in schemes}

    return check


class HubManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    """AsyncRedisManager that hands our own messages to the hub and counts reconnects."""

    def __init__(self, hub: Hub) -> None:
        super().__init__("redis://", channel=CHANNEL)
        self._hub = hub
        self.connects = 0
        self._closing: set[asyncio.Task[Any]] = set()

    def _redis_connect(self) -> None:
        # python-socketio replaces its client and pubsub here without closing the old ones
        # (#1569); redis-py may meanwhile have reconnected and resubscribed the old pubsub, which
        # then sits subscribed and unread until Redis' output-buffer limit kills it (#1581's
        # trigger). Close what is being replaced.
        old = [c for c in (self.pubsub, self.redis) if c is not None]
        super()._redis_connect()
        self.connects += 1
        for client in old:
            task = asyncio.ensure_future(client.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _listen(self) -> Any:
        async for data in super()._listen():
            if data[: len(PREFIX)] == PREFIX:
                try:
                    self._hub.on_message(data[len(PREFIX):])
                except Exception:
                    log.exception("bad hub message")
                continue
            yield data


class HubServer(socketio.AsyncServer):  # type: ignore[misc]
    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        await super()._handle_eio_disconnect(eio_sid, reason)
        # A polling client that closed leaves its long-poll GET parked in the socket's queue wait
        # for up to ping_interval + ping_timeout (engineio closes with abort=True and never wakes
        # it): wake it, so the request (and the client's disconnect) finish now.
        socket = self.eio.sockets.get(eio_sid)
        if socket is not None and not socket.upgraded:
            socket.queue.put_nowait(None)


class Hub:
    """Owns the Socket.IO server, the local rooms, the state coalescer and the watchdog."""

    def __init__(self, allowed_origins: Sequence[str] = (), *,
                 max_queued_frames: int = MAX_QUEUED_FRAMES,
                 max_queued_bytes: int = MAX_QUEUED_BYTES) -> None:
        self.manager = HubManager(self)
        self.sio = HubServer(
            async_mode="aiohttp", client_manager=self.manager, logger=False, engineio_logger=False,
            cors_allowed_origins=origin_policy(allowed_origins),
            max_http_buffer_size=MAX_PACKET_BYTES,
        )
        self.sockets = DirectSockets(max_queued_frames=max_queued_frames,
                                     max_queued_bytes=max_queued_bytes)
        self.sockets.install(self.sio.eio)
        self.host_id: str = self.manager.host_id
        self.listener_restarts = 0
        self.connected: dict[str, int] = {"/live": 0, "/moderation": 0}
        self.refused_events = 0
        self._last_heartbeat = time.monotonic()
        self._tasks: list[asyncio.Task[Any]] = []
        # Set by start(): they need the running app's Redis.
        self.redis: Redis
        self.history: RoomHistory
        self.rooms: Rooms
        self.state: StateCoalescer
        self.moderation: Moderation

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self, redis_url: str, redis: Redis) -> None:
        self.redis = redis
        self.history = RoomHistory(redis, CHANNEL)
        self.moderation = Moderation(redis)
        self.rooms = Rooms(self.history, self.sockets, self._viewers_changed)
        self.state = StateCoalescer(redis, CHANNEL, self.host_id, self.rooms.count,
                                    lambda: list(self.rooms.rooms))
        self.manager.redis_url = redis_url
        # Start the listener now rather than at the first connection (python-socketio's default),
        # so a process hears room events before anyone asks.
        self.sio.manager_initialized = True
        self.manager.initialize()
        self._tasks = [asyncio.ensure_future(self.state.run()),
                       asyncio.ensure_future(self._watchdog())]

    async def stop(self) -> None:
        for task in self._tasks:
            await cancel_and_wait(task)
        await self.rooms.close()
        await self.sio.shutdown()
        await self._stop_listener()
        if self.manager.redis is not None:
            await self.manager.redis.aclose()

    async def release_clients(self) -> None:
        """Close every Engine.IO socket and wake any pending long-poll, so aiohttp's shutdown does
        not wait out the poll timeout (engineio's own shutdown leaves open sockets alone)."""
        for socket in list(self.sio.eio.sockets.values()):
            with contextlib.suppress(Exception):
                await socket.close(wait=False)
            socket.queue.put_nowait(None)

    async def _stop_listener(self) -> None:
        thread = getattr(self.manager, "thread", None)
        if thread is not None:
            # Not `await thread` under suppress(BaseException): that also swallowed the caller's
            # own cancellation, so a watchdog cancelled mid-restart kept looping and the app's
            # shutdown waited for it forever. cancel_and_wait re-sends a lost cancellation too;
            # the listener's failure, if any, is what we are replacing (logged there).
            await cancel_and_wait(thread)
        if self.manager.pubsub is not None:
            with contextlib.suppress(Exception):
                await self.manager.pubsub.aclose()

    # --- messages between processes ---------------------------------------------------------
    async def publish(self, message: dict[str, Any]) -> None:
        await self.redis.publish(CHANNEL, PREFIX + dumps(message).encode())

    def on_message(self, raw: bytes) -> None:
        message = json.loads(raw)
        kind = message.get("t")
        if kind == "ev":
            self.rooms.on_events(int(message["r"]), message["ep"], message["e"])
        elif kind == "st":
            room = int(message["r"])
            self.rooms.on_state(room, snapshot(room, message["s"]))
        elif kind == "hb":
            if message.get("h") == self.host_id:
                self._last_heartbeat = time.monotonic()
        elif kind == "user":
            self._to_user(int(message["r"]), int(message["u"]), message["ev"], message["d"],
                          bool(message.get("kick")))

    def _to_user(self, room: int, user_id: int, event: str, data: Any, kick: bool) -> None:
        """Tell one user's sockets in a room something (muted, banned); a kick then disconnects."""
        for member in self.rooms.user_members(room, user_id):
            local = self.rooms.rooms.get(room)
            if local is not None:
                local.send_to(member, Frame("/live", event, data))
            if kick:
                self.rooms.spawn(self._kick_later(member.sid))

    async def _kick_later(self, sid: str) -> None:
        await asyncio.sleep(0.2)  # let the reason reach the client before the socket closes
        await self.sio.disconnect(sid, namespace="/live")

    async def tell_user(self, room: int, user_id: int, event: str, data: Any,
                        kick: bool = False) -> None:
        await self.publish({"t": "user", "r": room, "u": user_id, "ev": event, "d": data,
                            "kick": kick})

    # --- watchdog --------------------------------------------------------------------------
    async def _watchdog(self) -> None:
        beat = 0
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            beat += 1
            try:
                await self.publish({"t": "hb", "h": self.host_id, "n": beat})
            except Exception:
                # Redis itself is unreachable: nothing to conclude about the listener yet.
                log.warning("heartbeat publish failed", exc_info=True)
                self._last_heartbeat = time.monotonic()
                continue
            thread = getattr(self.manager, "thread", None)
            silent = time.monotonic() - self._last_heartbeat
            if thread is None or thread.done() or silent > LISTENER_DEADLINE_S:
                await self.restart_listener("ended" if thread is None or thread.done() else "deaf")
            try:
                await self.rooms.check_heads()
            except Exception:
                log.warning("history head check failed", exc_info=True)

    async def restart_listener(self, why: str) -> None:
        self.listener_restarts += 1
        log.warning("pub/sub listener %s; restarting it", why,
                    extra={"restarts": self.listener_restarts})
        await self._stop_listener()
        self.manager.connected = False
        self.manager.thread = self.sio.start_background_task(self.manager._thread)
        self._last_heartbeat = time.monotonic()

    def _viewers_changed(self, room: int) -> None:
        self.state.viewers_changed(room)


class HubCollector(Collector):
    """Hub figures read at scrape time, so the hot path only bumps plain integers."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def collect(self) -> Iterator[Any]:
        hub = self._hub
        clients = GaugeMetricFamily("linli_realtime_connected_clients",
                                    "Socket.IO clients connected to this process", labels=["namespace"])
        for namespace, count in hub.connected.items():
            clients.add_metric([namespace], count)
        yield clients
        yield GaugeMetricFamily("linli_realtime_rooms", "Live rooms with members in this process",
                                value=len(hub.rooms.rooms) if hasattr(hub, "rooms") else 0)
        frames = hub.rooms.frames_sent if hasattr(hub, "rooms") else 0
        yield CounterMetricFamily("linli_realtime_frames_sent", "Frames written to clients", value=frames)
        yield CounterMetricFamily("linli_realtime_listener_restarts",
                                  "Pub/sub listener restarts by the watchdog",
                                  value=hub.listener_restarts)
        yield CounterMetricFamily("linli_realtime_listener_connects",
                                  "Pub/sub (re)connections of the listener", value=hub.manager.connects)
        yield CounterMetricFamily("linli_realtime_gap_fills", "Room history holes filled from the stream",
                                  value=hub.rooms.gap_fills if hasattr(hub, "rooms") else 0)
        yield CounterMetricFamily("linli_realtime_refused_events", "Client events refused",
                                  value=hub.refused_events)
        yield CounterMetricFamily("linli_realtime_slow_clients_dropped",
                                  "Clients disconnected for falling too far behind",
                                  value=hub.sockets.dropped_slow)


def register_metrics(hub: Hub, registry: CollectorRegistry) -> None:
    registry.register(HubCollector(hub))
