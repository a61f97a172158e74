"""Soak and chaos: buy attempts against real app processes while Redis, SQL and processes fail.

    python bench/chaos.py                          # full: 10^6 attempts, 10,000 buyers, 2,000 sockets
    python bench/chaos.py --attempts 20000 --buyers 500 --sockets 200 --sales 4   # what CI runs
    python bench/chaos.py --database sqlite        # SQLite instead of PostgreSQL

What runs (each its own process): a redis-server with AOF (bench-owned, so it can be restarted),
PostgreSQL (tests/pg_cluster.py, or --pg-admin-url) or a SQLite file, two `python -m server serve`
processes sharing them (tests/server_process.py), buyer load processes and Socket.IO watcher
processes (bench/chaos_clients.py). The host opens the sales one after another ("waves": each
opening closes the previous sale) and pins products twice a second, so the room keeps getting
numbered events. At fixed fractions of the attempts, once per `--cycles`, it injects:
  app_kill       SIGKILL one app process (every worker), start it again
  redis_restart  stop redis-server (SIGTERM: AOF flushed; or SIGKILL with --redis-fault kill,
                 under appendfsync always), start it on the same port and data
  db_drop        PostgreSQL: pg_terminate_backend of every connection of the app's database,
                 three times 0.3 s apart; SQLite: another process holds an exclusive lock for 3 s
  sockets        every watcher closes its socket; the host pins `--missed-events` times; then all
                 reconnect at once, each with its epoch and last seq
Afterwards it checks, and prints: 0 oversold (Redis and SQL, per sale and per buyer), 0 duplicate
orders (one key → one hold, one hold → one order, every confirmation → one order), initial =
remaining + held + sold for every sale, SQL paid orders = Redis sold (`python -m server reconcile`
exits 0), what each buyer was told agrees with SQL, and every watcher got every numbered event
of the room exactly once. `run()` returns the same figures; tests/test_chaos.py asserts on them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from redis.asyncio import Redis
from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from commerce.accounts import Principal, Role, User  # noqa: E402
from commerce.flash_sale.store import keys  # noqa: E402
from commerce.orders import SOLD_STATES  # noqa: E402
from infra.settings import Settings  # noqa: E402
from realtime.history import room_key  # noqa: E402
from server.auth import TokenService  # noqa: E402
from server.database import Database  # noqa: E402
from server.embedded_redis import EmbeddedRedis  # noqa: E402
from tests.server_process import ServerProcess  # noqa: E402

CLIENTS = str(Path(__file__).with_name("chaos_clients.py"))
ADMIN_PASSWORD = "chaos-admin-password"
# Any string will do: the bulk buyers never log in (their tokens are issued here).
UNUSABLE_HASH = "!chaos-buyer"
FAULTS = ("app_kill", "redis_restart", "db_drop", "sockets")


@dataclass
class ChaosConfig:
    attempts: int = 1_000_000
    buyers: int = 10_000
    sockets: int = 2_000
    sales: int = 10
    concurrency: int = 400  # buyer loops in flight, over all load processes
    load_procs: int = 2
    socket_procs: int = 1
    database: str = "postgres"  # or "sqlite"
    pg_admin_url: str | None = None  # else a throwaway cluster (tests/pg_cluster.py)
    hold_ttl_s: int = 5
    per_buyer_limit: int = 3
    pay_p: float = 0.5
    release_p: float = 0.15
    cycles: int = 1
    faults: str = ",".join(FAULTS)  # which faults, comma-separated, in this order each cycle
    # "restart": SIGTERM (Redis flushes its AOF), the operator's restart. "kill": SIGKILL, with
    # `appendfsync always` so that no acknowledged write may be lost. "kill-everysec": SIGKILL
    # with the embedded default `everysec`, which may lose up to a second of acknowledged
    # writes (Redis' documented trade-off): shows what that costs a sale.
    redis_fault: str = "restart"
    missed_events: int = 30
    workdir: Path | None = None
    seed: int = 1


@dataclass
class Figures:
    """What one run measured; `failures` is empty when every invariant held."""

    config: dict[str, Any]
    failures: list[str] = field(default_factory=list)
    load: dict[str, Any] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    sales: list[dict[str, Any]] = field(default_factory=list)
    orders: dict[str, Any] = field(default_factory=dict)
    sockets: dict[str, Any] = field(default_factory=dict)
    reconcile: dict[str, Any] = field(default_factory=dict)
    server_errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class Stack:
    """Redis, the database and two app processes, with the faults that can be done to them."""

    def __init__(self, cfg: ChaosConfig, tmp: Path) -> None:
        self.cfg = cfg
        self.tmp = tmp
        always = ("--appendfsync", "always") if cfg.redis_fault == "kill" else ()
        self.redis_server = EmbeddedRedis(tmp / "redis", extra_args=always)
        self.secret = secrets.token_urlsafe(40)
        self.tokens = TokenService(self.secret, 24 * 3600)
        self.pg: Any = None
        self.pg_admin = cfg.pg_admin_url
        self.database_url = ""
        self.db_name = ""
        self.servers: list[ServerProcess] = []
        self.redis: Redis | None = None

    async def start(self) -> None:
        # In this thread, not a pool's: redis-server dies with the thread that started it
        # (PR_SET_PDEATHSIG), and it answers PONG only once its AOF is loaded.
        redis_url = self.redis_server.start(60.0)
        self.redis = Redis.from_url(redis_url)
        if self.cfg.database == "sqlite":
            self.database_url = f"sqlite:///{self.tmp / 'chaos.db'}"
        else:
            if self.pg_admin is None:
                from tests.pg_cluster import PgCluster

                self.pg = PgCluster()
                if not self.pg.available:
                    raise RuntimeError("PostgreSQL not installed (initdb not found): --database sqlite")
                self.pg_admin = await asyncio.to_thread(self.pg.start)
            self.db_name = "linli_chaos_" + uuid.uuid4().hex[:10]
            conn = await asyncpg.connect(self.pg_admin)
            try:
                await conn.execute(f'CREATE DATABASE "{self.db_name}"')
            finally:
                await conn.close()
            self.database_url = self.pg_admin.rpartition("/")[0] + "/" + self.db_name
        env = {"LINLI_SECRET_KEY": self.secret, "LINLI_HOLD_TTL_S": str(self.cfg.hold_ttl_s),
               "LINLI_RTMP_PORT": "-1"}
        self.servers = [ServerProcess(self.tmp / f"app{i}", redis_url, self.database_url,
                                      admin_password=ADMIN_PASSWORD, extra_env=env)
                        for i in range(2)]
        for server in self.servers:  # one after the other: the first one migrates
            await asyncio.to_thread(server.start, 120.0)

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def token(self, user_id: int, role: Role) -> str:
        return self.tokens.issue(Principal(user_id, f"u{user_id}", role))

    async def stop(self) -> None:
        for server in self.servers:
            await asyncio.to_thread(server.stop)
        if self.redis is not None:
            await self.redis.aclose()
        self.redis_server.stop()
        if self.pg is not None:
            await asyncio.to_thread(self.pg.stop)

    # --- faults ----------------------------------------------------------------------------------
    async def app_kill(self, n: int) -> dict[str, Any]:
        victim = self.servers[n % len(self.servers)]
        await asyncio.to_thread(victim.kill)
        await asyncio.sleep(1.0)
        t0 = time.monotonic()
        await asyncio.to_thread(victim.start, 120.0)
        return {"killed": victim.url, "restart_s": round(time.monotonic() - t0, 2)}

    async def redis_restart(self, _n: int) -> dict[str, Any]:
        assert self.redis is not None
        aof = sum(f.stat().st_size for f in (self.tmp / "redis").rglob("*.aof*"))
        if self.cfg.redis_fault.startswith("kill"):
            self.redis_server.kill()
        else:
            self.redis_server.stop()
        await asyncio.sleep(0.5)
        t0 = time.monotonic()
        self.redis_server.start(120.0)
        while True:  # answers PING while it still loads the AOF: wait until it serves data
            try:
                await self.redis.get("chaos:probe")
                break
            except Exception:
                await asyncio.sleep(0.1)
        return {"aof_bytes": aof, "restart_s": round(time.monotonic() - t0, 2)}

    async def db_drop(self, _n: int) -> dict[str, Any]:
        if self.cfg.database == "sqlite":
            path = self.tmp / "chaos.db"
            await asyncio.to_thread(_sqlite_lock, path, 3.0)
            return {"sqlite_exclusive_lock_s": 3.0}
        assert self.pg_admin is not None
        killed = 0
        conn = await asyncpg.connect(self.pg_admin)
        try:
            for _ in range(3):
                killed += int(await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid()", self.db_name))
                await asyncio.sleep(0.3)
        finally:
            await conn.close()
        return {"backends_terminated": killed}


def _sqlite_lock(path: Path, seconds: float) -> None:
    conn = sqlite3.connect(path, timeout=30)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        time.sleep(seconds)
        conn.rollback()
    finally:
        conn.close()


class Shop:
    """The host's side over HTTP: session, products, sales in waves, pins (numbered room events)."""

    def __init__(self, stack: Stack, http: aiohttp.ClientSession) -> None:
        self.stack = stack
        self.http = http
        self.host_token = ""
        self.admin_token = ""
        self.session_id = 0
        self.products: list[int] = []
        self.sales: list[int] = []
        self.pins = 0
        self._turn = 0

    async def call(self, method: str, path: str, token: str, body: Any = None,
                   tries: int = 120, key: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        if key is not None:  # retries of one intent carry one key
            headers["Idempotency-Key"] = key
        for attempt in range(tries):
            url = self.stack.urls[(self._turn + attempt) % len(self.stack.urls)] + path
            try:
                async with self.http.request(method, url, json=body, headers=headers) as resp:
                    data = await resp.json(content_type=None)
                    if resp.status < 500:
                        return resp.status, data
            except (aiohttp.ClientError, TimeoutError, ValueError):
                pass
            await asyncio.sleep(0.25)
        raise RuntimeError(f"{method} {path}: no answer")

    async def setup(self) -> None:
        async with self.http.post(self.stack.urls[0] + "/api/auth/token", json={
                "username": "admin", "password": ADMIN_PASSWORD}) as resp:
            self.admin_token = (await resp.json())["token"]
        status, host = await self.call("POST", "/api/users", self.admin_token, {
            "username": "chaos_host", "password": "chaos-host-password", "role": "host"})
        assert status == 201, host
        self.host_token = self.stack.token(int(host["id"]), Role.HOST)
        status, session = await self.call("POST", "/api/sessions", self.host_token,
                                          {"title": "混沌测试 chaos"})
        assert status == 201, session
        self.session_id = int(session["id"])
        for name in ("白沙枇杷", "初榨橄榄油"):
            status, product = await self.call("POST", "/api/products", self.host_token,
                                              {"name": name, "price_fen": 6800})
            assert status == 201, product
            self.products.append(int(product["id"]))

    async def open_sale(self, stock: int, limit: int) -> int:
        """A new wave: close the running sale (holds may still be paid) and open the next."""
        if self.sales:
            status, body = await self.call("POST", f"/api/sales/{self.sales[-1]}/close",
                                           self.host_token)
            assert status == 200, body  # closing is idempotent: a retry answers the same
        key = uuid.uuid4().hex
        while True:  # 409 in_progress: the first try with this key is still being handled
            status, sale = await self.call("POST", f"/api/sessions/{self.session_id}/sales",
                                           self.host_token, {
                                               "product_id": self.products[len(self.sales) % 2],
                                               "stock": stock, "price_fen": 6800,
                                               "per_buyer_limit": limit, "gift_first_n": 30},
                                           key=key)
            if status != 409:
                break
            await asyncio.sleep(1.0)
        assert status == 201, sale
        self.sales.append(int(sale["id"]))
        return int(sale["id"])

    async def pin(self) -> None:
        self._turn += 1
        path = f"/api/sessions/{self.session_id}/pin"
        if self._turn % 3 == 0:
            status, _ = await self.call("DELETE", path, self.host_token, tries=4)
        else:
            status, _ = await self.call("POST", path, self.host_token,
                                        {"product_id": self.products[self._turn % 2]}, tries=4)
        self.pins += status == 200

    async def pin_forever(self, every_s: float) -> None:
        while True:
            with contextlib.suppress(RuntimeError):
                await self.pin()
            await asyncio.sleep(every_s)


async def insert_buyers(database_url: str, count: int) -> list[int]:
    database = Database(Settings(database_url=database_url).sqlalchemy_url)
    ids: list[int] = []
    try:
        for start in range(0, count, 2000):
            async with database.session() as db:
                users = [User(username=f"chaos_b{i}", display_name=f"邻居{i}",
                              password_hash=UNUSABLE_HASH, role=Role.VIEWER.value)
                         for i in range(start, min(count, start + 2000))]
                db.add_all(users)
                await db.flush()
                ids += [u.id for u in users]
    finally:
        await database.close()
    return ids


def _load_json(path: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(Path(path).read_text())
    return result


class Children:
    """Load processes speaking JSON lines: buyers report progress, watchers answer commands."""

    def __init__(self) -> None:
        self.buyers: list[asyncio.subprocess.Process] = []
        self.progress: list[int] = []
        self.results: list[dict[str, Any]] = []
        self.watchers: list[asyncio.subprocess.Process] = []
        self._readers: list[asyncio.Task[None]] = []

    async def start_buyers(self, jobs: list[dict[str, Any]]) -> None:
        self.progress = [0] * len(jobs)
        self.results = [{} for _ in jobs]
        for index, job in enumerate(jobs):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, CLIENTS, "buyers", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, limit=1 << 28)
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(job).encode() + b"\n")
            await proc.stdin.drain()
            self.buyers.append(proc)
            self._readers.append(asyncio.ensure_future(self._read_buyer(index, proc)))

    async def _read_buyer(self, index: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            kind, _, data = line.decode().partition(" ")
            if kind == "P":
                self.progress[index] = int(data)
            elif kind == "R":
                self.results[index] = _load_json(json.loads(data))
                self.progress[index] = self.results[index]["attempts"]
        await proc.wait()

    async def buyers_done(self) -> None:
        await asyncio.gather(*self._readers)
        for index, result in enumerate(self.results):
            if not result:
                raise RuntimeError(f"buyer process {index} ended without a result")

    async def start_watchers(self, urls: list[str], room: int, count: int, procs: int) -> None:
        ws_urls = ",".join(u.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
                           for u in urls)
        for part in range(procs):
            size = count // procs + (1 if part < count % procs else 0)
            self.watchers.append(await asyncio.create_subprocess_exec(
                sys.executable, CLIENTS, "sockets", ws_urls, str(room), str(size),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 26))

    async def tell(self, command: str, timeout_s: float = 300) -> list[dict[str, Any]]:
        """The command to every watcher process; their answers."""
        for proc in self.watchers:
            assert proc.stdin is not None
            proc.stdin.write(command.encode() + b"\n")
            await proc.stdin.drain()
        answers = []
        for proc in self.watchers:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), timeout_s)
            answers.append(json.loads(line.decode().partition(" ")[2]))
        return answers

    async def stop(self) -> None:
        for proc in self.watchers:
            with contextlib.suppress(Exception):
                assert proc.stdin is not None
                proc.stdin.write(b"quit\n")
                await proc.stdin.drain()
        for proc in [*self.watchers, *self.buyers]:
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


# --- the run -------------------------------------------------------------------------------------

async def run(cfg: ChaosConfig) -> Figures:
    started = time.monotonic()
    tmp = cfg.workdir or Path(tempfile.mkdtemp(prefix="linli-chaos-"))
    figures = Figures(config={k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()})
    stack = Stack(cfg, tmp)
    children = Children()
    try:
        await stack.start()
        timeout = aiohttp.ClientTimeout(total=20)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            shop = Shop(stack, http)
            await shop.setup()
            await _drive(cfg, stack, shop, children, figures)
            await _check(cfg, stack, shop, children, figures)
    finally:
        await children.stop()
        await stack.stop()
        figures.server_errors = server_errors(tmp)
        if cfg.workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    figures.seconds = round(time.monotonic() - started, 1)
    return figures


async def _drive(cfg: ChaosConfig, stack: Stack, shop: Shop, children: Children,
                 figures: Figures) -> None:
    buyer_ids = await insert_buyers(stack.database_url, cfg.buyers)
    stock = max(50, cfg.attempts // (cfg.sales * 10))
    await shop.open_sale(stock, cfg.per_buyer_limit)
    await children.start_watchers(stack.urls, shop.session_id, cfg.sockets, cfg.socket_procs)
    connected = await children.tell("connect")
    figures.sockets["initial_connect"] = {
        "ready": sum(a["ready"] for a in connected),
        "seconds": round(max(a["seconds"] for a in connected), 2)}
    procs = max(1, cfg.load_procs)
    jobs = [{"urls": stack.urls, "secret": stack.secret, "session_id": shop.session_id,
             "buyers": buyer_ids[i::procs], "attempts": cfg.attempts // procs
             + (1 if i < cfg.attempts % procs else 0),
             "concurrency": max(1, cfg.concurrency // procs), "pay_p": cfg.pay_p,
             "release_p": cfg.release_p, "seed": cfg.seed * 1000 + i,
             "result_path": str(stack.tmp / f"buyers{i}.json")} for i in range(procs)]
    # Faults spread over 10%..85% of the attempts, each kind once per cycle; waves evenly.
    chosen = [name for name in cfg.faults.split(",") if name]
    unknown = set(chosen) - set(FAULTS)
    if unknown:
        raise ValueError(f"unknown faults {sorted(unknown)}; known: {', '.join(FAULTS)}")
    plan = [name for _ in range(cfg.cycles) for name in chosen]
    fault_at = [0.1 + 0.75 * i / max(1, len(plan) - 1) for i in range(len(plan))]
    wave_at = [k / cfg.sales for k in range(1, cfg.sales)]
    pinner = asyncio.ensure_future(shop.pin_forever(0.5))
    load_t0 = time.time()
    await children.start_buyers(jobs)
    done = asyncio.ensure_future(children.buyers_done())
    fault_task: asyncio.Task[None] | None = None
    counts: dict[str, int] = {}
    try:
        while not done.done():
            frac = sum(children.progress) / max(1, cfg.attempts)
            while wave_at and frac >= wave_at[0]:
                wave_at.pop(0)
                await shop.open_sale(stock, cfg.per_buyer_limit)
            if plan and frac >= fault_at[0] and (fault_task is None or fault_task.done()):
                fault_at.pop(0)
                name = plan.pop(0)
                n = counts[name] = counts.get(name, 0) + 1
                fault_task = asyncio.ensure_future(
                    _fault(name, n - 1, stack, shop, children, cfg, figures, frac))
            await asyncio.wait([done], timeout=0.2)
        if fault_task is not None:
            await fault_task
        await done
        if plan:
            figures.failures.append(f"the load ended before these faults were injected: {plan} "
                                    "(give more --attempts)")
    finally:
        pinner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pinner
        if fault_task is not None and not fault_task.done():
            fault_task.cancel()
    load_s = time.time() - load_t0
    results = children.results
    statuses: dict[str, int] = {}
    for r in results:
        for k, v in r["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    lat = sorted(x for r in results for x in r["latencies"])
    attempts = sum(r["attempts"] for r in results)
    holds = sum(r["holds"] for r in results)
    paid = sum(len(r["paid"]) for r in results)
    figures.load = {
        "attempts": attempts, "seconds": round(load_s, 1),
        "attempts_per_s": round(attempts / load_s, 1), "holds": holds,
        "holds_per_s": round(holds / load_s, 1), "paid": paid, "paid_per_s": round(paid / load_s, 1),
        "released": sum(len(r["released"]) for r in results),
        "left_to_expire": sum(len(r["left_to_expire"]) for r in results),
        "told_expired": sum(len(r["expired"]) for r in results),
        "pay_unanswered": sum(len(r["gave_up"]) for r in results),
        "retries": sum(r["retries"] for r in results), "unanswered": sum(r["unanswered"]
                                                                         for r in results),
        "statuses": dict(sorted(statuses.items())), "sales": len(shop.sales),
        "room_events_pinned": shop.pins,
        "p50_ms": round(1000 * statistics.median(lat), 1) if lat else None,
        "p99_ms": round(1000 * lat[int(0.99 * (len(lat) - 1))], 1) if lat else None,
    }
    _fault_recovery(figures, results)


async def _fault(name: str, n: int, stack: Stack, shop: Shop, children: Children,
                 cfg: ChaosConfig, figures: Figures, frac: float) -> None:
    t0 = time.time()
    if name == "sockets":
        await children.tell("drop")
        before = int(await _redis_int(stack, room_key(shop.session_id, "seq")))
        for _ in range(cfg.missed_events):
            with contextlib.suppress(RuntimeError):
                await shop.pin()
        after = int(await _redis_int(stack, room_key(shop.session_id, "seq")))
        answers = await children.tell("reconnect")
        detail: dict[str, Any] = {
            "clients": cfg.sockets, "ready": sum(a["ready"] for a in answers),
            "missed_at_least": after - before,
            "all_recovered_s": round(max(a["seconds"] for a in answers), 2),
            "p50_s": round(max((a["p50"] or 0) for a in answers), 2),
            "slowest": [x for a in answers for x in a.get("slowest", [])][:3]}
        figures.sockets["mass_reconnect"] = detail
    else:
        detail = await getattr(stack, name)(n)
    figures.faults.append({"fault": name, "at_fraction": round(frac, 3), "start": t0,
                           "took_s": round(time.time() - t0, 2), **detail})
    print(f"chaos: {name} at {frac:.0%} of attempts: {detail}", flush=True)


async def _redis_int(stack: Stack, key: str) -> int:
    assert stack.redis is not None
    for _ in range(300):
        try:
            return int(await stack.redis.get(key) or 0)
        except Exception:
            await asyncio.sleep(0.1)
    raise RuntimeError("redis did not answer")


QUIET_S = 5.0


def _fault_recovery(figures: Figures, results: list[dict[str, Any]]) -> None:
    """Per fault: failed request tries buyers saw until the next fault, and `clean_after_s`:
    from the fault's start to the first QUIET_S seconds in which no try failed (a saturated box
    also fails a few requests now and then, so "the last failure" would measure that)."""
    failed: dict[float, int] = {}
    for r in results:
        for slot, (_ok, bad) in r["buckets"].items():
            if bad:
                failed[int(slot) / 2] = failed.get(int(slot) / 2, 0) + bad
    starts = [f["start"] for f in figures.faults] + [float("inf")]
    for fault, end in zip(figures.faults, starts[1:], strict=False):
        window = sorted(t for t in failed if fault["start"] - 0.5 <= t < end)
        fault["failed_tries"] = sum(failed[t] for t in window)
        quiet_from = fault["start"]
        for t in window:
            if t >= quiet_from + QUIET_S:
                break
            quiet_from = max(quiet_from, t + 0.5)
        fault["clean_after_s"] = round(quiet_from - fault["start"], 1)


# --- the checks ----------------------------------------------------------------------------------

async def _check(cfg: ChaosConfig, stack: Stack, shop: Shop, children: Children,
                 figures: Figures) -> None:
    fail = figures.failures
    # Unpaid holds expire (ttl + the sweeper), the log consumers catch up.
    await asyncio.sleep(cfg.hold_ttl_s + 2)
    head = await _redis_int(stack, room_key(shop.session_id, "seq"))
    await asyncio.sleep(2.0)
    reports = await children.tell(f"report {head}", 120)
    ok = sum(r["ok"] for r in reports)
    figures.sockets.update(
        clients=sum(r["clients"] for r in reports), recovered_exactly=ok, room_events=head,
        events_per_client=reports[0]["events"] if reports else 0,
        connects=sum(r["connects"] for r in reports), resumes=sum(r["resumes"] for r in reports),
        refusals=sum(r["refusals"] for r in reports), bad=[b for r in reports for b in r["bad"]][:3])
    if ok != cfg.sockets:
        fail.append(f"sockets: {cfg.sockets - ok} of {cfg.sockets} clients did not get exactly the "
                    f"room's events: {figures.sockets['bad']}")

    # Reconcile through a live process until the log is written (a dead consumer's pending
    # entries are claimed after 5 s idle), then the CLI's verdict is the one recorded.
    t0 = time.monotonic()
    report: Any = {}
    while time.monotonic() - t0 < 120:
        status, report = await shop.call("GET", "/api/reconcile", shop.admin_token)
        if status == 200 and report.get("ok"):
            break
        await asyncio.sleep(1.0)
    figures.reconcile["converged_s"] = round(time.monotonic() - t0, 1)
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "reconcile", cwd=ROOT,
        env={**stack.servers[0].env, "LINLI_DATA_DIR": str(stack.tmp / "cli")},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(cli.communicate(), 180)
    rows = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    figures.reconcile.update(exit_code=cli.returncode, verdict=err.decode().strip().splitlines()[-1:])
    if cli.returncode != 0:
        fail.append(f"reconcile exited {cli.returncode}: {[r for r in rows if not r['ok']][:3]}")
    for row in rows:
        figures.sales.append({k: row[k] for k in ("sale_id", "initial", "remaining", "held", "sold",
                                                  "sql_sold", "sql_orders", "log_entries",
                                                  "stock_drift", "sql_drift", "ok")})
        if row["sold"] > row["initial"] or row["remaining"] < 0 or row["sql_sold"] > row["initial"]:
            fail.append(f"sale {row['sale_id']} oversold: {row}")
        if row["stock_drift"] != 0:
            fail.append(f"sale {row['sale_id']}: initial != remaining + held + sold: {row}")
        if row["sql_drift"] != 0 or row["missing_orders"]:
            fail.append(f"sale {row['sale_id']}: SQL sold {row['sql_sold']} != Redis sold "
                        f"{row['sold']}, missing {row['missing_orders'][:5]}")
    if sorted(r["sale_id"] for r in rows) != sorted(shop.sales):
        fail.append(f"reconcile covered {[r['sale_id'] for r in rows]}, sales were {shop.sales}")
    await _check_orders(cfg, stack, shop, children.results, figures)


async def _check_orders(cfg: ChaosConfig, stack: Stack, shop: Shop, results: list[dict[str, Any]],
                        figures: Figures) -> None:
    """What buyers were told against SQL, and SQL against Redis, order by order."""
    fail = figures.failures
    database = Database(Settings(database_url=stack.database_url).sqlalchemy_url)
    try:
        async with database.session() as db:
            rows = (await db.execute(text(
                "SELECT id, hold_id, sale_id, user_id, qty, status FROM orders"))).all()
    finally:
        await database.close()
    by_hold = {r.hold_id: r for r in rows}
    sold_states = {s.value for s in SOLD_STATES}
    per_buyer: dict[tuple[int, int], int] = {}
    for r in rows:
        if r.status in sold_states:
            per_buyer[(r.sale_id, r.user_id)] = per_buyer.get((r.sale_id, r.user_id), 0) + r.qty
    over = {k: v for k, v in per_buyer.items() if v > cfg.per_buyer_limit}
    if over:
        fail.append(f"buyers over the per-buyer limit: {list(over.items())[:5]}")
    if len(by_hold) != len(rows):
        fail.append(f"duplicate orders: {len(rows)} orders for {len(by_hold)} holds")
    assert stack.redis is not None
    redis_paid: set[str] = set()
    log_entries = 0
    for sale in shop.sales:
        redis_paid |= {h.decode() for h in await stack.redis.hkeys(keys(sale)["paid"])}
        log_entries += int(await stack.redis.xlen(keys(sale)["log"]))
    if set(by_hold) != redis_paid or log_entries != len(rows):
        fail.append(f"orders vs confirmations: SQL {len(by_hold)}, Redis paid {len(redis_paid)}, "
                    f"log {log_entries}; only in SQL {sorted(set(by_hold) - redis_paid)[:5]}, "
                    f"only in Redis {sorted(redis_paid - set(by_hold))[:5]}")
    told_paid: dict[str, int] = {}
    order_ids: dict[int, str] = {}
    mismatched, wrong_buyer, told_no, mismatch_keys = [], [], [], []
    for r in results:
        mismatch_keys += r["idem_mismatch"]
        for hold, order_id, buyer in r["paid"]:
            if told_paid.setdefault(hold, order_id) != order_id or order_ids.setdefault(
                    order_id, hold) != hold:
                mismatched.append(hold)
            row = by_hold.get(hold)
            if row is None or row.id != order_id:
                mismatched.append(hold)
            elif row.user_id != buyer:
                wrong_buyer.append(hold)
        for hold in [*r["expired"], *r["released"], *r["left_to_expire"]]:
            if hold in by_hold:
                told_no.append(hold)
    if mismatch_keys:
        fail.append(f"one Idempotency-Key gave two holds: {mismatch_keys[:5]}")
    if mismatched:
        fail.append(f"buyers told 'paid' without that order in SQL: {mismatched[:5]}")
    if wrong_buyer:
        fail.append(f"orders of the wrong buyer: {wrong_buyer[:5]}")
    if told_no:
        fail.append(f"buyers told expired/released whose hold became an order: {told_no[:5]}")
    figures.orders = {"sql_orders": len(rows), "redis_confirmations": len(redis_paid),
                      "log_entries": log_entries, "told_paid": len(told_paid),
                      "paid_via_log_only": len(set(by_hold) - set(told_paid)),
                      "over_limit_buyers": len(over)}


def server_errors(tmp: Path) -> dict[str, int]:
    """Error lines of the app processes' logs, counted by logger, message and exception type."""
    found: dict[str, int] = {}
    for path in sorted(tmp.glob("app*/server.log")):
        for line in path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("level") not in ("error", "critical"):
                continue
            exc = str(entry.get("exc") or "").strip().splitlines()
            kind = exc[-1].split(":")[0] if exc else ""
            key = f"{path.parent.name} {entry.get('logger')}: {entry.get('msg')} {kind}".strip()
            found[key] = found.get(key, 0) + 1
    return dict(sorted(found.items(), key=lambda kv: -kv[1]))


# --- printing ------------------------------------------------------------------------------------

def render(f: Figures) -> str:
    load, s = f.load, f.sockets
    lines = [
        f"chaos soak: {f.config['attempts']:,} attempts, {f.config['buyers']:,} buyers, "
        f"{f.config['sockets']:,} sockets, {load.get('sales')} sales, database "
        f"{f.config['database']}, {os.cpu_count()} CPUs, {f.seconds:.0f} s in all",
        f"  load: {load.get('attempts', 0):,} attempts in {load.get('seconds')} s = "
        f"{load.get('attempts_per_s')} attempts/s; holds {load.get('holds', 0):,} "
        f"({load.get('holds_per_s')}/s); paid {load.get('paid', 0):,} ({load.get('paid_per_s')}/s); "
        f"released {load.get('released', 0):,}; left to expire {load.get('left_to_expire', 0):,}; "
        f"told expired or refused {load.get('told_expired', 0):,}; "
        f"pay unanswered {load.get('pay_unanswered', 0)}",
        f"  reserve latency (with retries) p50 {load.get('p50_ms')} ms, p99 {load.get('p99_ms')} ms; "
        f"request retries {load.get('retries', 0):,}; never answered {load.get('unanswered', 0)}",
        f"  statuses: {load.get('statuses')}",
    ]
    for fault in f.faults:
        extra = {k: v for k, v in fault.items() if k not in ("fault", "at_fraction", "start")}
        lines.append(f"  fault {fault['fault']} at {fault['at_fraction']:.0%}: {extra}")
    lines.append(f"  sockets: {s.get('recovered_exactly')}/{s.get('clients')} got exactly the room's "
                 f"{s.get('events_per_client')} events; initial connect {s.get('initial_connect')}; "
                 f"mass reconnect {s.get('mass_reconnect')}; connects {s.get('connects')}, "
                 f"resumed {s.get('resumes')}, refusals {s.get('refusals')}")
    for sale in f.sales:
        lines.append(f"  sale {sale['sale_id']}: initial {sale['initial']} = remaining "
                     f"{sale['remaining']} + held {sale['held']} + sold {sale['sold']} "
                     f"(drift {sale['stock_drift']}); SQL paid units {sale['sql_sold']} in "
                     f"{sale['sql_orders']} orders (drift {sale['sql_drift']})")
    o = f.orders
    lines.append(f"  orders: SQL {o.get('sql_orders')}, Redis confirmations "
                 f"{o.get('redis_confirmations')}, log {o.get('log_entries')}; written by the log "
                 f"only (buyer never heard back) {o.get('paid_via_log_only')}; over-limit buyers "
                 f"{o.get('over_limit_buyers')}; reconcile {f.reconcile}")
    if f.server_errors:
        lines.append("  errors logged by the app processes (expected while a fault lasts):")
        lines += [f"    {n:5} {what}" for what, n in list(f.server_errors.items())[:15]]
    lines.append("  RESULT: " + ("all invariants held: 0 oversold, 0 duplicate orders, books "
                                 "balance, SQL = Redis, every socket recovered exactly"
                                 if not f.failures else "FAILED:\n    " + "\n    ".join(f.failures)))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = ChaosConfig()
    for name, value in asdict(defaults).items():
        if name == "workdir":
            parser.add_argument("--workdir", type=Path, default=None,
                                help="keep logs and data here (default: a temp dir, removed)")
            continue
        kind = type(value) if value is not None else str
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=value)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    cfg = ChaosConfig(**{k: getattr(args, k) for k in asdict(defaults)})
    if cfg.workdir is not None:
        cfg.workdir.mkdir(parents=True, exist_ok=True)
    figures = asyncio.run(run(cfg))
    print(render(figures))
    if args.json:
        print(json.dumps(asdict(figures), default=str))
    sys.exit(1 if figures.failures else 0)


if __name__ == "__main__":
    main()
