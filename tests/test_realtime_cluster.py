"""Several app processes share rooms through Redis; a dead or deaf pub/sub listener is noticed and
nothing is lost. Two real `python -m server serve` processes on loopback, one real redis-server."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from realtime.hub import CHANNEL
from server.realtime_component import hub_key
from tests.conftest import ADMIN_PASSWORD, Api
from tests.realtime_support import connect, make_room

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve"], cwd=ROOT,
            env={**env, "PORT": str(self.port)}, stdout=self._log, stderr=subprocess.STDOUT)

    async def ready(self) -> None:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                if self.proc.poll() is not None:
                    raise AssertionError(f"server exited: {self._log.name}")
                try:
                    async with http.get(self.url + "/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError("server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


@pytest.fixture
def cluster_env(tmp_path: Path, redis_url: str) -> Iterator[dict[str, str]]:
    yield {**os.environ, "REDIS_URL": redis_url, "DATABASE_URL": f"sqlite:///{tmp_path}/shared.db",
           "LINLI_DEMO": "0", "LINLI_ADMIN_PASSWORD": ADMIN_PASSWORD,
           "LINLI_SECRET_KEY": secrets.token_urlsafe(40), "LINLI_DATA_DIR": str(tmp_path / "var"),
           "HOST": "127.0.0.1", "LINLI_LOG_LEVEL": "WARNING"}


@pytest.fixture
async def two_processes(cluster_env: dict[str, str], tmp_path: Path,
                        redis_client: Redis) -> AsyncIterator[tuple[Process, Process]]:
    first = Process(cluster_env, tmp_path / "a.log")
    second: Process | None = None
    try:
        await first.ready()  # migrations run once, before the second starts
        second = Process(cluster_env, tmp_path / "b.log")
        await second.ready()
        yield first, second
    finally:
        first.stop()
        if second is not None:
            second.stop()


async def _setup(base: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession(base) as http:
        async with http.post("/api/auth/token", json={"username": "admin",
                                                      "password": ADMIN_PASSWORD}) as resp:
            admin = (await resp.json())["token"]
        tokens = []
        for role in ("host", "viewer"):
            name = f"{role}_{secrets.token_hex(4)}"
            async with http.post("/api/users", json={"username": name, "password": "password-" + name,
                                                     "role": role},
                                 headers={"Authorization": f"Bearer {admin}"}) as resp:
                assert resp.status == 201, await resp.text()
            async with http.post("/api/auth/token", json={"username": name,
                                                          "password": "password-" + name}) as resp:
                tokens.append((await resp.json())["token"])
        async with http.post("/api/sessions", json={"title": "两个进程"},
                             headers={"Authorization": f"Bearer {tokens[0]}"}) as resp:
            session_id = (await resp.json())["id"]
    return session_id, tokens[0], tokens[1]


async def _metric(base: str, name: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_two_processes_share_a_room_and_survive_a_killed_listener(
        two_processes: tuple[Process, Process], redis_client: Redis) -> None:
    a, b = two_processes
    session_id, host, viewer = await _setup(a.url)
    sender = await connect(a.url, "/live", {"session_id": session_id, "token": host})
    watcher = await connect(b.url, "/live", {"session_id": session_id, "token": viewer})
    try:
        await watcher.wait(lambda: watcher.of("state"))
        ack = await sender.call("comment", {"text": "A 说话,B 听见"})
        assert ack["ok"], ack
        got = await watcher.wait(lambda: watcher.comments())
        assert got[0]["text"] == "A 说话,B 听见"
        # the viewer count covers both processes
        await watcher.wait(lambda: [s for s in watcher.of("state") if s["viewers"] == 2], timeout=8)
        connects_before = await _metric(b.url, "linli_realtime_listener_connects_total")

        # kill every pub/sub connection (both processes' listeners), then talk at once:
        # what is published while B's listener is away must still reach B, in order
        killed = await redis_client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        assert int(killed) >= 2
        for i in range(3):  # (the host's own rate limit is 5 per 10 s)
            assert (await sender.call("comment", {"text": f"断线{i}"}))["ok"]
        want = ["A 说话,B 听见"] + [f"断线{i}" for i in range(3)]
        await watcher.wait(lambda: [c["text"] for c in watcher.comments()] == want, timeout=10)
        seqs = [c["seq"] for c in watcher.comments()]
        assert seqs == list(range(seqs[0], seqs[0] + 4))
        assert await _metric(b.url, "linli_realtime_gap_fills_total") >= 1  # recovered from the stream
        # the listener came back (redis-py resubscribes by itself; otherwise the watchdog would
        # restart it): later events flow live again, both processes are subscribed
        assert await _metric(b.url, "linli_realtime_listener_connects_total") >= connects_before
        assert (await sender.call("comment", {"text": "恢复了"}))["ok"]
        await watcher.wait(lambda: watcher.comments()[-1]["text"] == "恢复了", timeout=5)
        await asyncio.sleep(0.5)
        subscribers = await redis_client.pubsub_numsub(CHANNEL)
        assert subscribers[0][1] == 2  # one each: replaced subscriptions were closed, not leaked
    finally:
        await sender.close()
        await watcher.close()


async def test_watchdog_restarts_a_dead_listener(api: Api) -> None:
    """python-socketio #1581: the listener task ends for good while the process keeps serving
    sockets. The watchdog notices (task ended / own heartbeat not heard), restarts it, says so."""
    hub = api.app[hub_key]
    room = await make_room(api)
    viewer = await connect(room.url, "/live", {"session_id": room.session_id, "token": room.viewer})
    sender = await connect(room.url, "/live", {"session_id": room.session_id, "token": room.host})
    try:
        await viewer.wait(lambda: viewer.of("state"))
        hub.manager.thread.cancel()  # the listener is gone; nothing else notices
        await asyncio.sleep(0.1)
        assert (await sender.call("comment", {"text": "有人吗"}))["ok"]
        # delivered anyway (the head check fills the hole within a second) ...
        await viewer.wait(lambda: viewer.comments(), timeout=5)
        # ... and the listener is replaced
        for _ in range(50):
            if hub.listener_restarts:
                break
            await asyncio.sleep(0.1)
        assert hub.listener_restarts == 1
        resp = await api.client.get("/metrics")
        assert "linli_realtime_listener_restarts_total 1.0" in await resp.text()
        assert (await sender.call("comment", {"text": "又能听见了"}))["ok"]
        await viewer.wait(lambda: viewer.comments()[-1]["text"] == "又能听见了", timeout=5)
        assert not hub.manager.thread.done()
    finally:
        await viewer.close()
        await sender.close()


async def test_a_listener_restart_can_be_cancelled(api: Api) -> None:
    """Shutdown cancels the watchdog; if that lands while it is replacing the listener, the
    cancellation must stop it (it once swallowed it and kept the app's shutdown waiting)."""
    hub = api.app[hub_key]
    restart = asyncio.ensure_future(hub.restart_listener("test"))
    await asyncio.sleep(0)  # now waiting for the old listener to finish
    restart.cancel()
    done, _ = await asyncio.wait({restart}, timeout=5)
    assert done and restart.cancelled()
