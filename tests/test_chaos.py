"""The chaos soak of bench/chaos.py at a modest size: every fault once, every invariant asserted.

Real processes throughout: two `python -m server serve`, a redis-server with AOF that is
restarted mid-sale, PostgreSQL whose backends are terminated, buyer and Socket.IO watcher
processes. Full size (10^6 attempts, 10,000 buyers, 2,000 sockets) is run by hand.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from bench.chaos import ChaosConfig, render, run
from server.realtime_component import hub_key
from tests.conftest import Api
from tests.realtime_support import make_room


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(600)
async def test_chaos_soak_keeps_every_invariant(tmp_path: Path, postgres_admin_url: str) -> None:
    cfg = ChaosConfig(attempts=20_000, buyers=500, sockets=200, sales=4, concurrency=120,
                      load_procs=2, database="postgres", pg_admin_url=postgres_admin_url,
                      workdir=tmp_path, seed=8)
    figures = await run(cfg)
    print(render(figures))
    assert not figures.failures, render(figures)
    assert [f["fault"] for f in figures.faults] == ["app_kill", "redis_restart", "db_drop",
                                                    "sockets"]
    assert figures.load["attempts"] == cfg.attempts and figures.load["unanswered"] == 0
    assert figures.load["paid"] > 0 and figures.load["released"] > 0
    assert figures.load["left_to_expire"] > 0
    assert len(figures.sales) == cfg.sales and all(s["ok"] for s in figures.sales)
    for sale in figures.sales:
        assert sale["initial"] == sale["remaining"] + sale["held"] + sale["sold"]
        assert sale["sold"] == sale["sql_sold"] <= sale["initial"]
    assert figures.orders["sql_orders"] == figures.orders["redis_confirmations"]
    assert figures.sockets["recovered_exactly"] == cfg.sockets
    assert figures.sockets["mass_reconnect"]["ready"] == cfg.sockets
    assert figures.sockets["mass_reconnect"]["missed_at_least"] >= cfg.missed_events // 2
    assert figures.reconcile["exit_code"] == 0


# --- what the soak found, pinned down one fault at a time ---------------------------------------
# A viewer must never be left connected to nothing: when a dependency fails while a socket joins,
# the transport is closed (socket.io-client then reconnects and resumes by itself), never the
# namespace ("41": socket.io-client takes it as final, as for a ban) and never silence.

async def _raw_join(api: Api, session_id: int) -> aiohttp.ClientWebSocketResponse:
    ws = await api.client.ws_connect("/socket.io/?EIO=4&transport=websocket")
    opened = await ws.receive(timeout=5)
    assert opened.type == aiohttp.WSMsgType.TEXT and opened.data.startswith("0"), opened
    await ws.send_str("40/live," + json.dumps({"session_id": session_id}))
    return ws


async def _outcome(ws: aiohttp.ClientWebSocketResponse) -> str:
    """"closed", or the first Socket.IO packet other than the namespace ack ("41/live" ...)."""
    while True:
        msg = await ws.receive(timeout=10)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                        aiohttp.WSMsgType.CLOSING):
            return "closed"
        if msg.data == "1":  # Engine.IO "close": the transport goes
            return "closed"
        if msg.data == "2":
            await ws.send_str("3")
        elif not msg.data.startswith("40/live"):
            return str(msg.data)[:60]


async def _flaky(real: Callable[..., Awaitable[Any]], failures: list[int],
                 delay_s: float = 0.0) -> Callable[..., Awaitable[Any]]:
    async def call(*args: Any) -> Any:
        if failures[0] > 0:
            failures[0] -= 1
            await asyncio.sleep(delay_s)
            raise RedisConnectionError("injected: Redis is restarting")
        return await real(*args)
    return call


async def test_a_join_failing_on_redis_closes_the_transport(api: Api,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    room = await make_room(api)
    history = api.app[hub_key].history
    failures = [1]
    monkeypatch.setattr(history, "position", await _flaky(history.position, failures))
    ws = await _raw_join(api, room.session_id)
    assert await _outcome(ws) == "closed"
    assert failures == [0]
    again = await _raw_join(api, room.session_id)  # the fault is over: the retry joins
    assert (await _outcome(again)).startswith('42/live,["hello"')
    await again.close()


async def test_a_connect_failing_on_the_database_closes_the_transport(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from realtime import live_namespace

    room = await make_room(api)
    failures = [1]
    monkeypatch.setattr(live_namespace.live_sessions, "get_session",
                        await _flaky(live_namespace.live_sessions.get_session, failures))
    ws = await _raw_join(api, room.session_id)
    assert await _outcome(ws) == "closed"  # was: no answer at all, forever
    again = await _raw_join(api, room.session_id)
    assert (await _outcome(again)).startswith('42/live,["hello"')
    await again.close()


async def test_joiners_waiting_on_a_room_that_failed_to_start_are_not_left_waiting(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    room = await make_room(api)
    history = api.app[hub_key].history
    failures = [1]
    monkeypatch.setattr(history, "start_room", await _flaky(history.start_room, failures, 0.5))
    first = await _raw_join(api, room.session_id)
    await asyncio.sleep(0.1)  # the room is starting: the second joiner waits for it
    second = await _raw_join(api, room.session_id)
    outcomes = await asyncio.gather(_outcome(first), _outcome(second))
    assert outcomes[0] == "closed"
    # The waiter starts the room itself once the first start failed.
    assert outcomes[1].startswith('42/live,["hello"'), outcomes
    await second.close()
