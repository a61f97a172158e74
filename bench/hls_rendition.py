"""What the 360p rendition costs per stream: recorder CPU with and without it, in the same run.

usage: python bench/hls_rendition.py [--seconds 20] [--size 1280x720]

A camera-like stream (30 fps H.264 with a keyframe every 2 s at ~2.5 Mbit/s for 720p, plus
Opus) is pre-encoded once, then pushed through the recorder as the WebRTC tap would: once
plain (the baseline), once with the 360p rendition. The CPU the process spends until the last
segment is on disk, divided by the media duration, is the share of a core one live stream
costs; the difference is the rendition's price. Prints the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from media.low_rendition import LOW_DIR  # noqa: E402
from media.recorder import Recorder  # noqa: E402
from media.recordings import tracks_for  # noqa: E402
from media.segment_index import load_index  # noqa: E402
from media.tap import StreamInfo  # noqa: E402
from tests.media_synth import interleave, opus_packets, video_packets  # noqa: E402


def run(video: list, audio: list, seconds: float, low: bool) -> tuple[float, int, float]:  # type: ignore[type-arg]
    """(share of a core, segments, low rendition kbit/s) for one pass over the same packets."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "rec"
        started = time.process_time()
        recorder = Recorder(1, folder, low_rendition=low)
        recorder.start_input(tracks_for(StreamInfo(1, "h264", "opus")), "shared")
        for kind, packet in interleave(video, audio):
            recorder.push_packet(kind, packet)
        recorder.stop_input(final=True)
        recorder.close(timeout=600)
        cpu = time.process_time() - started
        entries = load_index(folder)
        low_bytes = sum(p.stat().st_size for p in (folder / LOW_DIR).glob("seg_*.ts")) if low else 0
    return cpu / seconds, len(entries), low_bytes * 8 / seconds / 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--size", default="1280x720")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    print(f"cores {os.cpu_count()}, load {os.getloadavg()[0]:.2f} before encoding the input")
    video = video_packets(args.seconds, fps=30, width=width, height=height, bit_rate=2_500_000)
    audio = opus_packets(args.seconds)
    source_kbit = sum(p.size for p in video) * 8 / args.seconds / 1000
    print(f"input {width}x{height} 30 fps, {source_kbit:.0f} kbit/s video; "
          f"load {os.getloadavg()[0]:.2f} before the runs")
    # Alternate, so a neighbour's burst lands on both sides.
    base_runs, low_runs = [], []
    low_kbit = 0.0
    for _ in range(2):
        base_runs.append(run(video, audio, args.seconds, low=False)[0])
        share, _segments, low_kbit = run(video, audio, args.seconds, low=True)
        low_runs.append(share)
    base, with_low = min(base_runs), min(low_runs)
    print(f"recorder without rendition: {100 * base:.1f}% of a core per stream")
    print(f"recorder with 360p rendition: {100 * with_low:.1f}% of a core per stream "
          f"(360p output {low_kbit:.0f} kbit/s incl. audio)")
    print(f"rendition's own cost: {100 * (with_low - base):.1f}% of a core per stream; "
          f"ratio to baseline {with_low / base:.2f}x")


if __name__ == "__main__":
    main()
