"""Real aiortc peers for the media tests: a WHIP publisher and a WHEP viewer that decodes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestClient
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from media.synthetic import FarmVideoTrack, ToneAudioTrack, now_ms32, read_strip

SDP = {"Content-Type": "application/sdp"}


def prefer(pc: RTCPeerConnection, mime: str) -> None:
    caps = RTCRtpSender.getCapabilities("video").codecs
    for t in pc.getTransceivers():
        if t.kind == "video":
            t.setCodecPreferences([c for c in caps if c.mimeType == mime])


@dataclass
class Publisher:
    pc: RTCPeerConnection
    status: int
    location: str | None
    body: str
    video: FarmVideoTrack | None = None


async def publish(client: TestClient[Any, Any], session_id: int, key: str, *, codec: str | None = None,
                  width: int = 320, height: int = 180, audio: bool = True,
                  video: FarmVideoTrack | None = None) -> Publisher:
    pc = RTCPeerConnection()
    video = video or FarmVideoTrack(width, height, fps=30, noise=0.3)
    pc.addTrack(video)
    if audio:
        pc.addTrack(ToneAudioTrack())
    if codec:
        prefer(pc, codec)
    await pc.setLocalDescription(await pc.createOffer())
    resp = await client.post(f"/whip/{session_id}", data=pc.localDescription.sdp,
                             headers={**SDP, "Authorization": f"Bearer {key}"})
    body = await resp.text()
    if resp.status == 201:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    return Publisher(pc, resp.status, resp.headers.get("Location"), body, video)


@dataclass
class Collected:
    video_frames: int = 0
    audio_frames: int = 0
    sizes: set[tuple[int, int]] = field(default_factory=set)
    first_video_at: float | None = None
    latencies_ms: list[int] = field(default_factory=list)


@dataclass
class Viewer:
    pc: RTCPeerConnection
    status: int
    location: str | None
    body: str
    got: Collected
    started: float
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def close(self) -> None:
        await self.pc.close()
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


async def _pull(track: MediaStreamTrack, got: Collected, read_latency: bool) -> None:
    with contextlib.suppress(Exception):
        while True:
            frame = await track.recv()
            if track.kind == "video":
                got.video_frames += 1
                got.sizes.add((frame.width, frame.height))
                if got.first_video_at is None:
                    got.first_video_at = time.monotonic()
                if read_latency and got.video_frames % 5 == 0:
                    y = frame.to_ndarray(format="gray")
                    got.latencies_ms.append((now_ms32() - read_strip(y)) & 0xFFFFFFFF)
            else:
                got.audio_frames += 1


async def view(client: TestClient[Any, Any], session_id: int, *, audio: bool = True,
               read_latency: bool = False, offer: str | None = None) -> Viewer:
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    if audio:
        pc.addTransceiver("audio", direction="recvonly")
    got = Collected()
    viewer = Viewer(pc, 0, None, "", got, time.monotonic())

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        viewer.tasks.append(asyncio.ensure_future(_pull(track, got, read_latency)))

    await pc.setLocalDescription(await pc.createOffer())
    resp = await client.post(f"/whep/{session_id}", data=offer or pc.localDescription.sdp, headers=SDP)
    viewer.status, viewer.body = resp.status, await resp.text()
    viewer.location = resp.headers.get("Location")
    if resp.status == 201:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=viewer.body, type="answer"))
    return viewer


async def wait_for(predicate: Any, within_s: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    return bool(predicate())
