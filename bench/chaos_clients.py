"""The load of bench/chaos.py, each kind in its own process (started by the driver, JSON on stdio).

    python bench/chaos_clients.py buyers    # reads one JSON job line; prints progress, then a result
    python bench/chaos_clients.py sockets   # raw Engine.IO watchers of one room; commands on stdin

Buyers act like impatient neighbours on a flaky network: reserve with an Idempotency-Key, and on a
transport error, a 5xx or a 429 retry the SAME key (on the other app process when one is down);
then pay, give back, or let the hold expire. Everything a buyer was told is returned, so the
driver can hold it against SQL and Redis afterwards (told "paid" → an order; told "expired" or
"released" → no order; one key → one hold; one hold → one order id).

Watchers are light raw Engine.IO v4 clients (as in bench/fanout.py: socketio.AsyncClient is too
heavy for thousands): each keeps the room's epoch and the highest `seq` it saw, reconnects with
them when its socket drops (an app process was killed) or when told to (`drop` then `reconnect`:
every watcher at once), and counts every numbered event it received, so `report` can say whether
each one got exactly the events of the room, no gap and no double.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from commerce.accounts import Principal, Role  # noqa: E402
from server.auth import TokenService  # noqa: E402

RETRY_FOR_S = 90.0
LATENCY_SAMPLES = 20_000


def _emit(kind: str, data: Any) -> None:
    sys.stdout.write(kind + " " + json.dumps(data, separators=(",", ":")) + "\n")
    sys.stdout.flush()


# --- buyers ---------------------------------------------------------------------------------------

class Buyers:
    """`concurrency` loops sharing one attempt budget, over the job's buyers and the open sales."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.urls: list[str] = job["urls"]
        self.rng = random.Random(job["seed"])
        tokens = TokenService(job["secret"], 24 * 3600)
        self.tokens = {uid: tokens.issue(Principal(uid, f"u{uid}", Role.VIEWER))
                       for uid in job["buyers"]}
        self.left = int(job["attempts"])
        self.attempts = 0
        self.statuses: Counter[str] = Counter()
        self.retries = 0
        self.latencies: list[float] = []
        self.buckets: dict[int, list[int]] = {}  # half-second -> [ok, failed] request tries
        self.paid: list[list[Any]] = []  # [hold, order id, buyer, qty]
        self.expired: list[str] = []  # told "hold_expired" when paying
        self.released: list[str] = []
        self.left_to_expire: list[str] = []
        self.gave_up: list[str] = []  # pay never answered: the log carries it, or it expired
        self.idem: dict[str, str] = {}  # key -> hold
        self.idem_mismatch: list[list[str]] = []
        self.hold_owner: dict[str, int] = {}
        self.unanswered = 0
        self.open_sales: list[int] = []
        self.sales_seen: set[int] = set()

    def _bucket(self, ok: bool) -> None:
        slot = self.buckets.setdefault(int(time.time() * 2), [0, 0])
        slot[0 if ok else 1] += 1

    async def call(self, http: aiohttp.ClientSession, method: str, path: str, token: str,
                   route: list[int], key: str | None = None, body: Any = None,
                   give_up_after: int | None = None) -> tuple[int, Any]:
        """One request, retried on faults (same key, other process); (0, None) if never answered.

        `route[0]` is the process this loop talks to; it moves to the next one on a failure
        (what a load balancer's health check does), so a dead process costs one failed try.
        """
        headers = {"Authorization": f"Bearer {token}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        deadline = time.monotonic() + RETRY_FOR_S
        tries = 0
        while True:
            url = self.urls[route[0] % len(self.urls)] + path
            try:
                async with http.request(method, url, json=body, headers=headers) as resp:
                    status = resp.status
                    data = await resp.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError):
                status, data = 0, None
            ok = 0 < status < 500 and status != 429
            self._bucket(ok)
            if ok:
                return status, data
            tries += 1
            self.retries += 1
            route[0] += 1
            if (give_up_after is not None and tries >= give_up_after) or time.monotonic() > deadline:
                return 0, None
            await asyncio.sleep(min(1.0, 0.05 * 2 ** min(tries, 5)) * (0.5 + self.rng.random()))

    async def watch_sales(self, http: aiohttp.ClientSession) -> None:
        """What a shop page does: learn the session's open sales (refreshed every second)."""
        token = next(iter(self.tokens.values()))
        path = f"/api/sessions/{self.job['session_id']}/sales"
        route = [0]
        while True:
            status, data = await self.call(http, "GET", path, token, route, give_up_after=2)
            if status == 200:
                self.open_sales = [int(s["id"]) for s in data if s.get("status") == "open"]
            await asyncio.sleep(1.0)

    async def loop(self, http: aiohttp.ClientSession, index: int) -> None:
        buyers = list(self.tokens)
        pay_p, release_p = float(self.job["pay_p"]), float(self.job["release_p"])
        route = [index]
        while self.left > 0:
            if not self.open_sales:
                await asyncio.sleep(0.2)
                continue
            self.left -= 1
            self.attempts += 1
            buyer = self.rng.choice(buyers)
            token = self.tokens[buyer]
            sale = self.rng.choice(self.open_sales)
            self.sales_seen.add(sale)
            key = uuid.uuid4().hex
            t0 = time.perf_counter()
            status, data = await self.call(http, "POST", f"/api/sales/{sale}/holds", token, route,
                                           key=key, body={"qty": 1 + (self.rng.random() < 0.2)})
            if len(self.latencies) < LATENCY_SAMPLES:
                self.latencies.append(time.perf_counter() - t0)
            if status == 0:
                self.unanswered += 1
                self.statuses["unanswered"] += 1
                continue
            code = str(status) if status == 201 else f"{status} {_code(data)}"
            self.statuses[code] += 1
            if status != 201:
                continue
            hold = str(data["hold_id"])
            self.idem[key] = hold
            self.hold_owner[hold] = buyer
            if self.rng.random() < 0.05:  # a double-click: the same key must give the same hold
                other = [route[0] + 1]  # and on the other process
                again, body = await self.call(http, "POST", f"/api/sales/{sale}/holds", token,
                                              other, key=key, body={"qty": 1})
                if again == 201 and body["hold_id"] != hold:
                    self.idem_mismatch.append([key, hold, str(body["hold_id"])])
            roll = self.rng.random()
            if roll < pay_p:
                # Some buyers give up on the first error (closed the tab): the log must carry it.
                patient = self.rng.random() < 0.7
                status, data = await self.call(http, "POST", f"/api/holds/{hold}/pay", token, route,
                                               give_up_after=None if patient else 1)
                if status == 200 and data.get("status") == "paid":
                    self.paid.append([hold, int(data["order_id"]), buyer])
                elif status == 409 and _code(data) == "hold_expired":
                    self.expired.append(hold)
                elif status == 0:
                    self.gave_up.append(hold)
                else:  # told "not paid" in some other way: there must be no order either
                    self.statuses[f"pay {status} {_code(data)}"] += 1
                    self.expired.append(hold)
            elif roll < pay_p + release_p:
                status, data = await self.call(http, "DELETE", f"/api/holds/{hold}", token, route)
                if status == 200:
                    self.released.append(hold)
                else:
                    self.statuses[f"release {status} {_code(data)}"] += 1
            else:
                self.left_to_expire.append(hold)

    async def run(self) -> dict[str, Any]:
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=15)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            watcher = asyncio.ensure_future(self.watch_sales(http))
            reporter = asyncio.ensure_future(self.report_progress())
            started = time.monotonic()
            await asyncio.gather(*(self.loop(http, i) for i in range(int(self.job["concurrency"]))))
            elapsed = time.monotonic() - started
            for task in (watcher, reporter):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return {
            "attempts": self.attempts, "elapsed": elapsed, "statuses": dict(self.statuses),
            "retries": self.retries, "latencies": self.latencies, "buckets": self.buckets,
            "paid": self.paid, "expired": self.expired, "released": self.released,
            "left_to_expire": self.left_to_expire, "gave_up": self.gave_up,
            "holds": len(self.idem), "idem_mismatch": self.idem_mismatch,
            "unanswered": self.unanswered, "sales_seen": sorted(self.sales_seen),
        }

    async def report_progress(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            _emit("P", self.attempts)


def _code(data: Any) -> str:
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return str(data["error"].get("code"))
    return "?"


# --- watchers -------------------------------------------------------------------------------------

class Watcher:
    """One raw Socket.IO client of /live that resumes from its last seq."""

    def __init__(self, index: int, urls: list[str], room: int) -> None:
        self.index = index
        self.urls = urls
        self.room = room
        self.epoch: str | None = None
        self.base: int | None = None  # the room's head when this client first joined
        self.last = 0
        self.seen: Counter[int] = Counter()
        self.connects = 0
        self.resumes = 0
        self.reloads: list[str] = []
        self.refusals: list[str] = []
        self.kicked = 0
        self.ready = asyncio.Event()  # hello ... state received on the current connection
        self.ready_at = 0.0
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.paused = False
        self.wake = asyncio.Event()
        self.stage = "new"  # how far the current connection got (for a report on a stuck one)

    def auth(self) -> dict[str, Any]:
        auth: dict[str, Any] = {"session_id": self.room}
        if self.epoch is not None:
            auth.update(epoch=self.epoch, last_seq=self.last)
        return auth

    async def run(self, http: aiohttp.ClientSession) -> None:
        attempt = 0
        while True:
            if self.paused:
                self.wake.clear()
                await self.wake.wait()
            url = self.urls[(self.index + attempt) % len(self.urls)]
            attempt += 1
            self.stage = "connecting " + url.split("/socket.io")[0]
            try:
                async with http.ws_connect(url, autoping=False, max_msg_size=0) as ws:
                    self.ws = ws
                    await self._session(ws)
            except (aiohttp.ClientError, TimeoutError, OSError):
                pass
            finally:
                self.ws = None
            if not self.paused:  # dropped under us (a process died): come back like a browser
                await asyncio.sleep(random.uniform(0.2, 1.0))

    async def _session(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ready.clear()
        in_backfill = False
        if self.paused:  # told to drop while this connection was being made
            await ws.close()
            return
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data: str = msg.data
            if data.startswith("0"):
                self.stage += " open"
                self.connects += 1
                await ws.send_str("40/live," + json.dumps(self.auth()))
            elif data == "2":
                await ws.send_str("3")
            elif data.startswith("40/live"):
                self.stage += " ack"
            elif data.startswith("41/live"):
                # The server closed the namespace: socket.io-client takes that as final (as for
                # a ban) and never reconnects. A fault must never end a viewer's session so.
                self.kicked += 1
                await ws.close()
            elif data.startswith("44/live,"):
                self.refusals.append(data[8:200])
                await ws.close()
            elif data.startswith("42/live,"):
                name, body = json.loads(data[8:])[:2]
                if name == "hello":
                    self.stage += " hello"
                    if self.base is None:
                        self.base = int(body["seq"])
                        self.last = self.base
                    elif body.get("resumed"):
                        self.resumes += 1
                    self.epoch = str(body["epoch"])
                    in_backfill = True
                elif name == "reload":
                    self.reloads.append(str(body.get("reason")))
                elif name == "state":
                    if in_backfill:
                        self.stage += " state"
                        in_backfill = False
                        self.ready_at = time.monotonic()
                        self.ready.set()
                else:  # the first join's backfill is at or below `base`, so not counted
                    self._count(body)

    def _count(self, body: Any) -> None:
        for item in body if isinstance(body, list) else [body]:
            seq = item.get("seq") if isinstance(item, dict) else None
            if isinstance(seq, int) and self.base is not None and seq > self.base:
                self.seen[seq] += 1
                self.last = max(self.last, seq)

    def check(self, head: int) -> dict[str, Any]:
        base = self.base if self.base is not None else head
        expected = set(range(base + 1, head + 1))
        missing = sorted(expected - set(self.seen))
        doubled = sorted(s for s, n in self.seen.items() if n > 1)
        extra = sorted(set(self.seen) - expected)
        return {"ok": not missing and not doubled and not extra and not self.reloads
                and not self.kicked and self.base is not None, "kicked": self.kicked,
                "missing": missing[:10], "n_missing": len(missing),
                "doubled": doubled[:10], "extra": extra[:10], "reloads": self.reloads,
                "events": len(expected), "connects": self.connects, "resumes": self.resumes,
                "stage": self.stage, "last": self.last}


async def sockets(urls: list[str], room: int, count: int) -> None:
    watchers = [Watcher(i, urls, room) for i in range(count)]
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        tasks: list[asyncio.Task[None]] = []
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if not line or line == "quit":
                break
            command, _, arg = line.partition(" ")
            t0 = time.monotonic()
            if command == "connect":
                tasks = [asyncio.ensure_future(w.run(http)) for w in watchers]
                ready = await _all_ready(watchers, 180)
                _emit("connected", {"ready": ready, "seconds": time.monotonic() - t0})
            elif command == "drop":
                for w in watchers:
                    w.paused = True
                await asyncio.gather(*(w.ws.close() for w in watchers if w.ws is not None),
                                     return_exceptions=True)
                _emit("dropped", {"last_seqs": sorted({w.last for w in watchers})[:5]})
            elif command == "reconnect":  # every watcher at once, each with its last seq
                t0 = time.monotonic()
                for w in watchers:
                    w.ready.clear()
                    w.paused = False
                    w.wake.set()
                ready = await _all_ready(watchers, 180)
                times = sorted(w.ready_at - t0 for w in watchers if w.ready.is_set())
                slowest = sorted(watchers, key=lambda w: -w.ready_at if w.ready.is_set() else
                                 -float("inf"))[:3]
                _emit("reconnected", {"ready": ready, "seconds": time.monotonic() - t0,
                                      "p50": times[len(times) // 2] if times else None,
                                      "max": times[-1] if times else None,
                                      "slowest": [[round(w.ready_at - t0, 1), w.connects,
                                                   w.stage] for w in slowest]})
            elif command == "report":
                head = int(arg)
                await _all_ready(watchers, 60)
                checks = [w.check(head) for w in watchers]
                bad = [c for c in checks if not c["ok"]]
                _emit("report", {"clients": len(checks), "ok": len(checks) - len(bad),
                                 "bad": bad[:5], "events": checks[0]["events"] if checks else 0,
                                 "connects": sum(c["connects"] for c in checks),
                                 "resumes": sum(c["resumes"] for c in checks),
                                 "refusals": sum(len(w.refusals) for w in watchers)})
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _all_ready(watchers: list[Watcher], timeout_s: float) -> int:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in watchers)), timeout_s)
    return sum(w.ready.is_set() for w in watchers)


def main() -> None:
    import uvloop

    if sys.argv[1] == "buyers":
        job = json.loads(sys.stdin.readline())
        result = uvloop.run(Buyers(job).run())
        # Megabytes of figures: through a file, a pipe write of that size may come out partial.
        Path(job["result_path"]).write_text(json.dumps(result))
        _emit("R", job["result_path"])
    elif sys.argv[1] == "sockets":
        uvloop.run(sockets(sys.argv[2].split(","), int(sys.argv[3]), int(sys.argv[4])))


if __name__ == "__main__":
    main()
