"""MPEG-TS segments on disk: the one artefact that is both live HLS and the recording.

While a segment is written, its bytes are also handed out in partial segments (LL-HLS parts,
docs/LLHLS.md): every muxed packet reaches the file at once (`flush_packets`), so the bytes
written since the last part boundary are a valid continuation of the MPEG-TS stream, and the
parts of a segment concatenated are the segment byte for byte.

Crash safety comes from the order of writes: a segment is written under a temporary name,
fsynced, renamed, and only then appended (fsynced) to `index.jsonl` and published in the
playlist (itself replaced atomically). A SIGKILL therefore loses at most the segment being
written; on restart, temporary files are swept and the index says what is complete.
This module runs on the recorder's worker thread only: it blocks on disk on purpose.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import av.container
import av.stream

from media.hls_playlist import write_live_playlist
from media.low_rendition import LowRendition
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


# Muxer options: each packet reaches the file as soon as it is muxed (a part holds what was
# written before its boundary), and audio is not gathered into ~0.4 s PES packets, which
# would hold a part's audio back into the next one.
_MUX_OPTIONS = {"flush_packets": "1", "pes_payload_size": "0"}
# A part is cut at the first packet this far into it, so it stays under the part target with
# room for one frame interval (33 ms at 30 fps) and above 85% of it (RFC 8216bis 4.4.4.9).
PART_CUT_FRACTION = 0.9
MIN_PART_S = 0.001


def segment_name(seq: int) -> str:
    return f"seg_{seq:06d}.ts"


@dataclass(frozen=True)
class PartReady:
    """A partial segment: `index` within segment `msn`; the bytes continue the previous part."""

    msn: int
    index: int
    duration: float
    independent: bool
    data: bytes
    disc: bool  # its segment follows a break (EXT-X-DISCONTINUITY before it)
    wall: float  # when its segment's first moment was live (unix s)
    last: bool  # the segment is complete with this part


class _TeeFile(io.RawIOBase):
    """The segment's file, keeping a copy of what was written since the last part boundary."""

    def __init__(self, path: Path, keep: bool) -> None:
        super().__init__()
        self._fh = open(path, "wb")  # noqa: SIM115 - closed with the segment
        self._keep = keep
        self.pending = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        written = self._fh.write(data)
        if self._keep:
            self.pending += data
        return written

    def take(self) -> bytes:
        data = bytes(self.pending)
        self.pending.clear()
        return data

    def fsync_close(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()

    def discard(self) -> None:
        if not self._fh.closed:
            self._fh.close()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SegmentWriter:
    """Writes packets into the current segment and cuts segments at keyframes."""

    def __init__(self, directory: Path, on_segment: Callable[[SegmentEntry], None] | None = None,
                 live_window: int = 6, part_target_s: float | None = None,
                 on_part: Callable[[PartReady], None] | None = None,
                 low_rendition: bool = False) -> None:
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
        self._file: _TeeFile | None = None
        self._part_target = part_target_s if on_part is not None else None
        self._on_part = on_part
        self._part_start = 0.0
        self._part_index = 0
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
        self._low = LowRendition(directory) if low_rendition else None

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
        elif (self._part_target is not None
              and t - self._part_start >= self._part_target * PART_CUT_FRACTION):
            self._emit_part(t, last=False)
        assert self._container is not None
        stream = self._streams[kind]
        self._fix_monotonic(kind, packet)
        if self._low is not None:
            self._low_step(lambda low: low.write(kind, packet))
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
        self._file = _TeeFile(self._tmp_path, keep=self._part_target is not None)
        container = av.open(self._file, "w", format="mpegts", options=_MUX_OPTIONS)
        assert isinstance(container, av.container.OutputContainer)
        self._streams = {kind: track.add_to(container) for kind, track in tracks.items()}
        self._container = container
        if self._low is not None:
            audio = self._streams.get("audio")
            self._low_step(lambda low: low.open(seq, tracks, audio))
        self._seg_start = self._seg_end = self._part_start = t
        self._part_index = 0
        self._seg_wall = wall
        self._seg_disc = self._pending_disc
        self._pending_disc = False
        self.keyframe_requested = False

    def cut(self, at: float | None = None) -> SegmentEntry | None:
        """Close the open segment and publish it (durably) in the index and playlist."""
        container, tmp, file = self._container, self._tmp_path, self._file
        if container is None or tmp is None or file is None:
            return None
        self._container = None
        self._tmp_path = None
        self._file = None
        end = at if at is not None else self._seg_end
        low_written = False
        if self._low is not None:
            seq_now = self.next_seq
            low_written = bool(self._low_step(lambda low: low.cut(seq_now)))
        try:
            container.close()
            file.fsync_close()
        except (av.FFmpegError, OSError):
            log.exception("closing a segment failed; it is dropped")
            file.discard()
            tmp.unlink(missing_ok=True)
            return None
        duration = max(0.0, end - self._seg_start)
        if duration <= 0.0:
            tmp.unlink(missing_ok=True)
            if low_written and self._low is not None:
                (self._low.directory / segment_name(self.next_seq)).unlink(missing_ok=True)
            return None
        if self._part_target is not None:
            self._emit_part(end, last=True, file=file)
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

    def _emit_part(self, at: float, last: bool, file: _TeeFile | None = None) -> None:
        file = file or self._file
        if file is None or self._on_part is None or self._part_target is None:
            return
        data = file.take()
        # A gap in the input (frames lost on the way) can stretch a part past the target;
        # its duration is bounded to it, the playlist's promise (RFC 8216bis 4.4.4.9). A stop
        # right after a part boundary leaves one frame whose packet carries no duration: a
        # part is never listed as lasting nothing.
        duration = min(max(MIN_PART_S, at - self._part_start), self._part_target)
        if not data and not last:
            return
        self._on_part(PartReady(
            msn=self.next_seq, index=self._part_index, duration=duration,
            independent=self._part_index == 0, data=data,
            disc=self._seg_disc and not self.index.empty, wall=self._seg_wall, last=last))
        self._part_index += 1
        self._part_start = at

    def write_playlist(self) -> None:
        write_live_playlist(self.directory / PLAYLIST_NAME, self.entries, self._live_window,
                            ended=self.ended)
        if self._low is not None:
            self._low_step(lambda low: low.publish(self.entries, self._live_window, self.ended))

    def _low_step(self, step: Callable[[LowRendition], object]) -> object:
        # The lighter rendition is a courtesy: whatever fails there, the source goes on.
        assert self._low is not None
        try:
            return step(self._low)
        except Exception:
            log.exception("360p rendition failed; its segment is dropped")
            self._low.discard()
            return None

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

