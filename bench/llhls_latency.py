"""Low-Latency HLS: glass-to-glass in hls.js, and what a crowd of LL-HLS players costs the origin.

usage (small, what the shared box allows):
    python bench/llhls_latency.py
full size (a quiet box; players spread over client processes):
    python bench/llhls_latency.py --seconds 120 --players 0,500,1000 --load-seconds 60 --load-procs 4

A real server (`python -m server serve`, one worker) receives a WHIP publisher (aiortc,
`media.synthetic.FarmVideoTrack` 640x360: each picture carries the wall-clock milliseconds at
which it was painted, as a strip of 32 black/white blocks along its top).

1. Glass-to-glass: two Chromium pages play the stream with hls.js at the same time, one in
   low-latency mode (the live page's settings), one plain (lowLatencyMode off: the in-run
   baseline). For every frame the page presents (requestVideoFrameCallback), the strip is read
   back from a canvas copy of the picture and compared with the page's clock (same machine, same
   clock): p50/p90 against the target (p90 <= 2.5 s).
2. Origin load: N simulated LL-HLS players (aiohttp: a blocking reload on the preload hint's
   part, then a GET of each new part, like hls.js) for N in --players; a probe player measures,
   for each part, how long after its last moment was live (EXT-X-PROGRAM-DATE-TIME plus the
   part durations) it had the part's bytes. Added latency = the probe's p50/p90 at N minus at 0,
   against the target (<= 1 s per 1,000 players).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import llhls_support  # noqa: E402
from tests.browser_support import CHROMIUM_ARGS, require_chromium  # noqa: E402
from tests.server_process import ServerProcess  # noqa: E402

TARGET_P90_S = 2.5
TARGET_ADDED_PER_1000_S = 1.0

# Reads the strip of every presented frame; latency = page clock - painted clock (ms, mod 2^32).
PLAYER = """async ([url, lowLatency]) => {
  const Hls = (await import('/vendor/hls/hls.mjs')).default;
  const { liveHlsConfig, keepNearLive } = await import('/static/js/player.js');
  const video = document.createElement('video');
  video.muted = true; video.autoplay = true; video.playsInline = true;
  document.body.appendChild(video);
  const canvas = document.createElement('canvas');
  canvas.width = 512; canvas.height = 16;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  window.__lat = []; window.__errors = []; window.__stalls = 0;
  video.addEventListener('waiting', () => { window.__stalls += 1; });
  // The live page's player (web/static/js/player.js); the baseline differs in lowLatencyMode only.
  const hls = new Hls(liveHlsConfig({ lowLatency }));
  keepNearLive(hls, video);
  hls.on(Hls.Events.ERROR, (_e, d) => window.__errors.push({ fatal: !!d.fatal, details: d.details }));
  hls.loadSource(url);
  hls.attachMedia(video);
  window.__hls = hls;
  const onFrame = () => {
    const now = Date.now();
    ctx.drawImage(video, 0, 0, 512, 16, 0, 0, 512, 16);
    const px = ctx.getImageData(0, 0, 512, 16).data;
    let value = 0;
    for (let bit = 0; bit < 32; bit++) {
      let sum = 0;
      for (let y = 4; y < 12; y++) {
        for (let x = bit * 16 + 4; x < bit * 16 + 12; x++) sum += px[(y * 512 + x) * 4 + 1];
      }
      value = value * 2 + (sum / 64 > 128 ? 1 : 0);
    }
    const lat = ((now % 4294967296) - value + 4294967296) % 4294967296;
    if (lat < 60000) window.__lat.push([now, lat]);
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
  return 'ok';
}"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _json(http: aiohttp.ClientSession, method: str, path: str, token: str | None = None,
                **body: Any) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, path, json=body, headers=headers) as resp:
        assert resp.status < 300, await resp.text()
        return dict(await resp.json())


async def start_stream(server: ServerProcess, http: aiohttp.ClientSession) -> tuple[int, Any]:
    from aiortc import RTCPeerConnection, RTCSessionDescription

    from media.synthetic import FarmVideoTrack, ToneAudioTrack

    admin = await _json(http, "POST", "/api/auth/token", username="admin",
                        password=server.admin_password)
    await _json(http, "POST", "/api/users", str(admin["token"]), username="bench_host",
                password="bench-host-passphrase-1", role="host")
    host = await _json(http, "POST", "/api/auth/token", username="bench_host",
                       password="bench-host-passphrase-1")
    session = await _json(http, "POST", "/api/sessions", str(host["token"]), title="LL-HLS bench")
    pc = RTCPeerConnection()
    pc.addTrack(FarmVideoTrack(640, 360, fps=15, noise=0.3))  # 15 fps: the encode is Python's
    pc.addTrack(ToneAudioTrack())
    await pc.setLocalDescription(await pc.createOffer())
    async with http.post(f"/whip/{session['id']}", data=pc.localDescription.sdp,
                         headers={"Content-Type": "application/sdp",
                                  "Authorization": f"Bearer {session['stream_key']}"}) as resp:
        answer = await resp.text()
        assert resp.status == 201, answer
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    sid = int(session["id"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        async with http.get(f"/hls/{sid}/index.m3u8") as resp:
            if resp.status == 200 and len(llhls_support.parse(await resp.text()).segments) >= 2:
                return sid, pc
        await asyncio.sleep(0.3)
    raise SystemExit("the live playlist never reached 2 segments")


async def glass_to_glass(base_url: str, sid: int, seconds: float) -> dict[str, list[float]]:
    from playwright.async_api import async_playwright

    url = f"/hls/{sid}/index.m3u8"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=require_chromium(),
                                                   args=CHROMIUM_ARGS)
        pages = {}
        for mode, low in (("LL-HLS", True), ("plain HLS", False)):
            page = await (await browser.new_context()).new_page()
            await page.goto(base_url + "/replays")
            assert await page.evaluate(PLAYER, [url, low]) == "ok"
            pages[mode] = page
        # hls.js settles at its target distance from live within a few seconds of starting.
        await asyncio.sleep(8)
        start_ms = time.time() * 1000
        await asyncio.sleep(seconds)
        out: dict[str, list[float]] = {}
        for mode, page in pages.items():
            samples = await page.evaluate("() => window.__lat")
            errors = await page.evaluate("() => window.__errors")
            state = await page.evaluate("""() => ({ latency: window.__hls.latency,
                target: window.__hls.targetLatency, stalls: window.__stalls,
                parts: window.__hls.latestLevelDetails?.partList?.length ?? 0 })""")
            print(f"  {mode}: hls.js at the end: {state['latency']:.2f} s behind the playlist's "
                  f"live edge (its target {state['target'] or 0:.2f} s), {state['stalls']} stalls, "
                  f"{state['parts']} parts listed")
            out[mode] = [lat / 1000 for at, lat in samples if at >= start_ms]
            fatal = [e for e in errors if e["fatal"]]
            if fatal:
                print(f"  {mode}: fatal hls.js errors {fatal}")
        await browser.close()
    return out


def video_pts(data: bytes) -> list[int]:
    """PTS (90 kHz) of every video PES that starts in these MPEG-TS bytes."""
    found = []
    for at in range(0, len(data) - 187, 188):
        pkt = data[at:at + 188]
        if pkt[0] != 0x47 or not pkt[1] & 0x40:
            continue
        start = 4 + (1 + pkt[4] if pkt[3] & 0x20 else 0)
        pes = pkt[start:]
        if len(pes) >= 14 and pes[:3] == b"\0\0\1" and 0xE0 <= pes[3] <= 0xEF and pes[7] & 0x80:
            p = pes[9:14]
            found.append(((p[0] >> 1) & 7) << 30 | p[1] << 22 | (p[2] >> 1) << 15 | p[3] << 7 | p[4] >> 1)
    return found


class Probe:
    """When each part's newest picture was live: its segment's EXT-X-PROGRAM-DATE-TIME (the
    segment's first picture) plus that picture's PTS distance from the segment's first PTS.
    Read from the media, not from part durations, so a stall of the publisher does not count."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._first_pts: dict[int, int] = {}

    def got(self, pl: llhls_support.LowLatencyPlaylist, part: llhls_support.Part, data: bytes,
            at: float) -> None:
        pts = video_pts(data)
        if not pts:
            return
        if pl.part_index(part) == 0:
            self._first_pts[part.msn] = pts[0]
        first, date = self._first_pts.get(part.msn), pl.dates.get(part.msn)
        if first is not None and date is not None:
            self.delays.append(at - (date + (max(pts) - first) / 90000))


async def player(http: aiohttp.ClientSession, base: str, stop_at: float,
                 probe: Probe | None, errors: list[int]) -> None:
    """Like hls.js in low-latency mode: block on the hinted part, then fetch the new parts."""
    playlist_url = f"{base}/index.m3u8"
    seen: set[str] = set()
    directive = ""
    while time.monotonic() < stop_at:
        try:
            errors[1] += 1
            async with http.get(playlist_url + directive) as resp:
                if resp.status != 200:
                    errors[0] += 1
                    directive = ""
                    await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
                    continue
                pl = llhls_support.parse(await resp.text())
            if not seen:  # start at the live edge: the newest part only
                seen.update(p.uri for p in pl.parts[:-1])
            fresh = [p for p in pl.parts if p.uri not in seen]
            for part in fresh:
                errors[1] += 1
                async with http.get(f"{base}/{part.uri}") as resp:
                    data = await resp.read()
                    ok = resp.status == 200
                seen.add(part.uri)
                if not ok:
                    errors[0] += 1
                elif probe is not None:
                    probe.got(pl, part, data, time.time())
            if pl.preload_hint is None:
                return
            msn, index = pl.preload_hint[len("part_"):-len(".ts")].split("_")
            directive = f"?_HLS_msn={int(msn)}&_HLS_part={int(index)}"
        except (aiohttp.ClientError, TimeoutError):
            errors[0] += 1
            await asyncio.sleep(0.5)


async def run_players(base_url: str, sid: int, count: int, seconds: float) -> list[int]:
    """`count` players for `seconds`; returns [failed requests, requests]."""
    errors = [0, 0]
    stop_at = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(base_url, connector=connector) as http:
        tasks = []
        for _ in range(count):
            tasks.append(asyncio.ensure_future(player(http, f"/hls/{sid}", stop_at, None, errors)))
            await asyncio.sleep(0.5 / max(1, count))  # arrive over half a second, not at once
        await asyncio.gather(*tasks)
    return errors


async def origin_load(server: ServerProcess, sid: int, sizes: list[int], seconds: float,
                      procs: int) -> dict[int, list[float]]:
    results: dict[int, list[float]] = {}
    for size in sizes:
        workers = []
        for n in range(procs if size else 0):
            share = size // procs + (1 if n < size % procs else 0)
            workers.append(await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--load-worker", server.url, str(sid), str(share),
                str(seconds + 5), stdout=asyncio.subprocess.PIPE))
        await asyncio.sleep(3 if size else 0)  # the crowd is watching before the probe starts
        watcher = Probe()
        errors = [0, 0]
        assert server.proc is not None
        ticks, t0 = _cpu_ticks(server.proc.pid), time.monotonic()
        async with aiohttp.ClientSession(server.url) as http:
            await player(http, f"/hls/{sid}", time.monotonic() + seconds, watcher, errors)
        cpu = (_cpu_ticks(server.proc.pid) - ticks) / CLK_TCK / (time.monotonic() - t0)
        probe = watcher.delays
        failed, requests = errors
        for proc in workers:
            out, _ = await proc.communicate()
            counts = json.loads(out.decode().strip().splitlines()[-1])
            failed, requests = failed + counts[0], requests + counts[1]
        results[size] = probe
        # Worker requests span the probe window plus ~8 s: the rate is approximate.
        rate = requests / (seconds + (8 if size else 0))
        print(f"  {size:>5} players: probe got each part {statistics.median(probe):.3f} s (p50) / "
              f"{pct(probe, 0.9):.3f} s (p90) after it was live; {len(probe)} parts; "
              f"~{rate:.0f} requests/s, {failed} failed; server {100 * cpu:.0f}% of a core")
    return results


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def main_async(args: argparse.Namespace) -> None:
    sizes = [int(s) for s in args.players.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="linli-bench-llhls-"))
    print(f"machine: {os.cpu_count()} cores, load average {_load_average()} before the run")
    server = ServerProcess(tmp / "var", os.environ.get("REDIS_URL", ""), "",
                           extra_env={"LINLI_RTMP_PORT": "-1", "LINLI_RATE_LIMITS": "0"})
    await asyncio.to_thread(server.start)
    pc = None
    try:
        async with aiohttp.ClientSession(server.url) as http:
            sid, pc = await start_stream(server, http)
            print(f"1. glass-to-glass, hls.js in Chromium, {args.seconds:.0f} s, both players at once:")
            lat = await glass_to_glass(server.url, sid, args.seconds)
            figures = {}
            for mode, values in lat.items():
                if not values:
                    print(f"  {mode}: no frame read back")
                    continue
                figures[mode] = (statistics.median(values), pct(values, 0.9))
                print(f"  {mode:>9}: p50 {figures[mode][0]:.2f} s, p90 {figures[mode][1]:.2f} s "
                      f"({len(values)} frames)")
            if "LL-HLS" in figures and "plain HLS" in figures:
                ll, plain = figures["LL-HLS"], figures["plain HLS"]
                print(f"  ratio LL-HLS / plain HLS (p90): {ll[1] / plain[1]:.2f}")
                print(f"  target p90 <= {TARGET_P90_S} s: {'met' if ll[1] <= TARGET_P90_S else 'NOT met'}")
            print(f"2. origin load, {args.load_seconds:.0f} s per size, {args.load_procs} client "
                  f"processes, load average {_load_average()}:")
            probe = await origin_load(server, sid, sizes, args.load_seconds, args.load_procs)
            if probe.get(0):
                base50, base90 = statistics.median(probe[0]), pct(probe[0], 0.9)
                for size in sizes:
                    if size == 0 or not probe[size]:
                        continue
                    added = pct(probe[size], 0.9) - base90
                    per_1000 = added * 1000 / size
                    print(f"  {size} players: +{statistics.median(probe[size]) - base50:.3f} s p50, "
                          f"+{added:.3f} s p90 over 0 (ratio p90 {pct(probe[size], 0.9) / base90:.2f}); "
                          f"per 1,000 players {per_1000:.3f} s: "
                          f"{'met' if per_1000 <= TARGET_ADDED_PER_1000_S else 'NOT met'}")
    finally:
        if pc is not None:
            await pc.close()
        await asyncio.to_thread(server.stop)
    print(f"load average after: {_load_average()}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--load-worker":
        base_url, sid, count, seconds = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
        print(json.dumps(asyncio.run(run_players(base_url, sid, count, seconds))))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0, help="glass-to-glass sampling")
    parser.add_argument("--players", default="0,25,50", help="origin load sizes")
    parser.add_argument("--load-seconds", type=float, default=15.0)
    parser.add_argument("--load-procs", type=int, default=1)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
