"""HLS playlists (RFC 8216): the live window over recorded segments, and clip playlists.

Playlists are replaced atomically (write a temp file, rename), so a reader never sees half a
playlist and a crash never leaves a broken one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from media.segment_index import SegmentEntry


@dataclass(frozen=True)
class PlaylistSegment:
    uri: str
    duration: float
    discontinuity: bool = False
    wall: float | None = None  # when its first moment was live (unix s), if known


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def date_time(wall: float) -> str:
    stamp = datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def target_duration(durations: Sequence[float]) -> int:
    # EXTINF rounded to the nearest integer must not exceed the target duration (RFC 8216 4.3.3.1).
    return max(2, *(math.floor(d + 0.5) for d in durations)) if durations else 2


def render_live_playlist(entries: Sequence[SegmentEntry], window: int, ended: bool) -> str:
    """The last `window` segments. Sequence numbers come from the index, never from the window:
    when a segment tagged EXT-X-DISCONTINUITY slides out, the discontinuity sequence grows by
    one, and only then (RFC 8216 6.2.1), so a player's numbering of the segments left holds."""
    shown = list(entries[-window:])
    first_seq = shown[0].seq if shown else 0
    # The number of discontinuity tags that slid out before the first segment shown.
    disc_seq = shown[0].disc_seq - shown[0].disc if shown else 0
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{target_duration([e.duration for e in shown])}",
        f"#EXT-X-MEDIA-SEQUENCE:{first_seq}",
        f"#EXT-X-DISCONTINUITY-SEQUENCE:{disc_seq}",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    for entry in shown:
        if entry.disc:
            lines.append("#EXT-X-DISCONTINUITY")
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{date_time(entry.wall)}")
        lines.append(f"#EXTINF:{entry.duration:.3f},")
        lines.append(entry.file)
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def write_live_playlist(path: Path, entries: Sequence[SegmentEntry], window: int, ended: bool) -> None:
    atomic_write_text(path, render_live_playlist(entries, window, ended))


def render_vod_playlist(segments: Sequence[PlaylistSegment], start_offset: float | None = None) -> str:
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{target_duration([s.duration for s in segments])}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    if start_offset is not None and start_offset > 0:
        lines.append(f"#EXT-X-START:TIME-OFFSET={start_offset:.3f},PRECISE=YES")
    for segment in segments:
        if segment.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        if segment.wall is not None:
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{date_time(segment.wall)}")
        lines.append(f"#EXTINF:{segment.duration:.3f},")
        lines.append(segment.uri)
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def parse_media_playlist(text: str) -> list[PlaylistSegment]:
    """Segments of a media playlist (as ffmpeg's HLS muxer writes them)."""
    segments: list[PlaylistSegment] = []
    duration: float | None = None
    disc = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#EXTINF:"):
            duration = float(line[len("#EXTINF:"):].split(",", 1)[0])
        elif line == "#EXT-X-DISCONTINUITY":
            disc = True
        elif line and not line.startswith("#") and duration is not None:
            segments.append(PlaylistSegment(line, duration, disc))
            duration, disc = None, False
    return segments


def clip_segments(segments: Sequence[PlaylistSegment], start_s: float,
                  end_s: float) -> tuple[list[PlaylistSegment], float]:
    """The segments covering [start_s, end_s) and the offset of start_s in the first one."""
    chosen: list[PlaylistSegment] = []
    offset = 0.0
    position = 0.0
    for segment in segments:
        seg_end = position + segment.duration
        if seg_end > start_s and position < end_s:
            if not chosen:
                offset = max(0.0, start_s - position)
            chosen.append(segment)
        position = seg_end
    return chosen, offset
