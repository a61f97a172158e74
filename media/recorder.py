"""One recorder per live session: a worker thread that turns packets into segments.

The event loop only copies packet bytes into a queue (`push_*`, never blocking); everything
that touches PyAV or the disk happens on the worker thread. Inputs come and go (publisher
drops, reconnects, a restart after a crash): every new input continues the same recording
at the point the previous one stopped, so a replay never has a gap longer than the outage.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av

from media.record_tracks import TS_TIME_BASE, Track
from media.segment_index import SegmentEntry
from media.segment_writer import PartReady, SegmentWriter
from media.tap import EncodedPacket

log = logging.getLogger(__name__)

# Packets waiting for the worker; beyond this the recorder is behind and drops (then waits for a
# keyframe) rather than growing memory without bound.
MAX_QUEUED = 3000
# Ask a remuxed publisher for a keyframe this far into a segment (and again while none came):
# its answer lands around 1.8-2 s, leaving room before 2.5 s on a slow or busy link.
KEYFRAME_REQUEST_AT_S = 1.75
KEYFRAME_REPEAT_S = 0.3
# Force a keyframe from our own encoder at this point of a segment.
FORCE_KEYFRAME_AT_S = 1.95

ClockMode = Literal["shared", "per_kind"]


@dataclass
class _Input:
    tracks: dict[str, Track]
    # "shared": every kind's pts share one clock (RTMP/FLV). "per_kind": each kind has its own
    # (WebRTC: RTP clocks per track), aligned by when their first packets arrived.
    clock: ClockMode
    request_keyframe: Callable[[], None] | None
    base: float = 0.0
    wall0: float | None = None  # wall clock of `base` on the recording timeline
    arrival0: float | None = None  # when this input's first accepted packet arrived
    first: dict[str, tuple[float, float]] = field(default_factory=dict)  # kind -> (pts_s, arrival)
    waiting_keyframe: bool = True
    last_request: float = 0.0


@dataclass(frozen=True)
class _Start:
    tracks: dict[str, Track]
    clock: ClockMode
    request_keyframe: Callable[[], None] | None
    started_at: float | None = None


@dataclass(frozen=True)
class _Raw:
    kind: str
    data: bytes
    pts: int | None
    dts: int | None
    time_base: Fraction | None
    keyframe: bool
    arrival: float


@dataclass(frozen=True)
class _Demuxed:
    kind: str
    packet: EncodedPacket
    arrival: float


@dataclass(frozen=True)
class _Stop:
    final: bool


@dataclass(frozen=True)
class _Gap:
    """Packets were dropped here (the worker fell behind)."""


_Command = _Start | _Raw | _Demuxed | _Stop | _Gap | None


class Recorder:
    """Owns the worker thread and the segment writer of one session's recording."""

    def __init__(self, session_id: int, directory: Path,
                 on_segment: Callable[[SegmentEntry], None] | None = None,
                 on_stopped: Callable[[bool], None] | None = None,
                 part_target_s: float | None = None,
                 on_part: Callable[[PartReady], None] | None = None,
                 low_rendition: bool = False) -> None:
        self.session_id = session_id
        self._low_rendition = low_rendition
        self._part_target_s = part_target_s
        self._on_part = on_part
        self.directory = directory
        self._on_segment = on_segment
        self._on_stopped = on_stopped
        self._queue: queue.SimpleQueue[_Command] = queue.SimpleQueue()
        self._queued = 0
        self._lock = threading.Lock()
        self._dropping = False
        self.active = False  # an input is attached (touched on the loop thread only)
        self.finishing = False  # a final stop is queued but not yet written
        self.segments_written = 0
        self._thread = threading.Thread(target=self._run, name=f"recorder-{session_id}", daemon=True)
        self._writer: SegmentWriter | None = None
        self._input: _Input | None = None
        self._thread.start()

    # --- called on the event loop -------------------------------------------------------------

    def start_input(self, tracks: dict[str, Track], clock: ClockMode,
                    request_keyframe: Callable[[], None] | None = None,
                    started_at: float | None = None) -> None:
        """A publisher (re)connected. `started_at`: when its first media arrived, for inputs whose
        packets reach us late at first (a demuxer probing the stream holds the first second)."""
        self.active = True
        self._put(_Start(tracks, clock, request_keyframe, started_at), force=True)

    def push_packet(self, kind: str, packet: EncodedPacket) -> None:
        """A tap packet: copied now, since the WebRTC side keeps using the original."""
        self._put(_Raw(kind, bytes(packet), packet.pts, packet.dts, packet.time_base,
                       bool(packet.is_keyframe), time.time()))

    def push_demuxed(self, kind: str, packet: EncodedPacket) -> None:
        """A packet we own (from our own demuxer): no copy needed. Thread-safe."""
        self._put(_Demuxed(kind, packet, time.time()))

    def stop_input(self, final: bool) -> None:
        self.active = False
        if final:
            # Until the worker has closed the last segment (Recordings clears this on the loop).
            self.finishing = True
        self._put(_Stop(final), force=True)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread after it wrote what it has (the open segment is closed, not lost)."""
        self._put(None, force=True)
        self._thread.join(timeout)

    def _put(self, command: _Command, force: bool = False) -> None:
        gap = False
        with self._lock:
            if not force and self._queued >= MAX_QUEUED:
                if not self._dropping:
                    log.warning("recorder behind; dropping packets",
                                extra={"session_id": self.session_id})
                self._dropping = True
                return
            if self._dropping and not force:
                # The first packet after a run of drops: mark the hole so the worker waits for
                # a keyframe there (decoding across it would show garbage).
                self._dropping, gap = False, True
                self._queued += 1
            self._queued += 1
        if gap:
            self._queue.put(_Gap())
        self._queue.put(command)

    # --- worker thread ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._writer = SegmentWriter(self.directory, on_segment=self._segment_done,
                                         part_target_s=self._part_target_s, on_part=self._on_part,
                                         low_rendition=self._low_rendition)
            self._writer.mark_discontinuity()
            while True:
                command = self._queue.get()
                with self._lock:
                    self._queued -= 1
                if command is None:
                    self._end_input(final=False)
                    return
                try:
                    self._handle(command)
                except Exception:
                    # One bad packet (or a full disk for one segment) must not end the recording.
                    log.exception("recorder failed on a command", extra={"session_id": self.session_id})
        except Exception:
            log.exception("recorder thread died", extra={"session_id": self.session_id})

    def _segment_done(self, entry: SegmentEntry) -> None:
        self.segments_written += 1
        if self._on_segment is not None:
            self._on_segment(entry)

    def _handle(self, command: _Start | _Raw | _Demuxed | _Stop | _Gap) -> None:
        writer = self._writer
        assert writer is not None
        if isinstance(command, _Gap):
            if self._input is not None:
                self._input.waiting_keyframe = True
                self._request_keyframe(self._input, time.time())
        elif isinstance(command, _Start):
            self._end_input(final=False)
            writer.reopen()
            writer.mark_discontinuity()
            self._input = _Input(command.tracks, command.clock, command.request_keyframe,
                                 base=writer.media_end, wall0=command.started_at)
        elif isinstance(command, _Stop):
            self._end_input(final=command.final)
            if self._on_stopped is not None:
                self._on_stopped(command.final)
        elif isinstance(command, _Raw):
            packet = av.Packet(command.data)
            packet.pts = command.pts
            packet.dts = command.dts if command.dts is not None else command.pts
            if command.time_base is not None:
                packet.time_base = command.time_base
            packet.is_keyframe = command.keyframe
            self._ingest(command.kind, packet, command.arrival)
        else:
            self._ingest(command.kind, command.packet, command.arrival)

    def _ingest(self, kind: str, packet: EncodedPacket, arrival: float) -> None:
        inp, writer = self._input, self._writer
        if inp is None or writer is None or kind not in inp.tracks:
            return
        if packet.pts is None or packet.time_base is None:
            return
        has_video = "video" in inp.tracks
        if inp.waiting_keyframe and has_video:
            if kind != "video" or not packet.is_keyframe:
                if kind == "video" and inp.request_keyframe is not None:
                    self._request_keyframe(inp, arrival)
                return
            inp.waiting_keyframe = False
        elif inp.waiting_keyframe:
            inp.waiting_keyframe = False
        t = self._map_time(inp, kind, packet, arrival)
        if t is None:
            return
        if kind == "video" or not has_video:
            self._anchor_wall(inp, t, arrival)
        dts_in = packet.dts if packet.dts is not None else packet.pts
        offset_ticks = round((t - float(dts_in * packet.time_base)) / TS_TIME_BASE)
        pts90 = round(packet.pts * packet.time_base / TS_TIME_BASE)
        dts90 = round(dts_in * packet.time_base / TS_TIME_BASE)
        duration90 = int((packet.duration or 0) * packet.time_base / TS_TIME_BASE)
        packet.pts, packet.dts = pts90 + offset_ticks, dts90 + offset_ticks
        packet.duration = duration90
        packet.time_base = TS_TIME_BASE
        track = inp.tracks[kind]
        force = (track.controls_keyframes and writer.open_elapsed >= FORCE_KEYFRAME_AT_S)
        if (kind == "video" and inp.request_keyframe is not None and not track.controls_keyframes
                and writer.open_elapsed >= KEYFRAME_REQUEST_AT_S):
            self._request_keyframe(inp, arrival)
            writer.keyframe_requested = True
        for out in track.process(packet, force_keyframe=force):
            self._write(writer, inp, kind, out)

    def _write(self, writer: SegmentWriter, inp: _Input, kind: str, packet: EncodedPacket) -> None:
        stamp = packet.dts if packet.dts is not None else packet.pts
        if stamp is None:
            return
        t = float(stamp * (packet.time_base or TS_TIME_BASE))
        # When this moment was live: chapters map product pins (wall clock) through it.
        wall = (inp.wall0 if inp.wall0 is not None else time.time()) + (t - inp.base)
        writer.write(inp.tracks, kind, packet, t, wall)

    @staticmethod
    def _anchor_wall(inp: _Input, t: float, arrival: float) -> None:
        # Segments are dated by the media clock from the input's first packet on. A live picture
        # cannot arrive before it happened, so a packet arriving earlier than its date shows a
        # media clock running ahead of the wall clock (a source sending faster than real time):
        # from then on dates follow arrival, or every later moment would be dated later still.
        assert inp.wall0 is not None
        ahead = inp.wall0 + (t - inp.base) - arrival
        if ahead > 0:
            inp.wall0 -= ahead

    def _map_time(self, inp: _Input, kind: str, packet: EncodedPacket, arrival: float) -> float | None:
        assert packet.pts is not None and packet.time_base is not None
        dts = packet.dts if packet.dts is not None else packet.pts
        pts_s = float(dts * packet.time_base)
        if inp.wall0 is None:
            inp.wall0 = arrival
        if inp.arrival0 is None:
            inp.arrival0 = arrival
        key = kind if inp.clock == "per_kind" else "all"
        if key not in inp.first:
            inp.first[key] = (pts_s, arrival)
        first_pts, first_arrival = inp.first[key]
        t = inp.base + (first_arrival - inp.arrival0) + (pts_s - first_pts)
        # Late packets from before this input's start would land in the previous content.
        return t if t >= inp.base - 0.001 else None

    def _request_keyframe(self, inp: _Input, now: float) -> None:
        if inp.request_keyframe is None or now - inp.last_request < KEYFRAME_REPEAT_S:
            return
        inp.last_request = now
        try:
            inp.request_keyframe()
        except Exception:  # the callback belongs to the ingest side; never let it end recording
            log.exception("keyframe request failed")

    def _end_input(self, final: bool) -> None:
        writer, inp = self._writer, self._input
        if writer is None:
            return
        if inp is not None:
            self._input = None
            for kind, track in inp.tracks.items():
                try:
                    for out in track.flush():
                        self._write(writer, inp, kind, out)
                except (av.FFmpegError, ValueError):
                    log.exception("flushing a track failed")
        if final:
            writer.finish()
        else:
            writer.cut()
