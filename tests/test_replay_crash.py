"""SIGKILL the server while it records an RTMP stream: after a restart, the replay holds every
segment completed before the kill (at most the segment being written is lost) and plays."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
from redis.asyncio import Redis

from media.probe import decodes, probe
from media.segment_index import load_index
from tests.media_synth import rtmp_publish_argv
from tests.server_process import ServerProcess, free_port


async def _login(http: aiohttp.ClientSession, username: str, password: str) -> str:
    resp = await http.post("/api/auth/token", json={"username": username, "password": password})
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["token"])


async def test_sigkill_while_recording_then_replay_plays(
    tmp_path: Path, redis_url: str, redis_client: Redis
) -> None:
    rtmp_port = free_port()
    server = ServerProcess(tmp_path / "var", redis_url, "",
                           extra_env={"LINLI_RTMP_PORT": str(rtmp_port), "LINLI_PUBLISHER_GRACE_S": "30"})
    await asyncio.to_thread(server.start)
    client: asyncio.subprocess.Process | None = None
    try:
        async with aiohttp.ClientSession(server.url) as http:
            admin = await _login(http, "admin", server.admin_password)
            resp = await http.post("/api/users", headers={"Authorization": f"Bearer {admin}"},
                                   json={"username": "farmer", "password": "farmer-password-1",
                                         "role": "host"})
            assert resp.status == 201, await resp.text()
            host = {"Authorization": f"Bearer {await _login(http, 'farmer', 'farmer-password-1')}"}
            resp = await http.post("/api/sessions", json={"title": "果园"}, headers=host)
            session = await resp.json()
            session_id, key = int(session["id"]), session["stream_key"]

            client = await asyncio.create_subprocess_exec(
                *rtmp_publish_argv(f"rtmp://127.0.0.1:{rtmp_port}/live/{key}", 30),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            rec = tmp_path / "var" / "media" / str(session_id) / "rec"
            for _ in range(300):  # polling files on disk: there is no event to wait on
                if len(load_index(rec)) >= 3:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # into the middle of the next segment
            server.kill()
            killed_at = time.time()
            complete = load_index(rec)
            assert len(complete) >= 3
            client.kill()  # the phone app would retry; this test only needs the recording
            await client.wait()

            # At most the segment being written was lost.
            recorded = sum(e.duration for e in complete)
            assert killed_at - complete[0].wall - recorded <= 2.6, (killed_at, complete)

            await asyncio.to_thread(server.start)
            resp = await http.post(f"/api/sessions/{session_id}/end", headers=host)
            assert resp.status == 200, await resp.text()
            deadline = time.monotonic() + 60
            replay: dict[str, object] = {}
            while time.monotonic() < deadline:
                replay = await (await http.get(f"/api/sessions/{session_id}/replay")).json()
                if replay["status"] in ("ready", "failed", "empty"):
                    break
                await asyncio.sleep(0.3)
            assert replay["status"] == "ready", replay
            url = server.url + str(replay["hls"])
            vod = await asyncio.to_thread(probe, url)
            assert abs(vod.duration_s - recorded) <= 0.1 * recorded, (vod, recorded)
            assert await asyncio.to_thread(decodes, url) == 3
    finally:
        if client is not None and client.returncode is None:
            client.kill()
            await client.wait()
        server.kill()
