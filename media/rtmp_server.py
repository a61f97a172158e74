"""RTMP ingest for phone apps: `rtmp://host:port/live/<stream_key>`.

One asyncio listener for every session: it speaks enough RTMP to learn the stream key, checks
it against the session (unknown or wrong keys are refused before any media is accepted), then
hands the FLV media to a PyAV demuxer thread that feeds the same recorder as WebRTC ingest,
so RTMP produces the same live HLS and recording. A publisher who drops and comes back within
the grace window continues the same recording.

Who publishes is the media hub's decision (media/hub.py), as for WHIP: the key and its host are
checked under the session's lock, a newer publisher with the current key takes over from the
previous one (WHIP or RTMP), and WebRTC viewers get the stream through `media.rtmp_relay`.
Only the application name `live` is served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import struct
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import av
import av.container
from sqlalchemy import select

from commerce import live_sessions
from commerce.errors import DomainError
from commerce.event_payloads import SessionEnded, StreamStarted
from commerce.events import DomainEvent, EventBus
from commerce.live_sessions import LiveSession
from infra.database import Database
from media.hub import MediaHub
from media.record_tracks import CopyTemplateTrack, Track, TranscodeAudioTrack, TranscodeVideoTrack
from media.recorder import Recorder
from media.recordings import Recordings
from media.rtmp_protocol import (
    MSG_AUDIO,
    MSG_COMMAND_AMF0,
    MSG_COMMAND_AMF3,
    MSG_DATA_AMF0,
    MSG_PEER_BANDWIDTH,
    MSG_VIDEO,
    MSG_WINDOW_ACK,
    ChunkReader,
    ChunkWriter,
    RtmpError,
    amf0_decode,
    flv_header,
    flv_tag,
    server_handshake,
)
from media.rtmp_relay import RelayEncoder, RtmpRelay

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 10.0
# A publisher silent this long is treated as dropped (the grace window then runs).
MEDIA_IDLE_TIMEOUT_S = 15.0
MAX_CONNECTIONS = 32
# Connections one address may hold (a phone reconnecting briefly holds two).
CONNECTIONS_PER_ADDRESS = 4
# From accept to an accepted `publish`: a client that only talks holds no slot for longer.
PUBLISH_DEADLINE_S = 20.0
# A publisher being replaced must have stopped within this (its demuxer thread joined).
STOP_WAIT_S = 15.0
# FLV bytes waiting for the demuxer; beyond this the connection is too far behind and is closed.
MAX_BUFFERED_BYTES = 32 * 1024 * 1024
STREAM_KEY_MAX = 128
APP_NAME = "live"
FEED_BYTES = 64 * 1024


class _FlvPipe:
    """A blocking file object for PyAV, fed from the event loop."""

    def __init__(self) -> None:
        self._chunks: queue.Queue[bytes | None] = queue.Queue()
        self._rest = b""
        self.buffered = 0
        self._lock = threading.Lock()

    def feed(self, data: bytes | None) -> None:
        if data is not None:
            with self._lock:
                self.buffered += len(data)
        self._chunks.put(data)

    def read(self, size: int = -1) -> bytes:
        if not self._rest:
            chunk = self._chunks.get()
            if chunk is None:
                self._chunks.put(None)  # stay at EOF for further reads
                return b""
            with self._lock:
                self.buffered -= len(chunk)
            self._rest = chunk
        n = len(self._rest) if size < 0 else size
        out, self._rest = self._rest[:n], self._rest[n:]
        return out


def _tracks_from(container: av.container.InputContainer) -> dict[str, Track]:
    tracks: dict[str, Track] = {}
    for stream in container.streams:
        if stream.type == "video" and "video" not in tracks:
            name = stream.codec_context.name
            tracks["video"] = (CopyTemplateTrack("video", stream) if name == "h264"
                               else TranscodeVideoTrack(name))
        elif stream.type == "audio" and "audio" not in tracks:
            name = stream.codec_context.name
            tracks["audio"] = (CopyTemplateTrack("audio", stream) if name == "aac"
                               else TranscodeAudioTrack(name))
    return tracks


def _demux(pipe: _FlvPipe, recorder: Recorder, started_at: float, relay: RelayEncoder) -> None:
    """Demuxer thread: FLV → packets → the WebRTC relay, then the recorder. The container is
    never closed here: the recorder's tracks keep its streams (segment templates) alive until
    it is done with them."""
    try:
        container = av.open(pipe, format="flv", mode="r",
                            options={"analyzeduration": "1000000", "probesize": "500000"})
        assert isinstance(container, av.container.InputContainer)
        tracks = _tracks_from(container)
        if not tracks:
            return
        relay.open(container)
        recorder.start_input(tracks, "shared", None, started_at=started_at)
        for packet in container.demux():
            if packet.dts is None or packet.stream.type not in tracks:
                continue
            relay.push(packet)
            recorder.push_demuxed(packet.stream.type, packet)
    except (av.FFmpegError, OSError, ValueError):
        log.warning("RTMP stream could not be demuxed", exc_info=True)


@dataclass
class _Publish:
    session_id: int
    writer: Any
    grace: asyncio.TimerHandle | None = None
    connections: set[asyncio.Task[None]] = field(default_factory=set)


class RtmpIngest:
    """The listener and its publishers; `start()` / `close()` from the component's cleanup_ctx."""

    def __init__(self, database: Database, recordings: Recordings, events: EventBus,
                 grace_s: float, hub: MediaHub) -> None:
        self._database = database
        self._hub = hub
        self._recordings = recordings
        self._events = events
        self._grace_s = grace_s
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._publishing: dict[int, asyncio.StreamWriter] = {}
        self._grace: dict[int, asyncio.TimerHandle] = {}
        self._ended: set[int] = set()
        self._by_address: dict[str, int] = {}
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._accept, host, port, reuse_port=True)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("RTMP ingest listening", extra={"port": self.port})

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._publishing.values()):
            writer.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        for handle in self._grace.values():
            handle.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    def end_session(self, session_id: int) -> None:
        """The session ended: drop its publisher and finish the recording now."""
        self._ended.add(session_id)
        writer = self._publishing.get(session_id)
        if writer is not None:
            writer.close()  # its connection handler finishes the recording on the way out
            return
        handle = self._grace.pop(session_id, None)
        if handle is not None:
            handle.cancel()
            self._recordings.recorder(session_id).stop_input(final=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        # Counted before any await: connections racing in cannot pass either cap.
        held = self._by_address.get(address, 0)
        if len(self._connections) >= MAX_CONNECTIONS or held >= CONNECTIONS_PER_ADDRESS:
            writer.close()
            return
        self._by_address[address] = held + 1
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (RtmpError, asyncio.IncompleteReadError, ConnectionError, TimeoutError) as exc:
            log.info("RTMP connection closed: %s", type(exc).__name__)
        finally:
            self._connections.discard(task)
            left = self._by_address.get(address, 1) - 1
            if left > 0:
                self._by_address[address] = left
            else:
                self._by_address.pop(address, None)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(PUBLISH_DEADLINE_S):
            session_id, chunks, metadata, relay = await self._until_publishing(reader, writer)
        if session_id is None or relay is None:
            return
        await self._receive_media(session_id, chunks, writer, metadata, relay)

    async def _until_publishing(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
    ) -> tuple[int | None, ChunkReader, dict[str, Any], RtmpRelay | None]:
        """Handshake and commands up to an accepted `publish` (session id None: refused)."""
        await asyncio.wait_for(server_handshake(reader, writer), HANDSHAKE_TIMEOUT_S)
        chunks, out = ChunkReader(reader), ChunkWriter(writer)
        relay: RtmpRelay | None = None
        metadata: dict[str, Any] = {}
        session_id: int | None = None
        while session_id is None:
            message = await asyncio.wait_for(chunks.read_message(), COMMAND_TIMEOUT_S)
            if message.type_id == MSG_DATA_AMF0:
                metadata.update(_metadata(message.payload))
            if message.type_id not in (MSG_COMMAND_AMF0, MSG_COMMAND_AMF3):
                continue
            payload = message.payload[1:] if message.type_id == MSG_COMMAND_AMF3 else message.payload
            values = amf0_decode(payload)
            if len(values) < 2 or not isinstance(values[0], str):
                raise RtmpError("malformed command")
            name, tx = values[0], values[1]
            if name == "connect":
                if not _app_ok(values[2] if len(values) > 2 else None):
                    out.command("_error", tx, None,
                                {"level": "error", "code": "NetConnection.Connect.Rejected",
                                 "description": "未知的应用名,请使用 rtmp://主机/live/推流密钥 / "
                                                "Unknown application: use rtmp://host/live/<key>"})
                    await out.drain()
                    return None, chunks, metadata, None
                out.control(MSG_WINDOW_ACK, struct.pack(">I", 2_500_000))
                out.control(MSG_PEER_BANDWIDTH, struct.pack(">IB", 2_500_000, 2))
                out.set_chunk_size(4096)
                out.command("_result", tx, {"fmsVer": "FMS/3,0,1,123", "capabilities": 31},
                            {"level": "status", "code": "NetConnection.Connect.Success",
                             "description": "Connection succeeded.", "objectEncoding": 0})
            elif name in ("releaseStream", "FCPublish"):
                out.command("_result", tx, None)
            elif name == "createStream":
                out.command("_result", tx, None, 1)
            elif name == "publish":
                key = values[3] if len(values) > 3 and isinstance(values[3], str) else ""
                relay = RtmpRelay(self._stopper(writer))
                session_id = await self._authorise(key.split("?", 1)[0], relay)
                if session_id is None:
                    out.command("onStatus", 0, None,
                                {"level": "error", "code": "NetStream.Publish.BadName",
                                 "description": "推流密钥错误或直播不可用 / Wrong stream key or "
                                                "session not available"}, stream_id=1)
                    await out.drain()
                    return None, chunks, metadata, None
                out.command("onStatus", 0, None,
                            {"level": "status", "code": "NetStream.Publish.Start",
                             "description": "Publishing."}, stream_id=1)
            await out.drain()
        return session_id, chunks, metadata, relay

    def _stopper(self, writer: asyncio.StreamWriter) -> Callable[[], Awaitable[None]]:
        """How the hub stops this connection: close it and wait until its recording input has
        stopped (so a publisher taking over starts the recorder after it, never before)."""
        task = asyncio.current_task()

        async def stop() -> None:
            writer.close()
            if task is not None and task is not asyncio.current_task():
                await asyncio.wait({task}, timeout=STOP_WAIT_S)

        return stop

    async def _authorise(self, key: str, relay: RtmpRelay) -> int | None:
        if not key or len(key) > STREAM_KEY_MAX:
            return None
        async with self._database.session() as db:
            found = (await db.execute(select(LiveSession.id).where(LiveSession.stream_key == key))
                     ).scalar_one_or_none()
        if found is None:
            return None
        try:
            # Key, host and takeover decided under the session's lock, as for WHIP.
            await self._hub.attach_rtmp(found, key, relay)
        except DomainError:
            return None
        return found

    async def _receive_media(self, session_id: int, chunks: ChunkReader,
                             writer: asyncio.StreamWriter, metadata: dict[str, Any],
                             relay: RtmpRelay) -> None:
        handle = self._grace.pop(session_id, None)
        if handle is not None:
            handle.cancel()
        self._publishing[session_id] = writer
        recorder = self._recordings.recorder(session_id)
        pipe = _FlvPipe()
        thread: threading.Thread | None = None
        pending = bytearray()
        await self._events.publish(DomainEvent("stream_started", session_id, StreamStarted(ingest="rtmp")))
        try:
            while True:
                message = await asyncio.wait_for(chunks.read_message(), MEDIA_IDLE_TIMEOUT_S)
                if message.type_id == MSG_DATA_AMF0 and thread is None:
                    metadata.update(_metadata(message.payload))
                if message.type_id == MSG_COMMAND_AMF0:
                    values = amf0_decode(message.payload)
                    if values and values[0] in ("FCUnpublish", "deleteStream", "closeStream"):
                        break
                if message.type_id not in (MSG_AUDIO, MSG_VIDEO) or not message.payload:
                    continue
                if thread is None:
                    has_audio = "audiocodecid" in metadata or not metadata
                    has_video = "videocodecid" in metadata or not metadata
                    pipe.feed(flv_header(has_audio, has_video))
                    encoder = RelayEncoder(relay, asyncio.get_running_loop())
                    thread = threading.Thread(target=_demux,
                                              args=(pipe, recorder, time.time(), encoder),
                                              name=f"rtmp-demux-{session_id}", daemon=True)
                    thread.start()
                pending += flv_tag(message.type_id, message.timestamp, message.payload)
                # Handing bytes to the demuxer thread wakes it: do it once per video frame (audio
                # rides along, ≤ 33 ms later), which halves the thread switches per second.
                if message.type_id == MSG_VIDEO or len(pending) >= FEED_BYTES:
                    pipe.feed(bytes(pending))
                    pending.clear()
                if pipe.buffered > MAX_BUFFERED_BYTES:
                    raise RtmpError("demuxer too far behind")
        finally:
            if pending:
                pipe.feed(bytes(pending))
            pipe.feed(None)
            if thread is not None:
                await asyncio.to_thread(thread.join, 10.0)
            if self._publishing.get(session_id) is writer:
                self._publishing.pop(session_id, None)
            if thread is not None:
                recorder.stop_input(final=False)
            if not relay.handed_over:
                self._hub.relay_lost(session_id, relay)
                self._start_grace(session_id)

    def _start_grace(self, session_id: int) -> None:
        if session_id in self._ended:
            self._recordings.recorder(session_id).stop_input(final=True)
            return
        loop = asyncio.get_running_loop()

        def expire() -> None:
            self._grace.pop(session_id, None)
            # Nobody came back over RTMP, and no WHIP publisher took the session over meanwhile.
            if session_id not in self._publishing and self._hub.publisher_resource(session_id) is None:
                self._recordings.recorder(session_id).stop_input(final=True)
                task = asyncio.ensure_future(self._end_after_grace(session_id))
                self._connections.add(task)
                task.add_done_callback(self._connections.discard)

        self._grace[session_id] = loop.call_later(self._grace_s, expire)

    async def _end_after_grace(self, session_id: int) -> None:
        """The publisher did not come back in time: the live session is over (as with WHIP)."""
        self._ended.add(session_id)
        async with self._database.session() as db:
            session = await live_sessions.end_session(db, session_id, None)
            ended_at = session.ended_at
        await self._events.publish(DomainEvent("session_ended", session_id, SessionEnded(ended_at=ended_at)))


def _app_ok(command: object) -> bool:
    """`connect`'s command object names the application: only `live` (maybe with a query)."""
    if not isinstance(command, dict):
        return False
    app = command.get("app")
    return isinstance(app, str) and app.split("?", 1)[0].strip("/") == APP_NAME


def _metadata(payload: bytes) -> dict[str, Any]:
    with contextlib.suppress(RtmpError):
        for value in amf0_decode(payload):
            if isinstance(value, dict):
                return value
    return {}
