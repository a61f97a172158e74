"""Two nodes: two `python -m server serve` processes on different ports, each with its own data
dir, sharing one Redis and one PostgreSQL database. Real aiortc peers, ffmpeg, Socket.IO.

Guards against: node B answering WHEP 409 / live HLS 404 for a stream published on node A, a
comment on one node not reaching the other, ending on B leaving A's publisher and recording
running, B listing a replay it cannot serve (404, or a copy of its own), and flash-sale holds
taken through both nodes overselling."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from tests.cluster_support import (
    PROCESS_HEADER,
    admin_token,
    fresh,
    new_session,
    owner,
    publish,
    segments,
    user,
    wait_closed,
    wait_playlist,
    wait_replay,
    workers,
)
from tests.conftest import _fresh_pg_database
from tests.realtime_support import connect
from tests.server_process import ServerProcess
from tests.webrtc_clients import view, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]


@pytest.fixture
async def nodes(tmp_path: Path, redis_url: str, redis_client: Redis,
                postgres_admin_url: str) -> AsyncIterator[tuple[ServerProcess, ServerProcess]]:
    database = await _fresh_pg_database(postgres_admin_url)
    env = {"LINLI_RTMP_PORT": "-1", "LINLI_PUBLISHER_GRACE_S": "5"}
    a = ServerProcess(tmp_path / "a", redis_url, database, extra_env=env)
    b = ServerProcess(tmp_path / "b", redis_url, database, extra_env=env)
    b.secret, b.env["LINLI_SECRET_KEY"] = a.secret, a.secret  # one cluster, one secret
    await asyncio.to_thread(a.start)  # migrates first
    try:
        await asyncio.to_thread(b.start)
        await workers(redis_client, 2)
        yield a, b
    finally:
        await asyncio.to_thread(a.stop)
        await asyncio.to_thread(b.stop)


async def test_publish_on_a_watch_comment_end_and_replay_on_b(
        nodes: tuple[ServerProcess, ServerProcess], redis_client: Redis) -> None:
    a, b = nodes
    async with fresh(a.url) as on_a, fresh(b.url) as on_b:
        admin = await admin_token(on_a)
        host_token = await user(on_a, admin, "host", "host_" + secrets.token_hex(3))
        viewer_token = await user(on_b, admin, "viewer", "viewer_" + secrets.token_hex(3))
        host = await new_session(on_a, host_token, "两个节点")
        publisher = await publish(on_a, host)
        viewer = None
        watcher_a = await connect(a.url, "/live", {"session_id": host.session_id, "token": host_token})
        talker_b = await connect(b.url, "/live", {"session_id": host.session_id, "token": viewer_token})
        try:
            assert await owner(redis_client, host.session_id) == publisher.process
            # WHEP and live HLS through B, served by A
            viewer = await view(on_b, host.session_id)
            assert viewer.status == 201, viewer.body
            assert await wait_for(lambda: viewer is not None and viewer.got.video_frames >= 10, 30)
            live = await wait_playlist(on_b, host.session_id, lambda t: segments(t) >= 2)
            first = next(line for line in live.splitlines() if line.endswith(".ts"))
            async with on_b.get(f"/hls/{host.session_id}/{first}") as resp:
                assert resp.status == 200 and len(await resp.read()) > 1000
                assert resp.headers[PROCESS_HEADER] == publisher.process
            # a comment on B reaches A
            await watcher_a.wait(lambda: watcher_a.of("state"))
            ack = await talker_b.call("comment", {"text": "B 节点的评论"})
            assert ack["ok"], ack
            await watcher_a.wait(lambda: [c for c in watcher_a.comments() if c["text"] == "B 节点的评论"])
            # ending on B stops A's publisher and recording
            async with on_b.post(f"/api/sessions/{host.session_id}/end",
                                 headers={"Authorization": f"Bearer {host_token}"}) as resp:
                assert resp.status == 200, await resp.text()
                assert resp.headers[PROCESS_HEADER] != publisher.process
            assert await wait_closed(publisher.pc), "A's publisher kept streaming"
            final = await wait_playlist(on_a, host.session_id, lambda t: "#EXT-X-ENDLIST" in t, 20)
            # the replay: listed by B and served by B from A's files (B holds none of its own)
            replay = await wait_replay(on_b, host.session_id)
            assert replay["status"] == "ready", replay
            recorded = sum(float(line.split(":")[1].rstrip(",")) for line in final.splitlines()
                           if line.startswith("#EXTINF"))
            assert abs(replay["duration_s"] - recorded) < 1.0
            async with on_b.get(replay["hls"]) as resp:
                assert resp.status == 200, await resp.text()
                vod = await resp.text()
            part = next(line for line in vod.splitlines() if line.endswith(".ts"))
            async with on_b.get(f"/replays/{host.session_id}/{part}") as resp:
                assert resp.status == 200 and len(await resp.read()) > 1000
            async with on_b.get("/api/replays") as resp:
                assert host.session_id in [r["session_id"] for r in (await resp.json())["items"]]
            assert not (b.data_dir / "media" / str(host.session_id)).exists()
        finally:
            if viewer is not None:
                await viewer.close()
            await publisher.pc.close()
            await watcher_a.close()
            await talker_b.close()


async def test_flash_sale_holds_on_both_nodes_add_up(
        nodes: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = nodes
    stock, buyers = 30, 40
    async with aiohttp.ClientSession(a.url) as on_a, aiohttp.ClientSession(b.url) as on_b:
        admin = await admin_token(on_a)
        host_token = await user(on_a, admin, "host", "host_" + secrets.token_hex(3))
        auth = {"Authorization": f"Bearer {host_token}"}
        host = await new_session(on_a, host_token, "抢购")
        async with on_a.post("/api/products", json={"name": "枇杷", "price_fen": 6800},
                             headers=auth) as resp:
            product = (await resp.json())["id"]
        async with on_b.post(f"/api/sessions/{host.session_id}/sales", headers=auth, json={
                "product_id": product, "stock": stock, "price_fen": 6800, "per_buyer_limit": 1}) as resp:
            assert resp.status == 201, await resp.text()
            sale = (await resp.json())["id"]
        tokens = await asyncio.gather(*(
            user(on_a if i % 2 else on_b, admin, "viewer", f"buyer{i}_{secrets.token_hex(3)}")
            for i in range(buyers)))

        async def hold(http: aiohttp.ClientSession, token: str) -> int:
            async with http.post(f"/api/sales/{sale}/holds", json={"qty": 1}, headers={
                    "Authorization": f"Bearer {token}", "Idempotency-Key": secrets.token_hex(8)}) as resp:
                await resp.read()
                return resp.status

        statuses = await asyncio.gather(*(hold(on_a if i % 2 else on_b, t)
                                          for i, t in enumerate(tokens)))
        assert statuses.count(201) == stock and statuses.count(409) == buyers - stock, statuses
        for http in (on_a, on_b):
            async with http.get(f"/api/sales/{sale}") as resp:
                body = await resp.json()
            assert body["held"] == stock and body["remaining"] == 0, body
