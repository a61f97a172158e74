"""Driving real `python -m server serve` processes of one cluster: accounts, sessions, WHIP and
WHEP over plain HTTP, which process answered, and where each worker answers directly."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription
from redis.asyncio import Redis

from media.hls_playlist import parse_media_playlist
from media.synthetic import FarmVideoTrack, ToneAudioTrack
from tests.conftest import ADMIN_PASSWORD
from tests.webrtc_clients import SDP

PROCESS_HEADER = "X-Linli-Process"


def fresh(base_url: str) -> aiohttp.ClientSession:
    """Every request on a new connection: with SO_REUSEPORT the kernel picks a worker each time."""
    return aiohttp.ClientSession(base_url, connector=aiohttp.TCPConnector(force_close=True))


async def workers(redis: Redis, count: int, within_s: float = 20.0) -> dict[str, str]:
    """{process id: internal URL} of the registered processes, once there are `count`."""
    deadline = time.monotonic() + within_s
    found: dict[str, str] = {}
    while time.monotonic() < deadline:
        found = {}
        async for key in redis.scan_iter("linli:cluster:proc:*"):
            raw = await redis.get(key)
            if raw is not None:
                found[key.decode().rsplit(":", 1)[1]] = json.loads(raw)["url"]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"only {found} registered")


async def owner(redis: Redis, session_id: int) -> str | None:
    raw = await redis.get(f"linli:media:owner:{session_id}")
    return raw.decode() if raw is not None else None


@dataclass
class Host:
    token: str
    session_id: int
    key: str


async def admin_token(http: aiohttp.ClientSession) -> str:
    async with http.post("/api/auth/token", json={"username": "admin",
                                                  "password": ADMIN_PASSWORD}) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["token"])


async def user(http: aiohttp.ClientSession, admin: str, role: str, name: str) -> str:
    password = f"Linli-{name}-passphrase-{len(name) * 7}"
    async with http.post("/api/users", json={"username": name, "password": password, "role": role},
                         headers={"Authorization": f"Bearer {admin}"}) as resp:
        assert resp.status == 201, await resp.text()
    async with http.post("/api/auth/token", json={"username": name, "password": password}) as resp:
        return str((await resp.json())["token"])


async def new_session(http: aiohttp.ClientSession, host_token: str, title: str) -> Host:
    async with http.post("/api/sessions", json={"title": title},
                         headers={"Authorization": f"Bearer {host_token}"}) as resp:
        assert resp.status == 201, await resp.text()
        body = await resp.json()
    return Host(host_token, int(body["id"]), str(body["stream_key"]))


@dataclass
class Publisher:
    pc: RTCPeerConnection
    location: str
    process: str


async def publish(http: aiohttp.ClientSession, host: Host) -> Publisher:
    pc = RTCPeerConnection()
    pc.addTrack(FarmVideoTrack(320, 180, fps=15, noise=0.3))
    pc.addTrack(ToneAudioTrack())
    await pc.setLocalDescription(await pc.createOffer())
    async with http.post(f"/whip/{host.session_id}", data=pc.localDescription.sdp,
                         headers={**SDP, "Authorization": f"Bearer {host.key}"}) as resp:
        body = await resp.text()
        assert resp.status == 201, body
        location, process = resp.headers["Location"], resp.headers[PROCESS_HEADER]
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    return Publisher(pc, location, process)


async def offer_sdp() -> str:
    """A receive-only WHEP offer (its peer is closed: the answer will never be connected)."""
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return str(sdp)


async def wait_playlist(http: aiohttp.ClientSession, session_id: int,
                        predicate: Any, within_s: float = 30.0) -> str:
    deadline = time.monotonic() + within_s
    text = ""
    while time.monotonic() < deadline:
        async with http.get(f"/hls/{session_id}/index.m3u8") as resp:
            if resp.status == 200:
                text = await resp.text()
                if predicate(text):
                    return text
        await asyncio.sleep(0.3)
    raise AssertionError(f"live playlist never got there: {text[-400:]}")


def segments(text: str) -> int:
    return len(parse_media_playlist(text))


async def wait_replay(http: aiohttp.ClientSession, session_id: int,
                      within_s: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        async with http.get(f"/api/sessions/{session_id}/replay") as resp:
            assert resp.status == 200, await resp.text()
            body = await resp.json()
        if body["status"] in ("ready", "failed", "empty"):
            return body
        await asyncio.sleep(0.5)
    raise AssertionError(f"replay not ready: {body}")


async def wait_closed(pc: RTCPeerConnection, within_s: float = 15.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if pc.connectionState in ("closed", "failed"):
            return True
        await asyncio.sleep(0.1)
    return False
