"""Probing media through PyAV (imageio-ffmpeg ships no ffprobe): durations, codecs, frames.

Blocking (PyAV reads the file or URL): call from a worker thread, e.g. `asyncio.to_thread`.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import av.container

# Demuxing stops after this many packets: a probe of a huge or endless input stays bounded.
MAX_PACKETS = 200_000


@dataclass(frozen=True)
class ProbeResult:
    duration_s: float  # from the first to the last timestamp actually present
    video_codec: str | None
    audio_codec: str | None
    width: int
    height: int
    video_packets: int
    keyframes: int
    audio_packets: int


def probe(url: str, timeout_s: float = 10.0) -> ProbeResult:
    """Demux (no decode) every packet of a file, HLS playlist or URL and measure it."""
    options = {"rw_timeout": str(int(timeout_s * 1_000_000))}
    container = av.open(url, "r", options=options, timeout=timeout_s)
    assert isinstance(container, av.container.InputContainer)
    try:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        start: float | None = None
        end = 0.0
        counts = {"video": 0, "audio": 0, "key": 0}
        for n, packet in enumerate(container.demux()):
            if n >= MAX_PACKETS:
                break
            if packet.pts is None or packet.time_base is None:
                continue
            t = float(packet.pts * packet.time_base)
            t_end = t + float((packet.duration or 0) * packet.time_base)
            start = t if start is None else min(start, t)
            end = max(end, t_end)
            kind = packet.stream.type
            if kind in ("video", "audio"):
                counts[kind] += 1
            if kind == "video" and packet.is_keyframe:
                counts["key"] += 1
        return ProbeResult(
            duration_s=max(0.0, end - (start or 0.0)),
            video_codec=video.codec_context.name if video else None,
            audio_codec=audio.codec_context.name if audio else None,
            width=video.codec_context.width if video else 0,
            height=video.codec_context.height if video else 0,
            video_packets=counts["video"], keyframes=counts["key"], audio_packets=counts["audio"],
        )
    finally:
        container.close()


def decodes(url: str, frames: int = 3) -> int:
    """How many of the first `frames` video frames actually decode (playability, not just parse)."""
    container = av.open(url, "r")
    assert isinstance(container, av.container.InputContainer)
    try:
        decoded = 0
        for frame in container.decode(video=0):
            if frame.width > 0:
                decoded += 1
            if decoded >= frames:
                break
        return decoded
    finally:
        container.close()
