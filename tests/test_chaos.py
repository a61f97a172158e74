"""The chaos soak of bench/chaos.py at a modest size: every fault once, every invariant asserted.

Real processes throughout: two `python -m server serve`, a redis-server with AOF that is
restarted mid-sale, PostgreSQL whose backends are terminated, buyer and Socket.IO watcher
processes. Full size (10^6 attempts, 10,000 buyers, 2,000 sockets) is run by hand.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from bench.chaos import ChaosConfig, render, run
from server.commerce_keys import checkout_key
from server.realtime_component import hub_key
from tests.commerce_support import bulk_buyers, hold, make_shop, pay
from tests.conftest import Api
from tests.realtime_support import connect, make_room


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


async def test_a_retried_sale_creation_with_its_key_opens_one_sale(any_db_api: Api) -> None:
    """A host's retry after a lost answer (the soak made a second sale, twice the stock)."""
    api = any_db_api
    shop = await make_shop(api)
    body = {"product_id": shop.product_id, "stock": 40, "price_fen": 1000, "per_buyer_limit": 2}
    url = f"/api/sessions/{shop.session_id}/sales"

    async def create(key: str, product_id: int | None = None) -> tuple[int, dict[str, Any]]:
        headers = {**api.auth(shop.host_token), "Idempotency-Key": key}
        resp = await api.client.post(url, json={**body, "product_id": product_id or body["product_id"]},
                                     headers=headers)
        return resp.status, dict(await resp.json())

    together = await asyncio.gather(*(create("open-loquats") for _ in range(4)))
    made = {b["id"] for status, b in together if status == 201}
    assert len(made) == 1, together
    assert all(s == 201 or b["error"]["code"] == "conflict" for s, b in together), together
    status, again = await create("open-loquats")
    assert status == 201 and again["id"] in made and again["initial"] == 40
    # A new key is a new sale: of another product (one product sells once at a time here).
    status, other = await create("open-olive-oil", await shop.new_product("初榨橄榄油"))
    assert status == 201 and other["id"] not in made
    resp = await api.client.get(url)
    assert sorted(s["id"] for s in await resp.json()) == sorted([*made, other["id"]])


async def test_a_gap_whose_history_read_fails_is_filled_later_not_skipped(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The listener misses an event, and the read that would fill the hole fails (Redis is
    restarting): the event must still reach the room's members, late but in order, once."""
    room = await make_room(api)
    hub = api.app[hub_key]
    viewer = await connect(room.url, "/live", {"session_id": room.session_id})
    try:
        await viewer.wait(lambda: viewer.of("state"))
        real_on_message, lost = hub.on_message, []

        def lossy(raw: bytes) -> None:
            if not lost and b'"t":"ev"' in raw:
                lost.append(raw)  # as if pub/sub had dropped it
                return
            real_on_message(raw)

        monkeypatch.setattr(hub, "on_message", lossy)
        failures = [1]
        monkeypatch.setattr(hub.history, "between", await _flaky(hub.history.between, failures))

        def comment(text: str) -> dict[str, Any]:
            return {"ev": "comment", "id": text, "user": {"id": 1, "name": "邻居", "role": "viewer"},
                    "text": text, "ts": 0}

        first = await hub.history.append(room.session_id, comment("lost on the way"))
        second = await hub.history.append(room.session_id, comment("next"))
        await viewer.wait(lambda: len(viewer.comments()) >= 2, timeout=10)
        await asyncio.sleep(0.3)
        assert lost and failures == [0]
        assert [c["seq"] for c in viewer.comments()] == [first.last_seq, second.last_seq]
    finally:
        await viewer.close()


async def test_a_hold_swept_while_its_payment_was_on_the_way_is_refunded(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under load the payment outlived the hold, the sweeper returned it, confirm found nothing:
    the buyer was answered 404 and the money was never given back. Now: refunded, "expired"."""
    shop = await make_shop(api)
    sale = await shop.sale(stock=5, price_fen=1000)
    ((_uid, token),) = await bulk_buyers(api, 1)
    status, held = await hold(api, sale["id"], token)
    assert status == 201, held
    checkout = api.app[checkout_key]
    provider = checkout.provider
    real_verify, real_refund = provider.verify_callback, provider.refund
    refunds: list[tuple[str, int, str]] = []

    async def late_verify(data: dict[str, Any]) -> Any:
        callback = await real_verify(data)
        # The sweeper's run, a minute later: the hold has lapsed and goes back to stock.
        await checkout.store.expire(sale["id"], now=int(time.time() * 1000) + 3_600_000)
        return callback

    async def spy_refund(ref: str, amount: int, reason: str, idempotency_key: str) -> str:
        refunds.append((ref, amount, reason))
        return str(await real_refund(ref, amount, reason, idempotency_key))

    monkeypatch.setattr(provider, "verify_callback", late_verify)
    monkeypatch.setattr(provider, "refund", spy_refund)
    status, body = await pay(api, held["hold_id"], token)
    assert status == 409 and body["error"]["code"] == "hold_expired", body
    assert [(amount, reason) for _ref, amount, reason in refunds] == [(1000, "hold gone")]
    counts = await checkout.store.counts(sale["id"])
    assert counts is not None and counts.sold == 0 and counts.remaining == 5
