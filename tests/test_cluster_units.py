"""The cluster's pieces against a real Redis and the in-process app: leases, the event bus,
forwarding marks, Engine.IO ids, and the python-engineio internal the ids rely on."""

from __future__ import annotations

import asyncio
import time
import zlib
from datetime import UTC, datetime
from typing import Any

import aiohttp
import engineio
import pytest
from aiohttp import web
from redis.asyncio import Redis

from cluster.bus import ClusterBus
from cluster.engineio_sids import process_of, tag_session_ids
from cluster.forward import HEADER, Forwarder, Signer
from cluster.lease import Leases
from cluster.media_owners import MediaOwners
from commerce.event_payloads import SessionEnded, StockChanged, StreamStarted, TokenRevoked
from commerce.events import DomainEvent, EventBus
from server.cluster_keys import cluster_key
from server.realtime_component import hub_key
from tests.conftest import Api
from tests.realtime_support import connect, make_room


async def test_owner_lease_one_holder_renew_and_take_over(redis_client: Redis) -> None:
    a = MediaOwners(redis_client, "pa", "n1", 2_000)
    b = MediaOwners(redis_client, "pb", "n2", 2_000)
    # 20 processes claiming the same session at once: exactly one owns it
    claims = await asyncio.gather(*(MediaOwners(redis_client, f"p{i}", "n", 2_000).claim(7)
                                    for i in range(20)))
    assert len(set(claims)) == 1
    await redis_client.delete(MediaOwners.owner_key(7))
    assert await a.claim(1) == "pa"
    assert await b.claim(1) == "pa"  # refused: a holds it
    assert not await b.renew(1) and await a.renew(1)
    await b.release(1)  # not b's: nothing happens
    assert await a.owner(1) == "pa"
    assert await b.take_over(1, "pa") == "pb"  # a died
    assert not await a.renew(1)  # a, come back from a pause, cannot extend b's lease
    record = await b.record(1)
    assert record is not None and (record.process_id, record.node_id) == ("pb", "n2")


async def test_cluster_lock_serialises_holders(redis_client: Redis) -> None:
    inside: list[str] = []
    overlap = False

    async def hold(name: str) -> None:
        nonlocal overlap
        async with Leases(redis_client, name).hold("linli:test:lock", 1_000, poll_s=0.02):
            overlap = overlap or bool(inside)
            inside.append(name)
            await asyncio.sleep(0.05)
            inside.remove(name)

    await asyncio.gather(*(hold(f"h{i}") for i in range(5)))
    assert not overlap


CARRIED = ("stream_started", "session_ended", "token_revoked")


async def test_bus_carries_each_kind_once_to_every_process_in_one_order(
        redis_client: Redis) -> None:
    stream = f"linli:test:events:{time.monotonic_ns()}"
    locals_ = [EventBus() for _ in range(3)]
    buses = [ClusterBus(redis_client, f"p{i}", CARRIED, stream) for i in range(3)]
    heard: list[list[DomainEvent]] = [[] for _ in range(3)]
    for i, (bus, local) in enumerate(zip(buses, locals_, strict=True)):
        bus.attach(local)

        async def on(event: DomainEvent, i: int = i) -> None:
            heard[i].append(event)

        bus.subscribe(on, CARRIED)
        await bus.start()

    async def run_session(session: int) -> None:
        """Session `session` lives in process session % 3: started, a host revoked, ended."""
        local = locals_[session % 3]
        await local.publish(DomainEvent("stream_started", session, StreamStarted(ingest="whip")))
        await local.publish(DomainEvent("token_revoked", None,
                                        TokenRevoked(user_id=session, cutoff=float(session))))
        ended_at = datetime(2026, 11, 22, 9, 0, session, tzinfo=UTC)
        await local.publish(DomainEvent("session_ended", session, SessionEnded(ended_at=ended_at)))

    try:
        # Nine sessions at once across the three processes, and an uncarried kind besides.
        await asyncio.gather(*(run_session(s) for s in range(9)))
        await locals_[0].publish(DomainEvent("stock_changed", 99, StockChanged(
            sale_id=1, remaining=1, held=0, sold=0, gift_left=0, ver=1)))
        # An entry of a payload version nobody here knows (a newer process): skipped, by name.
        await redis_client.xadd(stream, {"origin": "p-new", "kind": "session_ended",
                                         "session": "99", "payload": '{"v": 2, "ended_at": null}'})
        await locals_[1].publish(DomainEvent("session_ended", 100, SessionEnded(ended_at=None)))
        for _ in range(100):
            if all(len(h) == 9 * 3 + 1 for h in heard):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        order = [[(e.kind, e.session_id, e.payload) for e in h] for h in heard]
        for i in range(3):
            assert len(order[i]) == 9 * 3 + 1 and len(set(order[i])) == len(order[i])  # once each
            # The same order in every process: the stream's.
            assert order[i] == order[0]
            for session in range(9):
                kinds = [kind for kind, sid, _ in order[i] if sid == session]
                assert kinds == ["stream_started", "session_ended"]
            revoked = [p for kind, _, p in order[i] if kind == "token_revoked"]
            assert sorted(p.user_id for p in revoked if isinstance(p, TokenRevoked)) == list(range(9))
            for event in heard[i]:
                # Typed on arrival; this process's own are the very objects it published.
                assert isinstance(event.payload, (StreamStarted, SessionEnded, TokenRevoked))
                own = event.session_id is not None and event.session_id % 3 == i
                if event.kind != "token_revoked":
                    assert (event.origin is None) == own
            ended = [e.payload for e in heard[i] if isinstance(e.payload, SessionEnded)]
            assert all(p.ended_at is None or p.ended_at.tzinfo is not None for p in ended)
            assert buses[i].unreadable == 1
    finally:
        for bus in buses:
            await bus.stop()


async def test_bus_without_its_reader_still_hands_events_on_here(redis_client: Redis) -> None:
    """Before start and after stop (and on Redis errors) the local subscribers are not left
    waiting for an entry no reader will bring back."""
    stream = f"linli:test:events:{time.monotonic_ns()}"
    local, bus = EventBus(), ClusterBus(redis_client, "p0", CARRIED, stream)
    bus.attach(local)
    heard: list[DomainEvent] = []

    async def on(event: DomainEvent) -> None:
        heard.append(event)

    bus.subscribe(on, ["session_ended"])
    ended = DomainEvent("session_ended", 1, SessionEnded(ended_at=None))
    await asyncio.wait_for(local.publish(ended), 2)
    await bus.start()
    await bus.stop()
    await asyncio.wait_for(local.publish(ended), 2)
    assert heard == [ended, ended]
    with pytest.raises(ValueError, match="not carried"):
        bus.subscribe(on, ["stock_changed"])


async def test_bus_publish_waits_for_its_subscribers_and_never_hands_on_twice(
        redis_client: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    import cluster.bus

    monkeypatch.setattr(cluster.bus, "OWN_ENTRY_WAIT_S", 0.2)
    stream = f"linli:test:events:{time.monotonic_ns()}"
    locals_ = [EventBus() for _ in range(2)]
    buses = [ClusterBus(redis_client, f"p{i}", CARRIED, stream) for i in range(2)]
    heard: list[tuple[int | None, float]] = []

    async def slow(event: DomainEvent) -> None:
        await asyncio.sleep(0.6)  # longer than a publish waits for the reader
        heard.append((event.session_id, time.monotonic()))

    for bus, local in zip(buses, locals_, strict=True):
        bus.attach(local)
        await bus.start()
    buses[0].subscribe(slow, ["session_ended"])
    try:
        # Its own entry: the publish returns once the slow subscriber is done, not at the wait.
        await locals_[0].publish(DomainEvent("session_ended", 1, SessionEnded(ended_at=None)))
        assert [sid for sid, _ in heard] == [1]
        # The reader busy with another process's entry: this process's next event is handed on
        # by the publish itself, and the reader, reaching it later, does not hand it on again.
        await locals_[1].publish(DomainEvent("session_ended", 2, SessionEnded(ended_at=None)))
        await asyncio.sleep(0.1)  # p0's reader is now inside the slow subscriber for session 2
        await locals_[0].publish(DomainEvent("session_ended", 3, SessionEnded(ended_at=None)))
        await asyncio.sleep(1.5)
        assert sorted(sid for sid, _ in heard) == [1, 2, 3]
    finally:
        for bus in buses:
            await bus.stop()


def test_forward_mark_is_bound_to_secret_request_and_time() -> None:
    signer = Signer("s" * 40, "pa")
    mark = signer.sign("POST", "/whep/1", "203.0.113.9")
    assert signer.verify(mark, "POST", "/whep/1") == "203.0.113.9"
    assert signer.verify(mark, "POST", "/whep/2") is None
    assert signer.verify(mark, "DELETE", "/whep/1") is None
    assert Signer("t" * 40, "pa").verify(mark, "POST", "/whep/1") is None
    stamp, rest = mark.split(".", 1)
    assert signer.verify(f"{int(stamp) - 3600}.{rest}", "POST", "/whep/1") is None


async def test_a_forged_forwarding_mark_is_refused(api: Api) -> None:
    """From outside, the mark would skip forwarding and stand for any client address."""
    resp = await api.client.post("/whep/1", data="v=0", headers={HEADER: "1.pa.eA.bad"})
    assert resp.status == 403
    resp = await api.client.get("/hls/1/index.m3u8", headers={HEADER: "garbage"})
    assert resp.status == 403


def test_python_engineio_makes_ids_with_generate_id() -> None:
    """cluster/engineio_sids.py wraps python-engineio's `generate_id`: if python-engineio stops
    calling it for new sessions, long-polling across processes breaks."""
    server = engineio.AsyncServer(async_mode="aiohttp")
    assert callable(getattr(server, "generate_id", None)), \
        "python-engineio no longer has AsyncServer.generate_id: fix cluster/engineio_sids.py"
    tag_session_ids(server, "pabc")
    sid = server.generate_id()
    assert process_of(sid) == "pabc" and len(sid) > 10
    assert process_of("plain-sid") is None
    import inspect

    source = inspect.getsource(engineio.AsyncServer._handle_connect)
    assert "self.generate_id()" in source, \
        "python-engineio's _handle_connect no longer calls generate_id(): fix cluster/engineio_sids.py"


async def test_socket_ids_name_this_process(api: Api) -> None:
    room = await make_room(api)
    client = await connect(room.url, "/live", {"session_id": room.session_id}, transports=["polling"])
    try:
        await client.wait(lambda: client.of("state"))
        sid = client.client.eio.sid
        assert process_of(sid) == api.app[cluster_key].me.process_id
        assert sid in api.app[hub_key].sio.eio.sockets
    finally:
        await client.close()


@pytest.mark.parametrize("path", ["/whep/1", "/hls/1/index.m3u8", "/hls/1/360p/index.m3u8",
                                  "/api/sessions/1"])
async def test_single_process_answers_itself(api: Api, path: str) -> None:
    resp = await api.client.get(path)
    assert "X-Linli-Via" not in resp.headers
    assert resp.headers["X-Linli-Process"] == api.app[cluster_key].me.process_id


@pytest.mark.parametrize("accept", [None, "gzip"])
async def test_a_forwarded_answer_is_encoded_as_the_client_asked(
        aiohttp_server: Any, accept: str | None) -> None:
    """The socket.io JavaScript client's long-poll asks for no encoding; forwarded to the
    owner, the poll must not come back gzipped (it was, and the client read garbage)."""
    text = "轮询" * 2000

    async def owner_poll(request: web.Request) -> web.Response:
        response = web.Response(text=text)
        response.enable_compression()  # as engine.io does, when the request allows it
        return response

    owner_app = web.Application()
    owner_app.router.add_get("/poll", owner_poll)
    owner = await aiohttp_server(owner_app)
    forwarder = Forwarder(Signer("s" * 40, "pa"))

    async def front_poll(request: web.Request) -> web.StreamResponse:
        return await forwarder.forward(request, str(owner.make_url("")).rstrip("/"))

    front_app = web.Application()
    front_app.router.add_get("/poll", front_poll)
    front = await aiohttp_server(front_app)
    try:
        async with aiohttp.ClientSession(auto_decompress=False) as raw:
            headers = {"Accept-Encoding": accept} if accept else {}
            skip = () if accept else ("Accept-Encoding",)
            async with raw.get(front.make_url("/poll"), headers=headers,
                               skip_auto_headers=skip) as resp:
                body = await resp.read()
                encoding = resp.headers.get("Content-Encoding")
        if accept is None:
            assert encoding is None and body.decode() == text
        else:
            assert encoding == "gzip" and zlib.decompress(body, 47).decode() == text
    finally:
        await forwarder.close()
