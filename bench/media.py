"""WebRTC fan-out cost: Linli's WHEP (direct RTP forwarding) against aiortc's MediaRelay path.

    python bench/media.py                      # full run: 1 5 10 20 40 viewers, both paths
    python bench/media.py -k 1 5 10 --relay-k 1 3 --seconds 8    # a smaller run

For each viewer count K the driver (this process) publishes a camera-like source over WHIP
(640x360 at 30 fps, ~1.5 Mbit/s: the encoder's target is pinned, REMB ignored), opens K
viewers: one real decoding viewer in this process, K-1 counting viewers spread over helper
processes (they count packets with the marker bit as frames, skipping aiortc's jitter buffer
and decoder: see install_counting_receivers), and measures over --seconds: server CPU (% of
one core, from /proc via psutil), frames/s per viewer, and, from the decoding viewer,
publisher->viewer latency read from the timestamp strip painted into each picture
(media/synthetic.py). Then --late-joins viewers join one at a time in steady state: time from
POST to first decoded picture. `source_kbit_s` is what the publisher really sent: when the box
is overloaded its encoder falls behind and every figure with it.

Paths:
  forward  the real app (`python -m server serve`, demo off): WHIP in, WHEP out, RTP forwarded
  relay    baseline: a bare aiortc server where each viewer gets MediaRelay.subscribe() of the
           decoded publisher track, i.e. aiortc re-encodes per viewer (the cost bench/RESULTS.md records)
  forward@REF  with --baseline-ref REF: the same app as committed at REF (`git archive` into a
           temporary directory), run alternately with the working tree's at each viewer count,
           so "before" and "after" are measured in the same run on the same (shared) box
Prints one JSON line per run (with the load average just before it) and a summary with the CPU
slope per additional viewer, the server's CPU per forwarded packet per viewer and, with
--baseline-ref, the ratio of the slopes.
Measurement harness: it monkeypatches aiortc in its own processes, never in the app.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.abspath(__file__)
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)
BITRATE = 1_500_000
TARGET_PCT_PER_VIEWER = 0.25  # % of a core per additional WHEP viewer at BITRATE
ADMIN_PASSWORD = "bench-admin-password-1"
TASKS: set[asyncio.Task[None]] = set()  # frame pullers of this process's viewers (harness only)


def restrict_srtp(kind: str) -> None:
    """Viewers offer only this SRTP profile. "cm" (AES128_CM_SHA1_80) is what Chrome negotiates
    with us; "gcm" (AEAD_AES_128_GCM) is what aiortc peers would pick on their own."""
    import aiortc.rtcdtlstransport as dt

    wanted = dt.SRTP_AES128_CM_SHA1_80 if kind == "cm" else dt.SRTP_AEAD_AES_128_GCM
    dt.SRTP_PROFILES[:] = [wanted]


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def pin_publisher_bitrate() -> None:
    """Camera-like source: encoder target fixed at BITRATE, receiver estimates ignored."""
    import aiortc.rtcrtpsender as rs
    from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket

    real_get_encoder = rs.get_encoder

    def get_encoder(codec: Any) -> Any:
        enc = real_get_encoder(codec)
        if hasattr(enc, "target_bitrate"):
            enc.target_bitrate = BITRATE
        return enc

    rs.get_encoder = get_encoder
    real_rtcp = rs.RTCRtpSender._handle_rtcp_packet

    async def handle_rtcp(self: Any, packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            return
        await real_rtcp(self, packet)

    rs.RTCRtpSender._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]


class Counter:
    def __init__(self, kind: str) -> None:
        self.kind, self.n, self.have_key = kind, 0, False


def install_counting_receivers(counters: list[Counter]) -> None:
    """Viewers in helper processes count what arrives instead of reassembling and decoding it:
    a video frame is a packet with the marker bit, an audio frame is a packet. aiortc's full
    receive path (jitter buffer, depacketiser, decoder thread) costs the clients more than the
    server spends forwarding, and on a 2-core box the clients would cap the figures."""
    import aiortc.rtcrtpreceiver as rr

    from media.rtp_keyframes import is_keyframe_start

    async def handle_rtp_packet(self: Any, packet: Any, arrival_time_ms: int) -> None:
        counter = self.__dict__.get("_bench_counter")
        if counter is None:
            counter = self._bench_counter = Counter(self._RTCRtpReceiver__kind)
            counters.append(counter)
        if counter.kind == "video":
            if not counter.have_key:
                codec = self._RTCRtpReceiver__codecs.get(packet.payload_type)
                name = codec.mimeType.split("/")[1].lower() if codec else ""
                counter.have_key = is_keyframe_start(name, packet.payload)
            if packet.marker:
                counter.n += 1
        else:
            counter.n += 1

    rr.RTCRtpReceiver._handle_rtp_packet = handle_rtp_packet  # type: ignore[method-assign]


async def negotiate(http: Any, mode: str, base: str, session_id: int, pc: Any,
                    key: str | None = None) -> None:
    from aiortc import RTCSessionDescription

    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    if mode == "forward":
        path = f"/whip/{session_id}" if key else f"/whep/{session_id}"
        headers = {"Content-Type": "application/sdp"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        async with http.post(base + path, data=sdp, headers=headers) as r:
            if r.status != 201:
                raise RuntimeError(f"{path}: {r.status} {await r.text()}")
            answer = await r.text()
    else:
        path = "/publish" if key else "/view"
        async with http.post(base + path, json={"sdp": sdp}) as r:
            answer = (await r.json())["sdp"]
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))


async def open_viewer(http: Any, mode: str, base: str, session_id: int, pcs: list[Any]) -> Any:
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    pcs.append(pc)
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")

    @pc.on("track")
    def on_track(track: Any) -> None:
        async def drain() -> None:
            try:
                while True:
                    await track.recv()
            except Exception:
                return
        TASKS.add(asyncio.ensure_future(drain()))

    await negotiate(http, mode, base, session_id, pc)
    return pc


async def view_helper(a: argparse.Namespace) -> None:
    """--view-helper: open --n counting viewers; answer 'snap' lines on stdin with JSON."""
    import aiohttp

    counters: list[Counter] = []
    install_counting_receivers(counters)
    restrict_srtp(a.viewer_srtp)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    pcs: list[Any] = []
    async with aiohttp.ClientSession() as http:
        for _ in range(a.n):
            await open_viewer(http, a.mode, a.url, a.session, pcs)
        print(json.dumps({"ready": True}), flush=True)
        while (await reader.readline()).strip() == b"snap":
            video = [c.n for c in counters if c.kind == "video"]
            audio = [c.n for c in counters if c.kind == "audio"]
            keyless = sum(1 for c in counters if c.kind == "video" and not c.have_key)
            print(json.dumps({"v": video, "a": audio, "keyless": keyless}), flush=True)
        await asyncio.gather(*[pc.close() for pc in pcs], return_exceptions=True)


class Helper:
    def __init__(self, proc: Any) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, a: argparse.Namespace, url: str, session_id: int, n: int) -> Helper:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, HERE, "--view-helper", "--url", url, "--n", str(n), "--mode", a.mode,
            "--session", str(session_id), "--viewer-srtp", a.viewer_srtp,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        line = await asyncio.wait_for(proc.stdout.readline(), 120)  # type: ignore[union-attr]
        assert json.loads(line)["ready"]
        return cls(proc)

    async def snap(self) -> dict[str, Any]:
        self.proc.stdin.write(b"snap\n")
        await self.proc.stdin.drain()
        return dict(json.loads(await self.proc.stdout.readline()))

    async def close(self) -> None:
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


# ----------------------------------------------------------------------------- servers
async def serve_relay(a: argparse.Namespace) -> None:
    """The baseline: stock aiortc, MediaRelay, one encoder per viewer (no recording)."""
    from aiohttp import web
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaRelay

    relay = MediaRelay()
    tracks: dict[str, Any] = {}
    pcs: list[Any] = []
    got = asyncio.Event()

    async def answer(request: web.Request, before: Any, after: Any) -> web.Response:
        sdp = (await request.json())["sdp"]
        pc = RTCPeerConnection()
        pcs.append(pc)
        before(pc)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        after(pc)
        await pc.setLocalDescription(await pc.createAnswer())
        return web.json_response({"sdp": pc.localDescription.sdp})

    async def publish(request: web.Request) -> web.Response:
        def before(pc: Any) -> None:
            @pc.on("track")
            def on_track(track: Any) -> None:
                tracks[track.kind] = track
                if len(tracks) == 2:
                    got.set()
        return await answer(request, before, lambda pc: None)

    async def view(request: web.Request) -> web.Response:
        await got.wait()

        def after(pc: Any) -> None:
            pc.addTrack(relay.subscribe(tracks["video"], buffered=False))
            pc.addTrack(relay.subscribe(tracks["audio"], buffered=False))
        return await answer(request, lambda pc: None, after)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/publish", publish)
    app.router.add_post("/view", view)
    app.router.add_get("/healthz", health)

    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", a.port).start()
    try:
        await asyncio.Event().wait()
    finally:
        await asyncio.gather(*[pc.close() for pc in pcs], return_exceptions=True)
        await runner.cleanup()


def start_server(mode: str, port: int, data_dir: str, root: str = ROOT) -> subprocess.Popen[bytes]:
    if mode == "relay":
        return subprocess.Popen([sys.executable, HERE, "--serve-relay", "--port", str(port)])
    env = {**os.environ, "PORT": str(port), "LINLI_DEMO": "0", "LINLI_DATA_DIR": data_dir,
           "LINLI_ADMIN_PASSWORD": ADMIN_PASSWORD, "LINLI_WEBRTC_VIEWER_CAP": "1000",
           "LINLI_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"), "PYTHONPATH": root}
    return subprocess.Popen([sys.executable, "-m", "server", "serve"], env=env, cwd=root)


def export_tree(ref: str) -> str:
    """The repository as committed at `ref`, in a temporary directory (no git worktree made)."""
    out = tempfile.mkdtemp(prefix="linli-bench-ref-")
    archive = subprocess.run(["git", "-C", ROOT, "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", out], input=archive, check=True)
    return out


async def make_session(http: Any, base: str) -> tuple[int, str]:
    login = {"username": "admin", "password": ADMIN_PASSWORD}
    async with http.post(base + "/api/auth/token", json=login) as r:
        admin = (await r.json())["token"]
    name, password = "benchhost" + secrets.token_hex(3), secrets.token_urlsafe(12)
    async with http.post(base + "/api/users", json={"username": name, "password": password, "role": "host"},
                         headers={"Authorization": f"Bearer {admin}"}) as r:
        assert r.status in (200, 201), await r.text()
    async with http.post(base + "/api/auth/token", json={"username": name, "password": password}) as r:
        host = (await r.json())["token"]
    async with http.post(base + "/api/sessions", json={"title": "bench"},
                         headers={"Authorization": f"Bearer {host}"}) as r:
        data = await r.json()
    return int(data["id"]), str(data["stream_key"])


# ----------------------------------------------------------------------------- driver
class ProbeViewer:
    """A viewer in this process with real decoders: latency and first-picture time."""

    def __init__(self) -> None:
        self.frames = 0
        self.first_picture: float | None = None
        self.latencies: list[int] = []
        self.reading = False

    async def open(self, http: Any, mode: str, base: str, session_id: int, pcs: list[Any]) -> float:
        from aiortc import RTCPeerConnection

        from media.synthetic import now_ms32, read_strip

        pc = RTCPeerConnection()
        pcs.append(pc)
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")

        @pc.on("track")
        def on_track(track: Any) -> None:
            async def pull() -> None:
                try:
                    while True:
                        frame = await track.recv()
                        if track.kind != "video":
                            continue
                        self.frames += 1
                        if self.first_picture is None:
                            self.first_picture = time.monotonic()
                        if self.reading:
                            y = frame.to_ndarray(format="gray")
                            self.latencies.append((now_ms32() - read_strip(y)) & 0xFFFFFFFF)
                except Exception:
                    return
            TASKS.add(asyncio.ensure_future(pull()))

        t0 = time.monotonic()
        await negotiate(http, mode, base, session_id, pc)
        return t0


async def trace_publisher(pub: Any) -> None:
    """BENCH_TRACE=1: the publisher's state and bytes sent, every 2 s (to stderr)."""
    sender = next(s for s in pub.getSenders() if s.kind == "video")
    while True:
        print(json.dumps({"t": round(time.monotonic(), 1), "pub": pub.connectionState,
                          "video_octets": sender._RTCRtpSender__octet_count}), file=sys.stderr, flush=True)
        await asyncio.sleep(2)


def cpu_of(pid: int) -> float:
    import psutil

    proc = psutil.Process(pid)
    t = proc.cpu_times()
    total = t.user + t.system
    for child in proc.children(recursive=True):  # ffmpeg helpers, if any
        try:
            ct = child.cpu_times()
            total += ct.user + ct.system
        except psutil.NoSuchProcess:
            pass
    return float(total)


async def run_one(a: argparse.Namespace, k: int) -> dict[str, Any]:
    import aiohttp
    from aiortc import RTCPeerConnection

    from media.synthetic import FarmVideoTrack, ToneAudioTrack

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="linli-bench-") as data_dir:
        server = start_server(a.mode, port, data_dir, getattr(a, "root", ROOT))
        helpers: list[Helper] = []
        pcs: list[Any] = []
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(300):
                    try:
                        async with http.get(base + "/healthz") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)
                session_id, key = (await make_session(http, base)) if a.mode == "forward" else (0, "x")
                pub = RTCPeerConnection()
                pcs.append(pub)
                video = FarmVideoTrack(640, 360, fps=30, noise=1.0)
                pub.addTrack(video)
                pub.addTrack(ToneAudioTrack())
                await negotiate(http, a.mode, base, session_id, pub, key=key)
                await asyncio.sleep(a.settle)
                if os.environ.get("BENCH_TRACE"):
                    TASKS.add(asyncio.ensure_future(trace_publisher(pub)))
                probe = ProbeViewer()
                await probe.open(http, a.mode, base, session_id, pcs)
                counting = max(0, k - 1)
                share = [counting // a.viewer_procs + (1 if i < counting % a.viewer_procs else 0)
                         for i in range(a.viewer_procs)]
                for n in share:
                    if n:
                        helpers.append(await Helper.start(a, base, session_id, n))
                await asyncio.sleep(a.warmup)
                sender = next(s for s in pub.getSenders() if s.kind == "video")
                oct0 = sender._RTCRtpSender__octet_count
                pkt0 = sum(s._RTCRtpSender__packet_count for s in pub.getSenders())
                frames0 = video.produced
                snaps0 = [await h.snap() for h in helpers]
                c0, f0, t0 = cpu_of(server.pid), probe.frames, time.monotonic()
                probe.reading = True
                await asyncio.sleep(a.seconds)
                probe.reading = False
                dt = time.monotonic() - t0
                c1, f1 = cpu_of(server.pid), probe.frames
                snaps1 = [await h.snap() for h in helpers]
                bitrate = (sender._RTCRtpSender__octet_count - oct0) * 8 / dt
                packets = sum(s._RTCRtpSender__packet_count for s in pub.getSenders()) - pkt0
                pkt_s = packets / dt
                source_fps = (video.produced - frames0) / dt  # frames really encoded and sent
                fps = [(f1 - f0) / dt]
                for s0, s1 in zip(snaps0, snaps1, strict=True):
                    # A counter appears with a viewer's first packet: one that started during
                    # the window counts from 0, one that never did counts as 0 fps.
                    before = s0["v"] + [0] * (len(s1["v"]) - len(s0["v"]))
                    fps += [(y - x) / dt for x, y in zip(before, s1["v"], strict=True)]
                fps += [0.0] * (k - len(fps))
                keyless = sum(s["keyless"] for s in snaps1)
                late = []
                for _ in range(a.late_joins):
                    joiner = ProbeViewer()
                    started = await joiner.open(http, a.mode, base, session_id, pcs)
                    for _ in range(int(a.late_wait / 0.02)):
                        if joiner.first_picture is not None:
                            break
                        await asyncio.sleep(0.02)
                    late.append(round(joiner.first_picture - started, 3) if joiner.first_picture else None)
                lat = sorted(probe.latencies)
                return {
                    "mode": a.label, "viewers": k, "load_before": [round(x, 2) for x in load],
                    "server_cpu_pct": round(100 * (c1 - c0) / dt, 2),
                    "source_kbit_s": round(bitrate / 1000),
                    "source_packets_s": round(pkt_s, 1), "source_fps": round(source_fps, 1),
                    # Normalised by what the source really sent (a starved driver sends less).
                    "server_cpu_us_per_source_packet": round((c1 - c0) * 1e6 / max(1, packets), 1),
                    "fps_min/median": [round(min(fps), 1), round(statistics.median(fps), 1)],
                    "viewers_without_keyframe": keyless,
                    "latency_ms_median/p95": [lat[len(lat) // 2], lat[int(len(lat) * 0.95)]] if lat else None,
                    "late_join_first_picture_s": late,
                    "publisher_state": pub.connectionState,
                }
        finally:
            for h in helpers:
                await h.close()
            await asyncio.gather(*[pc.close() for pc in pcs], return_exceptions=True)
            server.terminate()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()


def slope(points: list[tuple[int, float]]) -> float | None:
    if len(points) < 2:
        return None
    xs, ys = zip(*points, strict=True)
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return round(sum((x - mx) * (y - my) for x, y in points) / sxx, 3) if sxx else None


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Two slopes over the viewer counts: raw (% of a core) and per packet the source really
    sent (us), which a starved source (a busy box) does not bend; the latter is turned back
    into % of a core at the packet rate of an unstarved BITRATE source (the fastest run)."""
    points = [(r["viewers"], r["server_cpu_pct"]) for r in rows]
    out: dict[str, Any] = {"cpu_pct_per_extra_viewer": slope(points), "points": points}
    per_packet = [(r["viewers"], r["server_cpu_us_per_source_packet"]) for r in rows]
    us = slope(per_packet)
    if us is not None:
        full_rate = max(r["source_packets_s"] for r in rows)
        out["us_per_packet_per_viewer"] = us
        out["cpu_pct_per_extra_viewer_at_full_rate"] = round(us * full_rate / 1e4, 3)
        out["full_rate_packets_s"] = full_rate
    out["viewer_fps_min_vs_source_fps"] = [[r["fps_min/median"][0], r["source_fps"]] for r in rows]
    return out


async def drive(a: argparse.Namespace) -> None:
    pin_publisher_bitrate()
    restrict_srtp(a.viewer_srtp)
    print(json.dumps({"viewer_srtp": a.viewer_srtp, "baseline_ref": a.baseline_ref}), flush=True)
    summary: dict[str, Any] = {}
    variants = [("forward", ROOT)]
    baseline = ""
    if a.baseline_ref:
        baseline = f"forward@{a.baseline_ref}"
        variants.insert(0, (baseline, export_tree(a.baseline_ref)))
    try:
        rows: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in variants}
        for k in a.k:  # the variants alternate at each size: drift on the box hits both
            for label, root in variants:
                a.mode, a.label, a.root = "forward", label, root
                row = await run_one(a, k)
                print(json.dumps(row), flush=True)
                rows[label].append(row)
        for label, got in rows.items():
            if got:
                summary[label] = summarize(got)
    finally:
        for _, root in variants:
            if root != ROOT:
                shutil.rmtree(root, ignore_errors=True)
    now = summary.get("forward", {})
    for name in ("cpu_pct_per_extra_viewer", "cpu_pct_per_extra_viewer_at_full_rate"):
        forward = now.get(name)
        if forward is not None:
            summary[f"target ({name})"] = (
                f"{forward}% of a core per additional viewer against <= {TARGET_PCT_PER_VIEWER}%: "
                + ("met" if forward <= TARGET_PCT_PER_VIEWER else "not met"))
    for name in ("cpu_pct_per_extra_viewer", "us_per_packet_per_viewer"):
        forward, before = now.get(name), summary.get(baseline, {}).get(name)
        if forward is not None and before:
            summary[f"ratio_to_baseline ({name})"] = round(forward / before, 3)
    if a.relay_k:
        a.mode = a.label = "relay"
        got = []
        for k in a.relay_k:
            row = await run_one(a, k)
            print(json.dumps(row), flush=True)
            got.append(row)
        summary["relay"] = summarize(got)
    print(json.dumps({"summary": summary}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", type=int, nargs="*", default=[1, 5, 10, 20, 40], help="viewer counts (forward)")
    ap.add_argument("--relay-k", type=int, nargs="*", default=[1, 3, 5], help="viewer counts (baseline)")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--settle", type=float, default=1.5)
    ap.add_argument("--late-joins", type=int, default=3)
    ap.add_argument("--late-wait", type=float, default=3.0)
    ap.add_argument("--viewer-procs", type=int, default=2)
    ap.add_argument("--viewer-srtp", choices=["cm", "gcm"], default="cm",
                    help="SRTP profile the viewers offer (cm: what Chrome negotiates)")
    ap.add_argument("--baseline-ref", default="",
                    help="also run the app as committed at this git ref, alternating (see above)")
    ap.add_argument("--serve-relay", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--view-helper", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--session", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="forward", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve_relay:
        asyncio.run(serve_relay(a))
    elif a.view_helper:
        asyncio.run(view_helper(a))
    else:
        asyncio.run(drive(a))


if __name__ == "__main__":
    main()
