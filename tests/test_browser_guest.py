"""A guest on camera (连线) in real Chromium: the host invites a neighbour from the console, she
opens the link on her phone and joins with the (fake) camera, a WHEP viewer sees her picture in
the corner, and the host's "end" button cuts her off.

The host publishes a flat picture from aiortc (only its top half moves), so the bottom-right
corner is flat grey until the guest's camera picture (Chromium's fake device: moving shapes and
a clock) is laid over it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from redis.asyncio import Redis

from tests.browser_support import Kit, browser_kit

W, H = 320, 180
FLAT = 40
SDP = {"Content-Type": "application/sdp"}


class FlatHostTrack(VideoStreamTrack):
    """Flat grey, a white bar moving through the top half only."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        y = np.full((H, W), FLAT, np.uint8)
        x = (self.n * 6) % W
        y[10:60, x:x + 20] = 235
        self.n += 1
        frame = av.VideoFrame.from_ndarray(np.vstack([y, np.full((H // 2, W), 128, np.uint8)]),
                                           format="yuv420p")
        frame.pts, frame.time_base = pts, time_base
        return frame


@dataclass
class Corner:
    at: float
    luma: np.ndarray[Any, Any]

    @property
    def guest_on(self) -> bool:
        return float(self.luma.std()) > 8 or abs(float(self.luma.mean()) - FLAT) > 15


@dataclass
class Watch:
    pcs: list[RTCPeerConnection] = field(default_factory=list)
    corners: list[Corner] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def since(self, t: float) -> list[Corner]:
        return [c for c in self.corners if c.at >= t]

    async def close(self) -> None:
        for pc in self.pcs:
            await pc.close()
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


async def _offer(kit: Kit, pc: RTCPeerConnection, path: str, bearer: str | None) -> None:
    await pc.setLocalDescription(await pc.createOffer())
    headers = dict(SDP)
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    async with kit.rest.http.post(kit.base + path, data=pc.localDescription.sdp,
                                  headers=headers) as resp:
        body = await resp.text()
        assert resp.status == 201, body
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))


async def _publish_and_watch(kit: Kit, sid: int, key: str) -> Watch:
    watch = Watch()
    host = RTCPeerConnection()
    host.addTrack(FlatHostTrack())
    watch.pcs.append(host)
    await _offer(kit, host, f"/whip/{sid}", key)

    viewer = RTCPeerConnection()
    viewer.addTransceiver("video", direction="recvonly")
    watch.pcs.append(viewer)

    async def pull(track: MediaStreamTrack) -> None:
        with contextlib.suppress(Exception):
            n = 0
            while True:
                frame = await track.recv()
                n += 1
                if n % 3 == 0 and isinstance(frame, av.VideoFrame):
                    y = frame.reformat(width=W, height=H, format="gray").to_ndarray()
                    # Inside the picture-in-picture box (bottom-right, docs/GUEST.md).
                    watch.corners.append(Corner(time.monotonic(), y[H - 60:H - 14, W - 70:W - 14]))

    @viewer.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        watch.tasks.append(asyncio.ensure_future(pull(track)))

    await _offer(kit, viewer, f"/whep/{sid}", None)
    return watch


async def _wait(predicate: Any, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return bool(predicate())


async def test_guest_joins_from_her_phone_and_the_host_ends_it(tmp_path: Path, redis_url: str,
                                                              redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "guest_on_camera") as kit:
        host = await kit.rest.account("laozhang", "host", "老张")
        await kit.rest.account("xiaoli", "viewer", "小李")
        koc = await kit.rest.account("chenjie", "viewer", "陈姐")
        session = await kit.rest.call("POST", "/api/sessions", host.token, json={"title": "连线试吃"})
        sid, key = int(session["id"]), str(session["stream_key"])
        watch = await _publish_and_watch(kit, sid, key)
        try:
            assert await _wait(lambda: len(watch.corners) >= 10, 40)
            assert not any(c.guest_on for c in watch.corners)

            console = await kit.page(host, f"/host/{sid}", viewport={"width": 1280, "height": 800})
            await console.click("#tab-guest")  # the console's 连线 tab
            card = console.locator("#guest-card")
            await card.locator("#guest-username").wait_for(timeout=15_000)
            await card.locator("#guest-username").fill("chenjie")
            await card.locator("#guest-invite").click()
            link = card.locator("#guest-page-link")
            await link.wait_for(timeout=15_000)
            href = await link.get_attribute("href") or ""
            assert href.endswith(f"/guest/{sid}"), href
            await kit.shot(console, "host_invited_guest")

            phone = await kit.page(koc, f"/guest/{sid}")
            await phone.locator("#guest-join").wait_for(timeout=15_000)
            assert await phone.locator("h1").text_content() == "连线直播"
            assert await kit.axe(phone, "guest_page") == []
            await kit.shot(phone, "guest_page")
            main = await phone.locator("main").inner_text()
            assert not re.findall(r"\b[A-Za-z]{3,}\b", main), main  # one language: Chinese
            await phone.click("#guest-join")
            await phone.wait_for_function("() => document.body.dataset.guest === 'on-air'",
                                          timeout=30_000)
            assert "观众正在看到你" in (await phone.locator("#guest-state").text_content() or "")
            await kit.shot(phone, "guest_on_air")

            joined = time.monotonic()
            assert await _wait(lambda: sum(c.guest_on for c in watch.since(joined)) >= 10, 40), \
                [(round(float(c.luma.mean())), round(float(c.luma.std()))) for c in watch.corners[-5:]]
            on = [c for c in watch.since(joined) if c.guest_on]
            assert float(np.abs(on[0].luma.astype(int) - on[-1].luma.astype(int)).mean()) > 1.0
            await console.wait_for_function(
                "() => document.querySelector('#guest-card').dataset.guest === 'on_air'",
                timeout=20_000)
            assert "连线中" in (await card.locator("#guest-status").text_content() or "")
            await kit.shot(console, "host_sees_guest_on_air")

            # The host ends it: the phone is told, viewers get the host's picture alone.
            await card.locator("#guest-end").click()
            await console.wait_for_function(
                "() => document.querySelector('#guest-card').dataset.guest === 'none'",
                timeout=15_000)
            ended = time.monotonic()
            await phone.wait_for_function("() => document.body.dataset.guest === 'ended'",
                                          timeout=30_000)
            await kit.shot(phone, "guest_ended")
            assert await _wait(lambda: len(watch.since(ended + 1.5)) >= 10, 30)
            assert not any(c.guest_on for c in watch.since(ended + 1.5))

            # The same page in English, and nothing Chinese left on it.
            await phone.click("#lang-switch")
            await phone.locator("h1", has_text="On camera with the host").wait_for(timeout=15_000)
            main = await phone.locator("main").inner_text()
            assert not re.findall(r"[\u3400-\u9fff]", main), main
            await kit.shot(phone, "guest_page_english")
            assert kit.errors == [], kit.errors
        finally:
            await watch.close()
