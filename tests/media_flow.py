"""Steps shared by the media tests: a host with a session, publishing over RTMP, waiting on replays."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from media.hls_playlist import parse_media_playlist
from media.replay_keys import rtmp_key
from tests.conftest import Api
from tests.media_synth import rtmp_publish_argv


async def host_session(api: Api) -> tuple[str, int, str]:
    """(host token, session id, stream key)."""
    _, token = await api.user("host")
    resp = await api.client.post("/api/sessions", json={"title": "菜地直播"}, headers=api.auth(token))
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    return token, int(body["id"]), str(body["stream_key"])


def rtmp_url(api: Api, key: str) -> str:
    return f"rtmp://127.0.0.1:{api.app[rtmp_key].port}/live/{key}"


async def publish(url: str, seconds: float, size: str = "320x240") -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *rtmp_publish_argv(url, seconds, size=size), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def wait_segments(api: Api, session_id: int, count: int, within_s: float = 20.0) -> str:
    """Poll the live playlist until it lists `count` segments; returns it."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        resp = await api.client.get(f"/hls/{session_id}/index.m3u8")
        if resp.status == 200:
            text = await resp.text()
            if len(parse_media_playlist(text)) >= count:
                return text
        await asyncio.sleep(0.2)
    raise AssertionError(f"live playlist never reached {count} segments")


async def wait_playlist(http: Any, url: str, count: int, within_s: float = 30.0) -> None:
    """The same over a plain HTTP client (a page test's server): poll `url` until it lists
    `count` segments."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        async with http.get(url) as resp:
            if resp.status == 200 and len(parse_media_playlist(await resp.text())) >= count:
                return
        await asyncio.sleep(0.3)
    raise AssertionError(f"{url} never reached {count} segments")


async def wait_replay(api: Api, session_id: int, within_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        resp = await api.client.get(f"/api/sessions/{session_id}/replay")
        assert resp.status == 200
        body = await resp.json()
        if body["status"] in ("ready", "failed", "empty"):
            return body
        await asyncio.sleep(0.3)
    raise AssertionError(f"replay not ready: {body}")
