"""LINLI_WORKERS=2: one `python -m server serve` whose two workers share the port (SO_REUSEPORT),
so the kernel hands each new connection to either. Real aiortc peers, ffmpeg, Redis, SQLite.

Guards against: WHEP offers landing in the worker without the stream (409 not_live), WHIP/WHEP
DELETE landing in the wrong worker (404), ending a session in the worker that does not hold
its media leaving the publisher and the recording running there, the replay being built twice
(or early, from part of the recording), and long-polling Socket.IO clients losing their session
when a poll lands in the other worker (400 "Invalid session")."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from tests import llhls_support
from tests.cluster_support import (
    PROCESS_HEADER,
    Host,
    admin_token,
    fresh,
    new_session,
    offer_sdp,
    owner,
    publish,
    segments,
    user,
    wait_closed,
    wait_playlist,
    wait_replay,
    workers,
)
from tests.conftest import IN_CI
from tests.realtime_support import connect
from tests.server_process import ServerProcess
from tests.webrtc_clients import SDP, view, wait_for

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
async def server(tmp_path: Path, redis_url: str, redis_client: Redis) -> AsyncIterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "var", redis_url, f"sqlite:///{tmp_path}/linli.db", workers=2,
                         extra_env={"LINLI_RTMP_PORT": "-1", "LINLI_WEBRTC_VIEWER_CAP": "100",
                                    "LINLI_PUBLISHER_GRACE_S": "5"})
    await asyncio.to_thread(proc.start)
    try:
        await workers(redis_client, 2)
        yield proc
    finally:
        await asyncio.to_thread(proc.stop)


def builds(db: Path, session_id: int) -> int:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT builds FROM replays WHERE session_id = ?", (session_id,)).fetchone()
    return int(row[0]) if row else 0


async def test_fifty_whep_offers_after_one_whip_publish_all_land(
        server: ServerProcess, redis_client: Redis) -> None:
    async with fresh(server.url) as http:
        admin = await admin_token(http)
        host_token = await user(http, admin, "host", "host_" + secrets.token_hex(3))
        host = await new_session(http, host_token, "两个工作进程")
        publisher = await publish(http, host)
        viewers = []
        try:
            assert await owner(redis_client, host.session_id) == publisher.process
            offer = await offer_sdp()

            async def post_offer() -> tuple[int, str, str]:
                async with http.post(f"/whep/{host.session_id}", data=offer, headers=SDP) as resp:
                    await resp.read()
                    return resp.status, resp.headers.get("Location", ""), resp.headers.get("X-Linli-Via", "")

            # Five real viewers that decode, and 45 more offers at the same moment (their
            # answers are never connected: the seat deadline frees them). 2 cores: only five play.
            viewers = list(await asyncio.gather(*(view(http, host.session_id) for _ in range(5))))
            answers = await asyncio.gather(*(post_offer() for _ in range(45)))
            statuses = [v.status for v in viewers] + [status for status, _, _ in answers]
            assert statuses == [201] * 50, [v.body for v in viewers if v.status != 201]
            # Some landed in the other worker and were forwarded to the owner.
            assert any(via for _, _, via in answers)
            assert all(loc.startswith(f"/whep/{host.session_id}/") for _, loc, _ in answers)
            for v in viewers:
                assert await wait_for(lambda v=v: v.got.video_frames >= 10, 30), v.got
            # WHEP DELETE, each on a new connection (so in either worker)
            for v in viewers:
                async with http.delete(v.location) as resp:
                    assert resp.status == 200, await resp.text()
            # WHIP DELETE on a new connection ends the session wherever it lands
            async with http.delete(publisher.location,
                                   headers={"Authorization": f"Bearer {host.key}"}) as resp:
                assert resp.status == 200, await resp.text()
            assert await wait_closed(publisher.pc)
            async with http.get(f"/api/sessions/{host.session_id}") as resp:
                assert (await resp.json())["status"] == "ended"
        finally:
            for v in viewers:
                await v.close()
            await publisher.pc.close()


async def _end_and_check(server: ServerProcess, http: aiohttp.ClientSession, redis: Redis,
                         host: Host, how: str, where: str) -> str:
    """Publish, let it record, end it `how` (rest | whip_delete) through the worker `where`
    (owner | other); the publisher and recorder stop, the replay is built exactly once."""
    publisher = await publish(http, host)
    try:
        await wait_playlist(http, host.session_id, lambda t: segments(t) >= 2)
        urls = await workers(redis, 2)
        owner_id = await owner(redis, host.session_id)
        assert owner_id == publisher.process
        target = next(p for p in urls if (p == owner_id) == (where == "owner"))
        async with aiohttp.ClientSession(urls[target]) as direct:
            if how == "rest":
                resp = await direct.post(f"/api/sessions/{host.session_id}/end",
                                         headers={"Authorization": f"Bearer {host.token}"})
            else:
                resp = await direct.delete(publisher.location,
                                           headers={"Authorization": f"Bearer {host.key}"})
            assert resp.status == 200, await resp.text()
            served = resp.headers[PROCESS_HEADER]
        # Ending over REST is answered where it lands; a WHIP DELETE that lands on a process
        # that does not own the stream is forwarded to the owner, which answers it.
        assert served == (owner_id if how == "whip_delete" else target), (how, where, served)
        assert target != owner_id if where == "other" else target == owner_id
        assert await wait_closed(publisher.pc), "the publisher kept streaming"
        final = await wait_playlist(http, host.session_id, lambda t: "#EXT-X-ENDLIST" in t, 20)
        replay = await wait_replay(http, host.session_id)
        assert replay["status"] == "ready", replay
        # the replay holds the whole recording, built once (not once per worker, not early)
        assert abs(replay["duration_s"] - sum(
            float(line.split(":")[1].rstrip(",")) for line in final.splitlines()
            if line.startswith("#EXTINF"))) < 1.0
        await asyncio.sleep(3)
        assert builds(server.data_dir.parent / "linli.db", host.session_id) == 1
        return served
    finally:
        await publisher.pc.close()


async def test_ending_from_either_worker_stops_publisher_and_recorder_once(
        server: ServerProcess, redis_client: Redis) -> None:
    async with fresh(server.url) as http:
        admin = await admin_token(http)
        host_token = await user(http, admin, "host", "host_" + secrets.token_hex(3))
        for how, where in (("rest", "other"), ("rest", "owner"), ("whip_delete", "other")):
            host = await new_session(http, host_token, f"结束于 {where}")
            await _end_and_check(server, http, redis_client, host, how, where)
    assert "recorder failed" not in server.log_tail()


def _node() -> str | None:
    node = shutil.which("node")
    if node is None or not (ROOT / "web/node_modules/socket.io-client").exists():
        if IN_CI:
            pytest.fail("node and web/node_modules (cd web && npm ci) are required in CI")
        return None
    return node


async def test_polling_only_clients_send_and_receive_every_comment(
        server: ServerProcess, redis_client: Redis) -> None:
    async with fresh(server.url) as http:
        admin = await admin_token(http)
        host = await new_session(http, await user(http, admin, "host", "h" + secrets.token_hex(3)),
                                 "轮询")
        tokens = [await user(http, admin, "viewer", f"v{i}_{secrets.token_hex(3)}") for i in range(3)]
    # every poll on a new connection, so the kernel hands them to either worker
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
                for _ in range(2)]
    clients = [await connect(server.url, "/live", {"session_id": host.session_id, "token": t},
                             transports=["polling"], http_session=s)
               for t, s in zip(tokens[:2], sessions, strict=True)]
    try:
        for client in clients:
            await client.wait(lambda c=client: c.of("state"))
        sent = []
        for round_ in range(4):
            for i, client in enumerate(clients):
                text = f"轮询 {i}-{round_}"
                ack = await client.call("comment", {"text": text})
                assert ack["ok"], ack
                sent.append(text)
        js_texts: list[str] = []
        node = _node()
        if node is not None:
            proc = await asyncio.create_subprocess_exec(
                node, str(ROOT / "tests/js/polling_client.mjs"), server.url, str(host.session_id),
                tokens[2], "4", "浏览器", stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            got = json.loads(out.decode().strip().splitlines()[-1])
            assert proc.returncode == 0, (got, err)
            assert got["transport"] == "polling" and all(a["ok"] for a in got["acks"])
            js_texts = [f"浏览器 {i}" for i in range(4)]
        for client in clients:
            await client.wait(lambda c=client: {x["text"] for x in c.comments()} >= {*sent, *js_texts},
                              timeout=15)
        # the polls did land in both workers: sessions of one worker served by the other
        assert (await workers(redis_client, 2)).keys() >= {
            client.client.eio.sid.split(".")[0] for client in clients}
    finally:
        for client in clients:
            await client.close()
        for session in sessions:
            await session.close()


async def _stop_holding_streams(server: ServerProcess, signals: Callable[[int], None]) -> float:
    """A publisher, a WHEP viewer, Socket.IO clients over websocket and long-polling, and a
    session's replay building when `signals(pid)` is sent: how long until the server exited."""
    async with fresh(server.url) as http:
        admin = await admin_token(http)
        host = await new_session(http, await user(http, admin, "host", "h" + secrets.token_hex(3)),
                                 "停机")
        publisher = await publish(http, host)
        viewer = await view(http, host.session_id)
        # Sockets over websocket and long-polling (with two workers, in both, the polling ones
        # through the other worker too), and a session's replay building when the signal comes.
        polling = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        sockets = [await connect(server.url, "/live", {"session_id": host.session_id},
                                 transports=transports, http_session=polling)
                   for transports in (["websocket"], ["websocket"], ["polling"], ["polling"])]
        try:
            await wait_playlist(http, host.session_id, lambda t: segments(t) >= 2)
            assert await wait_for(lambda: viewer.got.video_frames >= 5, 20)
            other = await new_session(http, host.token, "回放中")
            second = await publish(http, other)
            await wait_playlist(http, other.session_id, lambda t: segments(t) >= 2)
            async with http.post(f"/api/sessions/{other.session_id}/end",
                                 headers={"Authorization": f"Bearer {host.token}"}) as resp:
                assert resp.status == 200
            started = time.monotonic()
            assert server.proc is not None
            signals(server.proc.pid)
            await asyncio.to_thread(server.proc.wait, 60)
            took = time.monotonic() - started
            await second.pc.close()
            assert server.proc is not None and server.proc.returncode == 0, server.log_tail()
            print(f"stopped in {took:.1f} s")
            return took
        finally:
            for socket in sockets:
                await socket.close()
            await polling.close()
            await viewer.close()
            await publisher.pc.close()


def _ctrl_c(pid: int) -> None:
    os.killpg(pid, signal.SIGINT)  # as a terminal does: every process of the group


def _docker_stop(pid: int) -> None:
    os.kill(pid, signal.SIGTERM)  # as `docker stop` does: the main process only


async def test_sigint_stops_a_worker_holding_streams_within_seconds(server: ServerProcess) -> None:
    took = await _stop_holding_streams(server, _ctrl_c)
    assert took < 10, f"stopping took {took:.1f} s"


async def test_sigterm_to_the_main_process_stops_workers_holding_streams_within_seconds(
        server: ServerProcess) -> None:
    took = await _stop_holding_streams(server, _docker_stop)
    assert took < 10, f"stopping took {took:.1f} s"


@pytest.mark.parametrize("signals", [_ctrl_c, _docker_stop], ids=["ctrl_c", "sigterm"])
async def test_a_single_process_holding_streams_stops_within_seconds(
        tmp_path: Path, redis_url: str, signals: Callable[[int], None]) -> None:
    server = ServerProcess(tmp_path / "var", redis_url, f"sqlite:///{tmp_path}/linli.db",
                           workers=1, extra_env={"LINLI_RTMP_PORT": "-1"})
    await asyncio.to_thread(server.start)
    try:
        took = await _stop_holding_streams(server, signals)
    finally:
        await asyncio.to_thread(server.stop)
    assert took < 10, f"stopping took {took:.1f} s"


async def _kill_owner(redis: Redis, session_id: int) -> None:
    process = await owner(redis, session_id)
    raw = await redis.get(f"linli:cluster:proc:{process}")
    assert raw is not None
    os.kill(int(json.loads(raw)["pid"]), signal.SIGKILL)


async def test_owner_killed_publisher_reconnects_elsewhere_or_session_ends(
        server: ServerProcess, redis_client: Redis) -> None:
    """SIGKILL the worker holding the media: a WHIP re-POST lands in the survivor and takes the
    session over (viewers can watch again); a session nobody republishes ends within the
    publisher grace (5 s here) after the owner's lease lapsed."""
    async with fresh(server.url) as http:
        admin = await admin_token(http)
        host_token = await user(http, admin, "host", "host_" + secrets.token_hex(3))
        again = await new_session(http, host_token, "重连")
        gone = await new_session(http, host_token, "无人重连")
        first = await publish(http, again)
        # the second session's media in the same worker as the first: publish until it is
        for _ in range(20):
            lost = await publish(http, gone)
            if lost.process == first.process:
                break
            async with http.delete(lost.location, headers={"Authorization": f"Bearer {gone.key}"}):
                pass
            await lost.pc.close()
            gone = await new_session(http, host_token, "无人重连")
        assert lost.process == first.process
        await wait_playlist(http, again.session_id, lambda t: segments(t) >= 1)
        await _kill_owner(redis_client, again.session_id)
        await first.pc.close()
        await lost.pc.close()
        # The host's app publishes again at once; wherever it lands, it is accepted. (A
        # connection the kernel had queued for the killed worker is reset: the app retries.)
        for _ in range(5):
            try:
                second = await publish(http, again)
                break
            except aiohttp.ClientOSError:
                await asyncio.sleep(0.2)
        viewer = None
        try:
            assert second.process != first.process
            assert await owner(redis_client, again.session_id) == second.process
            viewer = await view(http, again.session_id)
            assert viewer.status == 201, viewer.body
            assert await wait_for(lambda: viewer is not None and viewer.got.video_frames >= 10, 30)
            async with http.get(f"/api/sessions/{again.session_id}") as resp:
                assert (await resp.json())["status"] == "live"
            # nobody came back for the other one: ended by the survivor
            started = time.monotonic()
            while time.monotonic() - started < 25:
                async with http.get(f"/api/sessions/{gone.session_id}") as resp:
                    if (await resp.json())["status"] == "ended":
                        break
                await asyncio.sleep(0.5)
            async with http.get(f"/api/sessions/{gone.session_id}") as resp:
                assert (await resp.json())["status"] == "ended"
            assert time.monotonic() - started <= 5 + 6 + 3  # grace + lease + sweep pace
        finally:
            if viewer is not None:
                await viewer.close()
            await second.pc.close()


async def test_low_latency_hls_is_served_by_the_owner_from_either_worker(
        server: ServerProcess, redis_client: Redis) -> None:
    """The playlist and its parts live in the owner's memory: asked of the other worker, a
    blocking reload is forwarded and held there until the part exists, then answered."""
    async with fresh(server.url) as http:
        admin = await admin_token(http)
        host_token = await user(http, admin, "host", "host_" + secrets.token_hex(3))
        host = await new_session(http, host_token, "低延迟")
        publisher = await publish(http, host)
        try:
            await wait_playlist(http, host.session_id, lambda t: segments(t) >= 1)
            urls = await workers(redis_client, 2)
            owner_id = await owner(redis_client, host.session_id)
            other = next(p for p in urls if p != owner_id)
            base = f"/hls/{host.session_id}/index.m3u8"
            async with aiohttp.ClientSession(urls[other]) as direct:
                for _ in range(3):
                    async with direct.get(base) as resp:
                        playlist = llhls_support.check(await resp.text())
                        assert resp.headers[PROCESS_HEADER] == owner_id
                    last = playlist.last_part
                    assert last is not None
                    ahead = f"{base}?_HLS_msn={last.msn}&_HLS_part={playlist.part_index(last) + 1}"
                    async with direct.get(ahead) as resp:
                        after = llhls_support.check(await resp.text())
                        assert resp.status == 200 and resp.headers[PROCESS_HEADER] == owner_id
                    assert after.parts[-1] != last
                    assert after.preload_hint is not None
                    async with direct.get(f"/hls/{host.session_id}/{after.preload_hint}") as resp:
                        assert resp.headers[PROCESS_HEADER] == owner_id
                        body = await resp.read()
                    if resp.status == 404:
                        # Its segment was cut (at a keyframe) before that part: not needed.
                        async with direct.get(base) as resp:
                            now = llhls_support.check(await resp.text())
                        hinted = int(after.preload_hint.split("_")[1])
                        assert any(msn == hinted for msn, _, _ in now.segments), now
                    else:
                        assert resp.status == 200 and body[0] == 0x47
        finally:
            await publisher.pc.close()
