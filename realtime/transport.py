"""Writing one pre-encoded frame to many Engine.IO sockets without a task per recipient.

python-socketio's room `emit` creates an asyncio task per recipient, each of which queues the
packet for that socket's writer task (~12–16k frames/s per process, bench/RESULTS.md). Here a frame is
encoded once (Socket.IO packet → Engine.IO message → WebSocket frame bytes) and written with
`transport.write` to each socket in one synchronous loop.

python-engineio internals this relies on (checked against python-engineio 4.x; covered by
tests/test_dependency_canaries.py and tests/test_realtime_transport.py, so an upgrade that
breaks them fails loudly):
- `AsyncServer._async["websocket"]` is the class engineio instantiates as `cls(handler, server)`
  for every websocket, with `handler` the bound `AsyncSocket._websocket_handler`; we install a
  subclass of the aiohttp driver's `WebSocket` per server (a copy of the dict, not the module's)
  to learn each socket's aiohttp request (hence its transport).
- `AsyncSocket.upgraded / upgrading / closed / closing / queue / sid`: a socket is written to
  directly only once upgraded to websocket, when its own writer task has nothing in flight
  (`queue._unfinished_tasks == 0`: the writer calls `task_done()` before it writes, in the same
  step) and the transport is not paused. Otherwise the packet goes into the socket's queue
  (`put_nowait`, still no task), so a socket's frames never overtake each other.
- Frames are sent uncompressed: our WebSocketResponse is created with `compress=False`, so the
  bytes on the wire do not depend on per-connection deflate state.
- Slow consumers: the writer task takes every queued packet at once (`poll`), so an empty queue
  means the socket is keeping up; frames and bytes queued since it was last empty are bounded,
  the byte count kept as an attribute on the AsyncSocket (tests/test_abuse_limits.py).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as eio_aiohttp

from realtime.history import dumps

# A client whose kernel+asyncio send buffer holds more than this is not reading: drop it rather
# than buffer without bound (it reconnects and resumes from its last seq).
SLOW_CLIENT_BYTES = 2 * 1024 * 1024
# Once its transport is paused (asyncio's write buffer past its high-water mark) a socket's frames
# wait in its Engine.IO queue; frames or bytes queued there since it last caught up beyond these
# (settings: LINLI_SOCKET_MAX_QUEUED_*) mean it has fallen too far behind: it is dropped too.
# ~1 MiB is half a minute of a busy room (state 10/s + comment batches 10/s).
MAX_QUEUED_FRAMES = 1000
MAX_QUEUED_BYTES = 1024 * 1024
# Per Engine.IO socket, bytes queued since its queue was last seen empty (an attribute on the
# socket, so it goes away with it).
_BACKLOG = "_linli_backlog"


class Frame:
    """One Socket.IO event encoded once for every recipient."""

    __slots__ = ("_eio", "event", "text", "ws")

    def __init__(self, namespace: str, event: str, data: Any) -> None:
        prefix = "" if namespace == "/" else namespace + ","
        # Socket.IO v5 EVENT ("2") inside an Engine.IO v4 MESSAGE ("4")
        self.event = event
        self.text = "2" + prefix + dumps([event, data])
        self.ws = ws_text_frame(("4" + self.text).encode())
        self._eio: Any = None

    @property
    def eio_packet(self) -> Any:
        if self._eio is None:
            self._eio = eio_packet.Packet(eio_packet.MESSAGE, self.text)
        return self._eio


def ws_text_frame(payload: bytes) -> bytes:
    """An unmasked, uncompressed, final WebSocket text frame (RFC 6455 §5.2), server to client."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 65536:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


@dataclass
class _Direct:
    request: web.BaseRequest


@dataclass
class DirectSockets:
    """Engine.IO sid → the aiohttp request carrying its websocket, for direct writes."""

    by_eio_sid: dict[str, _Direct] = field(default_factory=dict)
    slow: list[Any] = field(default_factory=list)
    direct_writes: int = 0
    queued_writes: int = 0
    max_queued_frames: int = MAX_QUEUED_FRAMES
    max_queued_bytes: int = MAX_QUEUED_BYTES
    dropped_slow: int = 0

    def install(self, eio_server: Any) -> None:
        registry = self

        class TrackingWebSocket(eio_aiohttp.WebSocket):  # type: ignore[misc]
            async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
                request = environ["aiohttp.request"]
                self._sock = web.WebSocketResponse(
                    max_msg_size=self.server.max_http_buffer_size, compress=False
                )
                await self._sock.prepare(request)
                self.environ = environ
                socket = getattr(self.handler, "__self__", None)
                sid = getattr(socket, "sid", None)
                if sid is not None:
                    registry.by_eio_sid[sid] = _Direct(request)
                try:
                    await self.handler(self)
                finally:
                    if sid is not None:
                        registry.by_eio_sid.pop(sid, None)
                return self._sock

        # A copy: the driver's dict is module-level and shared by every server in the process.
        eio_server._async = {**eio_server._async, "websocket": TrackingWebSocket}

    def send(self, socket: Any, frame: Frame) -> bool:
        """Write `frame` to one Engine.IO socket; False when the socket is gone."""
        if socket.closed or socket.closing:
            return False
        direct = self.by_eio_sid.get(socket.sid)
        if (direct is not None and socket.upgraded and not socket.upgrading
                and socket.queue._unfinished_tasks == 0):
            request = direct.request
            transport = request.transport
            if transport is None or transport.is_closing():
                return False
            protocol = request.protocol
            if not protocol.writing_paused:
                transport.write(frame.ws)
                self.direct_writes += 1
                if transport.get_write_buffer_size() > SLOW_CLIENT_BYTES:
                    self.slow.append(socket)
                return True
        # Polling, mid-upgrade, paused, or the writer has packets in flight: keep the order.
        queue = socket.queue
        # An empty queue means the writer took everything (it is keeping up, if slowly).
        backlog = (0 if queue.qsize() == 0 else getattr(socket, _BACKLOG, 0)) + len(frame.ws)
        setattr(socket, _BACKLOG, backlog)
        queue.put_nowait(frame.eio_packet)
        self.queued_writes += 1
        if queue.qsize() > self.max_queued_frames or backlog > self.max_queued_bytes:
            self.slow.append(socket)
        return True

    async def drop_slow(self) -> int:
        """Close sockets that stopped reading (they resume from their last seq on reconnect)."""
        victims, self.slow = self.slow, []
        unique = {id(s): s for s in victims}.values()
        self.dropped_slow += len(unique)
        for socket in unique:
            direct = self.by_eio_sid.get(socket.sid)
            if not socket.closed:
                await socket.close(wait=False, abort=True)
            if direct is not None and direct.request.transport is not None:
                direct.request.transport.abort()
        return len(unique)
