"""Realtime fan-out: one room, N viewers, 100 comments/s plus counters; Linli's hub vs plain aiohttp.

    python bench/fanout.py [--sizes 200 1000 2000] [--seconds 5] [--rate 100]

What runs where (each in its own process):
- the server: `python -m server serve` (LINLI_DEMO=0) against a redis-server started here; its
  CPU time is read from /proc/<pid>/stat around each measurement window;
- the baseline server (`--baseline-server`): plain aiohttp WebSockets speaking just enough
  Engine.IO/Socket.IO that the same load client works, fed from the same Redis channel, batching
  comments per 100 ms and writing one pre-encoded frame per socket with `await ws.send_str`;
- the load client (`--load`): raw Engine.IO v4 over aiohttp WebSockets (socketio.AsyncClient is
  too heavy for thousands of sockets); every 10th socket decodes frames for latency, the rest count;
- this driver publishes: comments through the hub's own `append.lua` (number, store, publish:
  what a server process does after moderation; the per-user rate limit would otherwise need 200
  senders) and 1,000 stock changes/s through the hub's `StateCoalescer` (≤10 state frames/s).
Latency = comment `ts` (set when published) → decoded by a sampled client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from realtime.history import RoomHistory  # noqa: E402
from realtime.hub import CHANNEL, PREFIX  # noqa: E402
from realtime.state import StateCoalescer  # noqa: E402
from server.embedded_redis import EmbeddedRedis  # noqa: E402

ADMIN_PASSWORD = "bench-admin-password"
NS = "/live"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- load client --------------------------------------------------------------------------------

async def load(url: str, session_id: int, n: int, seconds: float) -> None:
    stats = {"comments": 0, "frames": 0, "states": 0, "lat": []}
    connected = 0
    go = asyncio.Event()
    all_in = asyncio.Event()

    failed: list[str] = []

    async def viewer(http: aiohttp.ClientSession, index: int) -> None:
        held = [False]
        try:
            await sem.acquire()
            held[0] = True
            await _viewer(http, index, held)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failed.append(repr(exc))
            if connected + len(failed) >= n:
                all_in.set()
        finally:
            if held[0]:
                sem.release()

    async def _viewer(http: aiohttp.ClientSession, index: int, held: list[bool]) -> None:
        nonlocal connected
        sampled = index % 10 == 0
        async with http.ws_connect(url, autoping=False, max_msg_size=0) as ws:
            async for msg in ws:
                data = msg.data
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                kind = data[0]
                if kind == "4":
                    if data.startswith('42/live,["comments"'):
                        if go.is_set():
                            stats["frames"] += 1
                            if sampled:
                                now = time.time() * 1000
                                batch = json.loads(data[8:])[1]
                                stats["comments"] += len(batch)
                                stats["lat"] += [now - c["ts"] for c in batch]
                            else:
                                stats["comments"] += data.count('"seq":')
                    elif data.startswith('42/live,["state"'):
                        if go.is_set():
                            stats["states"] += 1
                            stats["frames"] += 1
                    elif data.startswith("40/live"):
                        if held[0]:
                            held[0] = False
                            sem.release()
                        connected += 1
                        if connected + len(failed) >= n:
                            all_in.set()
                elif kind == "0":
                    await ws.send_str("40/live," + json.dumps({"session_id": session_id}))
                elif kind == "2":
                    await ws.send_str("3")

    sem = asyncio.Semaphore(50)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        tasks = [asyncio.ensure_future(viewer(http, i)) for i in range(n)]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_in.wait(), 180)
        if failed or connected < n:
            print(f"load: {connected}/{n} connected, {len(failed)} failed: {failed[:3]}", file=sys.stderr)
        await asyncio.sleep(3.0)  # let the join backfills (hello, history, state) pass
        print("READY", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        go.set()
        started = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        elapsed = time.monotonic() - started
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    lat = sorted(stats["lat"])

    def q(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")

    print(json.dumps({"connected": connected, "comments": stats["comments"], "frames": stats["frames"],
                      "states": stats["states"], "seconds": elapsed, "p50": q(0.5), "p99": q(0.99),
                      "lat": [round(x, 1) for x in lat]}), flush=True)


# --- baseline server ----------------------------------------------------------------------------

async def baseline_server(port: int, redis_url: str) -> None:
    from aiohttp import web

    clients: set[web.WebSocketResponse] = set()
    pending: list[str] = []
    open_packet = "0" + json.dumps({"sid": "x", "upgrades": [], "pingInterval": 25000,
                                    "pingTimeout": 20000, "maxPayload": 16384})

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False, compress=False)
        await ws.prepare(request)
        await ws.send_str(open_packet)
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            if msg.data.startswith("40"):
                await ws.send_str('40/live,{"sid":"y"}')
                clients.add(ws)
        clients.discard(ws)
        return ws

    async def broadcast(frame: str) -> None:
        for ws in list(clients):
            try:
                await ws.send_str(frame)  # aiohttp writes straight to the transport
            except Exception:
                clients.discard(ws)

    async def listen() -> None:
        redis = Redis.from_url(redis_url)
        pubsub = redis.pubsub()
        await pubsub.subscribe(CHANNEL)
        async for message in pubsub.listen():
            data = message.get("data")
            if not isinstance(data, bytes) or not data.startswith(PREFIX):
                continue
            body = json.loads(data[len(PREFIX):])
            if body["t"] == "ev":
                pending.extend(json.dumps({k: v for k, v in e.items() if k != "ev"}, ensure_ascii=False,
                                          separators=(",", ":")) for e in body["e"])
            elif body["t"] == "st":
                await broadcast('42/live,["state",' + json.dumps(body["s"]) + "]")

    async def batcher() -> None:
        while True:
            await asyncio.sleep(0.1)
            if pending:
                batch = ",".join(pending)
                pending.clear()
                await broadcast('42/live,["comments",[' + batch + "]]")

    app = web.Application()
    app.router.add_get("/socket.io/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    await asyncio.gather(listen(), batcher())


# --- driver -------------------------------------------------------------------------------------

async def wait_http(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            try:
                async with http.get(url) as resp:
                    if resp.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def make_session(base: str) -> int:
    async with aiohttp.ClientSession(base) as http:
        async with http.post("/api/auth/token", json={"username": "admin",
                                                      "password": ADMIN_PASSWORD}) as resp:
            admin = (await resp.json())["token"]
        name = "bench_host_" + secrets.token_hex(3)
        async with http.post("/api/users", json={"username": name, "password": "password-" + name,
                                                 "role": "host"},
                             headers={"Authorization": f"Bearer {admin}"}) as resp:
            assert resp.status == 201, await resp.text()
        async with http.post("/api/auth/token", json={"username": name,
                                                      "password": "password-" + name}) as resp:
            host = (await resp.json())["token"]
        async with http.post("/api/sessions", json={"title": "fan-out"},
                             headers={"Authorization": f"Bearer {host}"}) as resp:
            return int((await resp.json())["id"])


async def measure(kind: str, server_pid: int, ws_url: str, session_id: int, n: int,
                  seconds: float, rate: float, redis: Redis) -> dict[str, Any]:
    procs = max(1, min(3, n // 700 + 1))  # several light load processes: the client must not be
    clients = []                          # the bottleneck that the latency figures measure
    for part in range(procs):
        size = n // procs + (1 if part < n % procs else 0)
        clients.append(await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--load", ws_url, str(session_id), str(size), str(seconds),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 26))
    for client in clients:
        assert client.stdout is not None
        line = await asyncio.wait_for(client.stdout.readline(), 300)
        assert line.strip() == b"READY", line
    history = RoomHistory(redis, CHANNEL)
    state = StateCoalescer(redis, CHANNEL, "bench", lambda _room: n, lambda: [])
    flusher = asyncio.ensure_future(state.run())
    for client in clients:
        assert client.stdin is not None
        client.stdin.write(b"go\n")
        await client.stdin.drain()
    cpu0, t0 = cpu_seconds(server_pid), time.monotonic()
    sent = 0
    stock = 100_000
    text = "这个苹果孩子能吃吗?甜不甜,什么时候发货"
    while (elapsed := time.monotonic() - t0) < seconds:
        due = int(elapsed * rate) + 1
        while sent < due:
            await history.append(session_id, {"ev": "comment", "id": f"b{sent}",
                                              "user": {"id": 1, "name": "邻居"}, "text": text,
                                              "ts": int(time.time() * 1000)})
            sent += 1
        for _ in range(10):  # 1,000 stock changes a second, coalesced by the hub's machinery
            stock -= 1
            state.set_field(session_id, "stock:1", {"remaining": stock, "held": 3,
                                                    "sold": 100_000 - stock, "gift_left": 0})
        await asyncio.sleep(0.01)
    await asyncio.sleep(1.0)  # drain
    cpu = cpu_seconds(server_pid) - cpu0
    wall = time.monotonic() - t0
    results = []
    for client in clients:
        assert client.stdin is not None and client.stdout is not None
        client.stdin.write(b"stop\n")
        await client.stdin.drain()
        results.append(json.loads((await asyncio.wait_for(client.stdout.readline(), 60)).decode()))
        await client.wait()
    flusher.cancel()
    n = sum(r["connected"] for r in results)
    comments = sum(r["comments"] for r in results)
    frames = sum(r["frames"] for r in results)
    states = sum(r["states"] for r in results)
    lat = sorted(x for r in results for x in r["lat"])

    def q(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")

    return {"server": kind, "viewers": n, "load_processes": procs, "sent": sent,
            "expected": sent * n, "comment_deliveries": comments, "frames": frames,
            "deliveries_per_s": comments / seconds, "frames_per_s": frames / seconds,
            "state_frames_per_viewer_per_s": states / max(n, 1) / seconds,
            "p50_ms": q(0.5), "p99_ms": q(0.99), "server_cpu_s": cpu, "cpu_per_core": cpu / wall,
            "deliveries_per_cpu_s": comments / cpu if cpu else float("inf"),
            "frames_per_cpu_s": frames / cpu if cpu else float("inf")}


async def drive(sizes: list[int], seconds: float, rate: float) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="linli-fanout-"))
    redis_server = EmbeddedRedis(tmp / "redis")
    redis_url = redis_server.start()
    redis = Redis.from_url(redis_url)
    port, base_port = free_port(), free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "DATABASE_URL": f"sqlite:///{tmp}/bench.db",
           "LINLI_DEMO": "0", "LINLI_ADMIN_PASSWORD": ADMIN_PASSWORD, "PORT": str(port),
           "LINLI_SECRET_KEY": secrets.token_urlsafe(40), "LINLI_DATA_DIR": str(tmp / "var"),
           "LINLI_LOG_LEVEL": "WARNING"}
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "serve", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    baseline = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--baseline-server", str(base_port), redis_url,
        stdout=asyncio.subprocess.DEVNULL)
    rows: list[dict[str, Any]] = []
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz")
        session_id = await make_session(f"http://127.0.0.1:{port}")
        await asyncio.sleep(0.5)
        for n in sizes:
            for kind, pid, p in (("linli", server.pid, port), ("aiohttp", baseline.pid, base_port)):
                ws_url = f"ws://127.0.0.1:{p}/socket.io/?EIO=4&transport=websocket"
                row = await measure(kind, pid, ws_url, session_id, n, seconds, rate, redis)
                rows.append(row)
                print(f"{kind:8} n={n:5}  {row['deliveries_per_s']:>9,.0f} comment-deliveries/s "
                      f"({row['comment_deliveries']}/{row['expected']})  "
                      f"{row['frames_per_s']:>7,.0f} frames/s  "
                      f"p50 {row['p50_ms']:.0f} ms  p99 {row['p99_ms']:.0f} ms  "
                      f"state {row['state_frames_per_viewer_per_s']:.1f}/s/viewer  "
                      f"server cpu {row['cpu_per_core']:.2f} core  "
                      f"{row['deliveries_per_cpu_s']:,.0f} deliveries/cpu-s  "
                      f"{row['frames_per_cpu_s']:,.0f} frames/cpu-s", flush=True)
        print()
        for n in sizes:
            ours = next(r for r in rows if r["server"] == "linli" and r["viewers"] == n)
            base = next(r for r in rows if r["server"] == "aiohttp" and r["viewers"] == n)
            print(f"n={n}: frames per server CPU-second, linli / plain aiohttp = "
                  f"{ours['frames_per_cpu_s'] / base['frames_per_cpu_s']:.2f}x", flush=True)
        print(json.dumps(rows))
    finally:
        for proc in (server, baseline):
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)
        await redis.aclose()
        redis_server.stop()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        url, session_id, n, seconds = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
        import uvloop

        uvloop.run(load(url, session_id, n, seconds))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--baseline-server":
        import uvloop

        uvloop.run(baseline_server(int(sys.argv[2]), sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000, 2000])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=100.0, help="comments per second")
    args = parser.parse_args()
    asyncio.run(drive(args.sizes, args.seconds, args.rate))


if __name__ == "__main__":
    main()
