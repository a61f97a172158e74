"""MPEG-TS segments on disk: the one artefact that is both live HLS and the recording.

Crash safety comes from the order of writes: a segment is written under a temporary name,
fsynced, renamed, and only then appended (fsynced) to `index.jsonl` and published in the
playlist (itself replaced atomically). A SIGKILL therefore loses at most the segment being
written; on restart, temporary files are swept and the index says what is complete.
This module runs on the recorder's worker thread only: it blocks on disk on purpose.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import av
import av.container
import av.stream

from media.hls_playlist import write_live_playlist
from media.record_tracks import Track
from media.segment_index import SegmentEntry, SegmentIndex
from media.tap import EncodedPacket

log = logging.getLogger(__name__)

PLAYLIST_NAME = "index.m3u8"
# Cut at the first keyframe after this much media; the segmenter asks for keyframes at ~2 s.
CUT_AFTER_S = 1.9
# With a keyframe requested from the publisher, its answer may come a little early.
CUT_AFTER_REQUESTED_S = 1.5
# Audio-only streams have no keyframes to wait for.
AUDIO_ONLY_CUT_S = 2.0
# Hard bound per segment file: a publisher that never sends a keyframe cannot grow one forever.
MAX_SEGMENT_BYTES = 64 * 1024 * 1024
# A session records at most this much (12 h, ~21,600 segments): beyond it a forgotten stream
# stops filling the disk. Live HLS stops with it; the replay keeps the first 12 hours.
MAX_RECORDING_S = 12 * 3600.0


def segment_name(seq: int) -> str:
    return f"seg_{seq:06d}.ts"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SegmentWriter:
    """Writes packets into the current segment and cuts segments at keyframes."""

    def __init__(self, directory: Path, on_segment: Callable[[SegmentEntry], None] | None = None,
                 live_window: int = 6) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.tmp"):
            stale.unlink(missing_ok=True)
        self.index = SegmentIndex(directory)
        self._on_segment = on_segment
        self._live_window = live_window
        self._container: av.container.OutputContainer | None = None
        self._streams: dict[str, av.stream.Stream] = {}
        self._tmp_path: Path | None = None
        self._seg_start = 0.0
        self._seg_wall = 0.0
        self._seg_end = 0.0
        self._seg_disc = False
        self._last_dts: dict[str, float] = {}
        # A new writer over an existing recording follows a break (a restart).
        self._pending_disc = not self.index.empty
        self.keyframe_requested = False
        self.ended = False
        self._full = False

    @property
    def entries(self) -> list[SegmentEntry]:
        return self.index.entries

    @property
    def media_end(self) -> float:
        """Where the next content starts on the recording's timeline (no gap after a drop)."""
        if self._container is not None:
            return self._seg_end
        if not self.entries:
            return 0.0
        last = self.entries[-1]
        return last.start + last.duration

    @property
    def next_seq(self) -> int:
        return self.index.next_seq

    @property
    def open_elapsed(self) -> float:
        return self._seg_end - self._seg_start if self._container is not None else 0.0

    def mark_discontinuity(self) -> None:
        """The next segment starts a new input (publisher reconnect, restart after a crash)."""
        self._pending_disc = True

    def write(self, tracks: dict[str, Track], kind: str, packet: EncodedPacket, t: float,
              wall: float) -> None:
        """Mux one output packet whose decode time on the recording timeline is `t` seconds."""
        if self._container is not None and self._should_cut(tracks, kind, packet, t):
            self.cut(t)
        if self._container is None:
            if self.media_end >= MAX_RECORDING_S:
                if not self._full:
                    log.warning("recording reached its length limit", extra={"dir": str(self.directory)})
                self._full = True
                return
            if "video" in tracks and kind != "video":
                return  # a segment starts with a video keyframe; audio before it is dropped
            if kind == "video" and not packet.is_keyframe:
                return
            self._open(tracks, t, wall)
        assert self._container is not None
        stream = self._streams[kind]
        self._fix_monotonic(kind, packet)
        packet.stream = stream
        self._container.mux(packet)
        end = t + float((packet.duration or 0) * (packet.time_base or 0))
        self._seg_end = max(self._seg_end, end, t)

    def _should_cut(self, tracks: dict[str, Track], kind: str, packet: EncodedPacket, t: float) -> bool:
        elapsed = t - self._seg_start
        if self._tmp_path is not None and self._tmp_path.stat().st_size > MAX_SEGMENT_BYTES:
            return kind == "video" and packet.is_keyframe
        if "video" not in tracks:
            return elapsed >= AUDIO_ONLY_CUT_S
        if kind != "video" or not packet.is_keyframe:
            return False
        limit = CUT_AFTER_REQUESTED_S if self.keyframe_requested else CUT_AFTER_S
        return elapsed >= limit

    def _fix_monotonic(self, kind: str, packet: EncodedPacket) -> None:
        # Muxers reject a dts that goes backwards; jitter between inputs can cause one.
        tb = packet.time_base
        if packet.dts is None or tb is None:
            packet.dts = packet.pts
        if packet.dts is None or tb is None:
            return
        dts_s = float(packet.dts * tb)
        last = self._last_dts.get(kind)
        if last is not None and dts_s <= last:
            packet.dts = int(last / tb) + 1
            if packet.pts is not None and packet.pts < packet.dts:
                packet.pts = packet.dts
            dts_s = float(packet.dts * tb)
        self._last_dts[kind] = dts_s

    def _open(self, tracks: dict[str, Track], t: float, wall: float) -> None:
        seq = self.next_seq
        self._tmp_path = self.directory / (segment_name(seq) + ".tmp")
        container = av.open(str(self._tmp_path), "w", format="mpegts")
        assert isinstance(container, av.container.OutputContainer)
        self._streams = {kind: track.add_to(container) for kind, track in tracks.items()}
        self._container = container
        self._seg_start = self._seg_end = t
        self._seg_wall = wall
        self._seg_disc = self._pending_disc
        self._pending_disc = False
        self.keyframe_requested = False

    def cut(self, at: float | None = None) -> SegmentEntry | None:
        """Close the open segment and publish it (durably) in the index and playlist."""
        container, tmp = self._container, self._tmp_path
        if container is None or tmp is None:
            return None
        self._container = None
        self._tmp_path = None
        end = at if at is not None else self._seg_end
        try:
            container.close()
        except (av.FFmpegError, OSError):
            log.exception("closing a segment failed; it is dropped")
            tmp.unlink(missing_ok=True)
            return None
        duration = max(0.0, end - self._seg_start)
        if duration <= 0.0:
            tmp.unlink(missing_ok=True)
            return None
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        seq = self.next_seq
        final = self.directory / segment_name(seq)
        os.replace(tmp, final)
        _fsync_dir(self.directory)
        entry = self.index.append(final.name, duration, self._seg_start, self._seg_wall,
                                  self._seg_disc)
        self._seg_end = end
        self.write_playlist()
        if self._on_segment is not None:
            self._on_segment(entry)
        return entry

    def write_playlist(self) -> None:
        write_live_playlist(self.directory / PLAYLIST_NAME, self.entries, self._live_window,
                            ended=self.ended)

    def finish(self) -> None:
        """The stream is over: close the last segment and end the playlist."""
        self.cut()
        self.ended = True
        self.write_playlist()

    def reopen(self) -> None:
        """A publisher came back after the stream was declared over: the playlist goes live again."""
        if self.ended:
            self.ended = False
            self.mark_discontinuity()

