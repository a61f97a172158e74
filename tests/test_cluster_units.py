"""The cluster's pieces against a real Redis and the in-process app: leases, the event bus,
forwarding marks, Engine.IO ids, and the python-engineio internal the ids rely on."""

from __future__ import annotations

import asyncio
import time
import zlib
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


async def test_bus_delivers_each_event_once_to_every_process_in_order(redis_client: Redis) -> None:
    stream = f"linli:test:events:{time.monotonic_ns()}"
    locals_ = [EventBus() for _ in range(3)]
    buses = [ClusterBus(redis_client, f"p{i}", ["session_ended"], stream) for i in range(3)]
    heard: list[list[tuple[int | None, int, bool]]] = [[] for _ in range(3)]
    for i, (bus, local) in enumerate(zip(buses, locals_, strict=True)):
        bus.attach(local)

        async def on(event: DomainEvent, i: int = i) -> None:
            heard[i].append((event.session_id, event.data["n"], "origin" in event.data))

        bus.subscribe(on, ["session_ended"])
        await bus.start()
    try:
        # sessions 0, 1, 2 each published by their own process, interleaved
        for n in range(12):
            await locals_[n % 3].publish(DomainEvent("session_ended", n % 3, {"n": n}))
        await locals_[0].publish(DomainEvent("stock_changed", 99, {"n": -1}))  # not carried
        for _ in range(100):
            if all(len(h) == 12 for h in heard):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        for i in range(3):
            assert len(heard[i]) == 12  # once each
            for session in range(3):
                ns = [n for sid, n, _ in heard[i] if sid == session]
                assert ns == [n for n in range(12) if n % 3 == session]  # in order per session
            # this process's own events at once (no origin), the others' from the stream
            assert all(remote == (sid != i) for sid, _, remote in heard[i])
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


@pytest.mark.parametrize("path", ["/whep/1", "/hls/1/index.m3u8", "/api/sessions/1"])
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
