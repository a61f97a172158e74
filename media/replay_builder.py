"""Building a replay from a recording: the HLS VOD, a poster, thumbnails and product chapters.

The replay's timeline is the recording's: every input (a publisher, a reconnect, the process
after a restart) continues where the previous one stopped, so outages are cut, not filled, and
the replay lasts as long as the media recorded (never the wall-clock span). What ties it to
the wall clock is each segment's `wall` (when its first picture was live): a product pin at a
wall-clock moment opens its chapter at that moment's place in the recording, and a pin made
during an outage opens where the picture resumed.

All heavy work is ffmpeg in a subprocess (argv from ffmpeg-python's `.compile()`); the result is
built in a scratch folder and swapped in whole, so a reader never sees half a replay and a crash
mid-build leaves the previous replay (if any) intact.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import ffmpeg

from media.ffmpeg_bin import compile_args, run_ffmpeg
from media.hls_playlist import (
    PlaylistSegment,
    atomic_write_text,
    clip_segments,
    parse_media_playlist,
    render_vod_playlist,
)
from media.segment_index import SegmentEntry

# VOD segments: cut at the first keyframe after this (sources key every ~2 s, so ~2 s segments).
VOD_HLS_TIME_S = 1.5
MAX_THUMBNAILS = 20
MIN_THUMB_INTERVAL_S = 2.0
POSTER_WIDTH = 640
THUMB_WIDTH = 160


@dataclass(frozen=True)
class Pin:
    """A product pin as the builder needs it (from commerce.catalog.ProductPin)."""

    pin_id: int
    product_id: int
    batch_id: int | None
    name: str
    start: datetime
    end: datetime | None
    snapshot: dict[str, Any] = field(default_factory=dict)


@dataclass
class BuildResult:
    duration_s: float
    segments_used: int
    chapters: list[dict[str, Any]]
    thumbnails: list[dict[str, Any]]
    has_poster: bool


def media_to_wall(entries: Sequence[SegmentEntry], t: float) -> float | None:
    """When the moment at recording time `t` was live (None outside the recording)."""
    for entry in entries:
        if entry.start <= t < entry.start + entry.duration:
            return entry.wall + (t - entry.start)
    return None


def wall_to_media(entries: Sequence[SegmentEntry], wall: float) -> float:
    """Recording time of a wall-clock moment; moments in an outage map to where it resumed."""
    if not entries:
        return 0.0
    for entry in entries:
        if wall < entry.wall:
            return entry.start  # before this segment (start, or a gap): it resumes here
        if wall < entry.wall + entry.duration:
            return entry.start + (wall - entry.wall)
    last = entries[-1]
    return last.start + last.duration


def chapters_for(entries: Sequence[SegmentEntry], pins: Sequence[Pin],
                 total_s: float) -> list[dict[str, Any]]:
    """One chapter per pin, in replay seconds; pins wholly outside the recording are skipped."""
    chapters: list[dict[str, Any]] = []
    if not entries:
        return chapters
    first = entries[0]
    origin = first.start
    end_wall = entries[-1].wall + entries[-1].duration
    for pin in pins:
        start = wall_to_media(entries, pin.start.timestamp()) - origin
        end_at = pin.end.timestamp() if pin.end is not None else end_wall
        end = wall_to_media(entries, end_at) - origin
        start, end = max(0.0, min(start, total_s)), max(0.0, min(end, total_s))
        if end - start < 0.5:
            continue
        chapters.append({
            "pin_id": pin.pin_id, "product_id": pin.product_id, "batch_id": pin.batch_id,
            "name": pin.name, "start_s": round(start, 3), "end_s": round(end, 3),
            "price_fen": pin.snapshot.get("price_fen"), "clip": f"clip_{pin.pin_id}.m3u8",
        })
    return chapters


def _vod_segments(entries: Sequence[SegmentEntry],
                  parsed: Sequence[PlaylistSegment]) -> list[PlaylistSegment]:
    """The replay's segments as ffmpeg cut them, each with the wall-clock time of its start
    (EXT-X-PROGRAM-DATE-TIME). ffmpeg's last EXTINF can fall short of that segment's media;
    it runs to the end of the recording, and the replay lasts exactly the media recorded."""
    recorded = sum(e.duration for e in entries)
    origin = entries[0].start if entries else 0.0
    segments: list[PlaylistSegment] = []
    position = 0.0
    for n, segment in enumerate(parsed):
        if n == len(parsed) - 1:
            segment = replace(segment, duration=round(max(segment.duration, recorded - position), 6))
        segments.append(replace(segment, wall=media_to_wall(entries, origin + position)))
        position += segment.duration
    return segments


class ReplayBuilder:
    """One build: recording folder in, replay folder out."""

    def __init__(self, recording_dir: Path, replay_dir: Path, build: int = 1) -> None:
        self.recording_dir = recording_dir
        self.replay_dir = replay_dir
        self.scratch = replay_dir.with_name(replay_dir.name + ".build")
        # Segment names carry the build number: a viewer mid-way through the previous build's
        # playlist never gets a new build's segment under an old name.
        self.generation = build
        self.prefix = f"r{build}_"

    async def build(self, entries: Sequence[SegmentEntry], pins: Sequence[Pin],
                    progress: Callable[[int], None]) -> BuildResult:
        if self.scratch.exists():
            await asyncio.to_thread(shutil.rmtree, self.scratch)
        self.scratch.mkdir(parents=True)
        total = sum(e.duration for e in entries)
        await self._remux(entries, total, progress)
        progress(80)
        playlist = (self.scratch / "index.m3u8").read_text(encoding="utf-8")
        vod_segments = _vod_segments(entries, parse_media_playlist(playlist))
        atomic_write_text(self.scratch / "index.m3u8", render_vod_playlist(vod_segments))
        duration = sum(s.duration for s in vod_segments)
        has_poster = await self._poster(duration)
        progress(88)
        thumbnails = await self._thumbnails(duration)
        progress(96)
        chapters = chapters_for(entries, pins, duration)
        for chapter in chapters:
            chosen, offset = clip_segments(vod_segments, chapter["start_s"], chapter["end_s"])
            atomic_write_text(self.scratch / chapter["clip"], render_vod_playlist(chosen, offset))
        await asyncio.to_thread(self._swap)
        return BuildResult(duration, len(entries), chapters, thumbnails, has_poster)

    async def _remux(self, entries: Sequence[SegmentEntry], total: float,
                     progress: Callable[[int], None]) -> None:
        # The segments already share one timeline, so they are joined byte for byte (the
        # concatf protocol) and keep their timestamps. The concat demuxer would lay the files
        # end to end by their probed durations, which span every stream: wherever audio runs
        # ahead of video a segment counts longer than its place, and the error adds up.
        concat = self.scratch / "segments.txt"
        concat.write_text("".join(f"{(self.recording_dir / e.file).resolve()}\n" for e in entries),
                          encoding="utf-8")
        stream = ffmpeg.input(f"concatf:{concat}", f="mpegts").output(
            str(self.scratch / "index.m3u8"), c="copy", f="hls", hls_time=VOD_HLS_TIME_S,
            hls_playlist_type="vod", hls_list_size=0, hls_flags="independent_segments",
            hls_segment_filename=str(self.scratch / f"{self.prefix}%05d.ts"),
        ).global_args("-nostdin", "-y", "-v", "error", "-nostats", "-progress", "pipe:1")
        await run_ffmpeg(compile_args(stream), total_s=total,
                         on_progress=lambda f: progress(5 + int(70 * f)))
        concat.unlink(missing_ok=True)

    async def _poster(self, duration: float) -> bool:
        first = self.scratch / f"{self.prefix}00000.ts"
        if not first.exists():
            return False
        at = min(1.0, duration / 2)
        stream = ffmpeg.input(str(self.scratch / "index.m3u8"), ss=at).output(
            str(self.scratch / "poster.jpg"), vframes=1, vf=f"scale={POSTER_WIDTH}:-2", **{"q:v": 3},
        ).global_args("-nostdin", "-y", "-v", "error")
        try:
            await run_ffmpeg(compile_args(stream), timeout_s=120)
        except Exception:
            return False
        return (self.scratch / "poster.jpg").exists()

    async def _thumbnails(self, duration: float) -> list[dict[str, Any]]:
        if duration <= 0:
            return []
        interval = max(MIN_THUMB_INTERVAL_S, duration / MAX_THUMBNAILS)
        # Keyframes only are decoded: thumbnails cost little even for a long stream.
        stream = (
            ffmpeg.input(str(self.scratch / "index.m3u8"), skip_frame="nokey")
            .filter("fps", fps=f"1/{interval:.3f}")
            .filter("scale", THUMB_WIDTH, -2)
            .output(str(self.scratch / "thumb_%03d.jpg"), vframes=MAX_THUMBNAILS, fps_mode="vfr",
                    **{"q:v": 5})
            .global_args("-nostdin", "-y", "-v", "error")
        )
        try:
            await run_ffmpeg(compile_args(stream), timeout_s=300)
        except Exception:
            return []
        files = sorted(p.name for p in self.scratch.glob("thumb_*.jpg"))
        return [{"file": name, "t": round(i * interval, 3)} for i, name in enumerate(files)]

    def _swap(self) -> None:
        old = self.replay_dir.with_name(self.replay_dir.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        if self.replay_dir.exists():
            # The previous build's segments stay one generation, for viewers already playing it.
            for segment in self.replay_dir.glob(f"r{self.generation - 1}_*.ts"):
                segment.rename(self.scratch / segment.name)
            self.replay_dir.rename(old)
        self.scratch.rename(self.replay_dir)
        if old.exists():
            shutil.rmtree(old)
