"""Live HLS and recording costs: recording CPU per stream, and how far live HLS is behind live.

usage: python bench/media_hls.py [--seconds 20]

1. Recorder CPU, in-process: a camera-like stream (640x360, 30 fps, ~1.5 Mbit/s H.264 with a
   keyframe every 2 s, plus Opus) is pre-encoded, then pushed through the recorder exactly as the
   WebRTC tap would; the CPU the process spends until the last segment is on disk, divided by
   the media duration, is the share of a core one live stream costs. Same for VP8 ingest (the
   stream's one VP8→H.264 encode).
2. A real server (`python -m server serve`) receives an ffmpeg RTMP client in real time: its CPU
   over the stream (minus an idle baseline) and, for each segment, when it appeared in the live
   playlist compared with the wall-clock time of its first frame (#EXT-X-PROGRAM-DATE-TIME).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from media.recorder import Recorder  # noqa: E402
from media.recordings import tracks_for  # noqa: E402
from media.segment_index import load_index  # noqa: E402
from media.tap import StreamInfo  # noqa: E402
from tests.media_synth import interleave, opus_packets, rtmp_publish_argv, video_packets  # noqa: E402
from tests.server_process import ServerProcess, free_port  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def recorder_cpu(codec: str, seconds: float) -> tuple[float, int, float]:
    """(share of a core, segments, mean segment s) for one stream of `seconds`."""
    encoder = "libx264" if codec == "h264" else "libvpx"
    video = video_packets(seconds, fps=30, codec=encoder, width=640, height=360, bit_rate=1_500_000)
    audio = opus_packets(seconds)
    bits = sum(p.size for p in video) * 8 / seconds
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "rec"
        started = time.process_time()
        recorder = Recorder(1, folder)
        recorder.start_input(tracks_for(StreamInfo(1, codec, "opus")), "shared")
        for kind, packet in interleave(video, audio):
            recorder.push_packet(kind, packet)
        recorder.stop_input(final=True)
        recorder.close(timeout=600)
        cpu = time.process_time() - started
        entries = load_index(folder)
    print(f"  {codec:>4} ingest, {bits / 1e6:.2f} Mbit/s video: {cpu:.2f} s CPU for {seconds:.0f} s "
          f"of media = {100 * cpu / seconds:.1f}% of a core; {len(entries)} segments, "
          f"mean {statistics.mean(e.duration for e in entries):.2f} s")
    return cpu / seconds, len(entries), statistics.mean(e.duration for e in entries)


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _post(url: str, body: bytes, token: str | None = None) -> dict[str, object]:
    import json

    req = urllib.request.Request(url, data=body, method="POST",  # noqa: S310
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
        return dict(json.loads(resp.read()))


async def server_run(seconds: float) -> None:
    import json

    tmp = Path(tempfile.mkdtemp(prefix="linli-bench-hls-"))
    rtmp_port = free_port()
    server = ServerProcess(tmp / "var", os.environ.get("REDIS_URL", ""), "",
                           extra_env={"LINLI_RTMP_PORT": str(rtmp_port)})
    server.start()
    try:
        assert server.proc is not None
        pid = server.proc.pid
        admin = _post(server.url + "/api/auth/token",
                      json.dumps({"username": "admin", "password": server.admin_password}).encode())
        _post(server.url + "/api/users", json.dumps(
            {"username": "bench_host", "password": "bench-password-1", "role": "host"}).encode(),
            str(admin["token"]))
        host = _post(server.url + "/api/auth/token", json.dumps(
            {"username": "bench_host", "password": "bench-password-1"}).encode())
        session = _post(server.url + "/api/sessions", json.dumps({"title": "bench"}).encode(),
                        str(host["token"]))
        session_id, key = session["id"], session["stream_key"]

        idle_start, t0 = _cpu_ticks(pid), time.monotonic()
        await asyncio.sleep(5)
        idle = (_cpu_ticks(pid) - idle_start) / CLK_TCK / (time.monotonic() - t0)

        argv = rtmp_publish_argv(f"rtmp://127.0.0.1:{rtmp_port}/live/{key}", seconds, fps=30)
        argv[argv.index("testsrc=size=320x240:rate=30")] = "testsrc2=size=640x360:rate=30"
        argv[argv.index("-c:v") + 1:argv.index("-c:v") + 1] = []
        argv[argv.index("-pix_fmt"):argv.index("-pix_fmt")] = ["-b:v", "1500k", "-maxrate", "1500k",
                                                               "-bufsize", "1500k"]
        client = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                                      stderr=asyncio.subprocess.DEVNULL)
        busy_start, t1 = _cpu_ticks(pid), time.monotonic()
        appeared: dict[str, float] = {}
        stamps: dict[str, float] = {}
        # The playlist is read from disk (what the server serves, byte for byte), so the
        # measurement adds no HTTP requests to the server's CPU figure.
        playlist = tmp / "var" / "media" / str(session_id) / "rec" / "index.m3u8"
        while client.returncode is None:
            text = playlist.read_text() if playlist.exists() else ""
            now = time.time()
            pdt: float | None = None
            for line in text.splitlines():
                if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
                    pdt = datetime.fromisoformat(line.split(":", 1)[1].replace("Z", "+00:00")).timestamp()
                elif line.endswith(".ts") and line not in appeared and pdt is not None:
                    appeared[line], stamps[line] = now, pdt
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(client.wait(), 0.05)
        busy = (_cpu_ticks(pid) - busy_start) / CLK_TCK / (time.monotonic() - t1)
        # The first segment is skipped: it may have been listed before polling caught up.
        delays = [appeared[s] - stamps[s] for s in sorted(appeared)[1:]]
        print(f"  server CPU while receiving one RTMP stream (640x360 30 fps ~1.5 Mbit/s + AAC): "
              f"{100 * busy:.1f}% of a core (idle baseline {100 * idle:.1f}%, "
              f"so {100 * (busy - idle):.1f}% for the stream)")
        if delays:
            print(f"  live HLS: a segment is listed {statistics.median(delays):.2f} s (median; max "
                  f"{max(delays):.2f} s) after its first frame was live; a player starting at the "
                  f"newest segment is that far behind, hls.js's default (3 segments back) about "
                  f"{statistics.median(delays) + 4:.1f} s")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    print(f"recorder CPU per stream ({args.seconds:.0f} s of media, in-process):")
    recorder_cpu("h264", args.seconds)
    recorder_cpu("vp8", args.seconds)
    print("real server, RTMP ingest in real time:")
    asyncio.run(server_run(args.seconds))


if __name__ == "__main__":
    main()
