"""The publisher tap: encoded packets of a live stream, handed to consumers (HLS, recording).

Contract between WebRTC ingest (media/publisher*.py) and everything that consumes a stream
without being a WebRTC viewer. Kept small and synchronous on purpose:

- Callbacks run on the event-loop thread, once per packet (~30 video + 50 audio per second).
  A sink must return at once: copy what it needs into its own queue/thread; never block,
  never await. An exception from a sink is logged and the sink is detached, so one broken
  consumer cannot stall the stream or the other sinks.
- `on_start(info)` is called when a publisher (re)connects; `on_stop(final=False)` when it drops
  and the reconnect grace starts; `on_stop(final=True)` once when the stream is over (DELETE,
  grace expired, session ended, app shutdown). After a final stop the sink is released.
  A reconnect within the grace calls `on_start` again on the SAME sink objects, so a recorder
  continues the same recording.
- Packets: `packet.pts == packet.dts`, `packet.time_base` = 1/90000 (video) or 1/48000
  (Opus). Timestamps are one session timeline: 0 at the first packet of the session; after a
  reconnect they continue at the wall-clock time elapsed since then (a gap equal to the outage,
  never a jump backwards). Video and audio are aligned on arrival time (± network jitter).
  `packet.is_keyframe` is set for VP8 keyframes and H.264 access units holding an IDR slice.
  H.264 data is Annex-B (start codes; SPS/PPS in-band, as the publisher sent them); VP8 is one
  raw frame per packet; Opus one raw Opus packet.
- Keyframes: while at least one sink is attached the publisher is asked for a keyframe (PLI)
  every `keyframe_interval_s` (2 s), so HLS segments can be cut every ~2 s without a transcode.
  `request_keyframe(session_id)` asks once more, now (rate-limited with viewers' requests to
  one PLI per 0.5 s; see media/keyframes.py).

Registration: `app[publisher_taps_key]` (media/keys.py) is one `PublisherTaps` per app, created
in `server/media_component.setup` (so: usable from the setup of components wired after it, and
from any cleanup_ctx, which all run after every setup).
- `add_factory(factory)`: `factory(session_id)` is called when a session's first publisher
  connects (not on reconnects); return a sink to tap that session, or None.
- `add_sink(session_id, sink)`: tap one session now (the sink gets `on_start` at once when the
  session is already publishing). Returns a callable that detaches it (no final on_stop).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import av

if TYPE_CHECKING:
    # PyAV's stubs make Packet generic over its stream; our packets belong to no container.
    EncodedPacket = av.Packet[Any]
else:
    EncodedPacket = av.Packet

log = logging.getLogger(__name__)

VIDEO_TIME_BASE_HZ = 90_000
AUDIO_TIME_BASE_HZ = 48_000


@dataclass(frozen=True)
class StreamInfo:
    """What a publisher sends; given to sinks on every (re)connect (the codec may change)."""

    session_id: int
    video_codec: str  # "h264" | "vp8"
    audio_codec: str | None  # "opus", or None when the publisher sends no audio
    audio_channels: int = 2
    audio_sample_rate: int = AUDIO_TIME_BASE_HZ


class PacketSink(Protocol):
    def on_start(self, info: StreamInfo) -> None: ...

    def on_packet(self, packet: EncodedPacket, kind: str) -> None: ...

    def on_stop(self, final: bool) -> None: ...


SinkFactory = Callable[[int], "PacketSink | None"]


class SessionTap:
    """The sinks of one session, fed by its publisher (owned by media/publisher.py)."""

    def __init__(self, session_id: int) -> None:
        self.session_id = session_id
        self.sinks: list[PacketSink] = []
        self.info: StreamInfo | None = None  # set while a publisher is connected
        # Per kind: while set, the publisher's packets of that kind go here instead of to the
        # sinks (a guest's composer and mixer), which hand their own packets to `to_sinks`.
        self.divert: dict[str, Callable[[EncodedPacket], None]] = {}
        # After the video source changed: the sinks get video again from a keyframe on.
        self.video_waits_key = False

    def start(self, info: StreamInfo) -> None:
        self.info = info
        for sink in list(self.sinks):
            self._call(sink, "on_start", info)

    def packet(self, packet: EncodedPacket, kind: str) -> None:
        divert = self.divert.get(kind)
        if divert is not None:
            divert(packet)
        else:
            self.to_sinks(packet, kind)

    def to_sinks(self, packet: EncodedPacket, kind: str) -> None:
        if kind == "video" and self.video_waits_key:
            if not packet.is_keyframe:
                return
            self.video_waits_key = False
        for sink in self.sinks:
            try:
                sink.on_packet(packet, kind)
            except Exception:
                log.exception("packet sink failed; detaching it (session %s)", self.session_id)
                self.sinks = [s for s in self.sinks if s is not sink]

    def stop(self, final: bool) -> None:
        self.info = None
        for sink in list(self.sinks):
            self._call(sink, "on_stop", final)
        if final:
            self.sinks = []

    def _call(self, sink: PacketSink, method: str, arg: object) -> None:
        try:
            getattr(sink, method)(arg)
        except Exception:
            log.exception("packet sink %s failed; detaching it (session %s)", method, self.session_id)
            self.sinks = [s for s in self.sinks if s is not sink]


class PublisherTaps:
    """Per-app registry of packet consumers; the publisher side calls `tap_for` / `release`."""

    keyframe_interval_s = 2.0

    def __init__(self) -> None:
        self._factories: list[SinkFactory] = []
        self._taps: dict[int, SessionTap] = {}
        # Installed by the media component: asks a session's publisher for a keyframe.
        self._keyframe_requester: Callable[[int], None] = lambda session_id: None

    # -- consumer side
    def add_factory(self, factory: SinkFactory) -> None:
        """Called with the session id whenever a session starts publishing (not on reconnect)."""
        self._factories.append(factory)

    def add_sink(self, session_id: int, sink: PacketSink) -> Callable[[], None]:
        """Tap one session now; returns a detach function."""
        tap = self._taps.setdefault(session_id, SessionTap(session_id))
        tap.sinks.append(sink)
        if tap.info is not None:
            tap._call(sink, "on_start", tap.info)

        def detach() -> None:
            tap.sinks = [s for s in tap.sinks if s is not sink]

        return detach

    def request_keyframe(self, session_id: int) -> None:
        """Ask the session's publisher for a keyframe (no-op when nobody publishes)."""
        self._keyframe_requester(session_id)

    # -- publisher side
    def set_keyframe_requester(self, requester: Callable[[int], None]) -> None:
        self._keyframe_requester = requester

    def open_session(self, session_id: int) -> SessionTap:
        """A session's first publisher connected: run the factories once."""
        tap = self._taps.setdefault(session_id, SessionTap(session_id))
        for factory in self._factories:
            try:
                sink = factory(session_id)
            except Exception:
                log.exception("packet sink factory failed (session %s)", session_id)
                continue
            if sink is not None:
                tap.sinks.append(sink)
        return tap

    def close_session(self, session_id: int) -> None:
        """The stream is over: final on_stop to every sink, then forget them."""
        tap = self._taps.pop(session_id, None)
        if tap is not None:
            tap.stop(final=True)

    def has_sinks(self, session_id: int) -> bool:
        tap = self._taps.get(session_id)
        return tap is not None and bool(tap.sinks)
