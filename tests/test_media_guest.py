"""A guest on camera (连线), end to end with real aiortc peers, the real composer and a replay.

The host sends the synthetic farm (blue/green chroma); the guest a red picture with a moving
white bar. A WHEP viewer and the replay must show the red guest in the bottom-right corner
while the guest is on, the host's picture around it, both moving; after the host ends the
guest's part, the host's picture alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack

from infra.settings import Settings
from media.guest import pip_box
from media.keys import media_hub_key
from media.synthetic import ToneAudioTrack
from tests.conftest import Api, AppFactory
from tests.media_flow import host_session, wait_replay
from tests.webrtc_clients import SDP, publish, wait_for

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

HOST_W, HOST_H = 320, 180
GUEST_W, GUEST_H = 240, 320  # a portrait phone camera
GUEST_V = 235  # strong red: the farm's chroma stays within 100..150
HOST_HZ, GUEST_HZ = 440, 1000  # the host's tone and the guest's voice


class RedGuestTrack(VideoStreamTrack):
    """A red picture with a white bar that moves every frame."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        y = np.full((GUEST_H, GUEST_W), 80, np.uint8)
        bar = (self.n * 12) % GUEST_H
        y[bar:bar + 40] = 235
        self.n += 1
        u = np.full((GUEST_H // 4, GUEST_W), 90, np.uint8)
        v = np.full((GUEST_H // 4, GUEST_W), GUEST_V, np.uint8)
        frame = av.VideoFrame.from_ndarray(np.vstack([y, u, v]), format="yuv420p")
        frame.pts, frame.time_base = pts, time_base
        return frame


@dataclass
class Regions:
    """What one decoded picture shows: the corner's red, and luma to compare over time."""

    corner_v: float
    corner_y: np.ndarray[Any, Any]
    host_y: np.ndarray[Any, Any]

    @property
    def guest_on(self) -> bool:
        return self.corner_v > 200


def regions(frame: av.VideoFrame) -> Regions:
    frame = frame.reformat(width=HOST_W, height=HOST_H, format="yuv420p")
    w, h = HOST_W, HOST_H
    flat = frame.to_ndarray().reshape(-1)
    arr = flat[:w * h].reshape(h, w)
    v = flat[w * h + (w // 2) * (h // 2):].reshape(h // 2, w // 2)
    x, y, pw, ph = pip_box(w, h, GUEST_W, GUEST_H)
    inner_v = v[(y + 6) // 2:(y + ph - 6) // 2, (x + 6) // 2:(x + pw - 6) // 2]
    corner_y = arr[y + 4:y + ph - 4, x + 4:x + pw - 4].astype(np.int16)
    # The host's field rows and sun, away from the corner and the timestamp strip.
    host_y = arr[20:170, 0:200].astype(np.int16)
    return Regions(float(inner_v.mean()), corner_y, host_y)


def moved(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    return float(np.abs(a - b).mean()) > 2.0


def tone(samples: np.ndarray[Any, Any], hz: int) -> float:
    """The share of a mono signal's energy within 20 Hz of `hz` (48 kHz)."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / 48000)
    return float(spectrum[np.abs(freqs - hz) < 20].sum() / max(spectrum.sum(), 1e-9))


def mono(frame: av.AudioFrame) -> np.ndarray[Any, Any]:
    pcm = frame.to_ndarray().astype(np.float64)  # s16: (1, samples*channels) interleaved
    channels = len(frame.layout.channels)
    return pcm.reshape(-1, channels).mean(axis=1) if frame.format.is_packed else pcm.mean(axis=0)


@dataclass
class Watcher:
    pc: RTCPeerConnection
    seen: list[tuple[float, Regions]] = field(default_factory=list)
    heard: list[tuple[float, np.ndarray[Any, Any]]] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def recent(self, since: float) -> list[Regions]:
        return [r for t, r in self.seen if t >= since]

    def sound(self, start: float, end: float) -> np.ndarray[Any, Any]:
        parts = [a for t, a in self.heard if start <= t < end]
        return np.concatenate(parts) if parts else np.zeros(1)

    async def close(self) -> None:
        await self.pc.close()
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


async def watch(api: Api, session_id: int) -> Watcher:
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    watcher = Watcher(pc)

    async def pull(track: MediaStreamTrack) -> None:
        with contextlib.suppress(Exception):
            n = 0
            while True:
                frame = await track.recv()
                if isinstance(frame, av.AudioFrame):
                    watcher.heard.append((time.monotonic(), mono(frame)))
                    continue
                n += 1
                if n % 3 == 0 and isinstance(frame, av.VideoFrame):  # every third: the box is busy
                    watcher.seen.append((time.monotonic(), regions(frame)))

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        watcher.tasks.append(asyncio.ensure_future(pull(track)))

    await pc.setLocalDescription(await pc.createOffer())
    resp = await api.client.post(f"/whep/{session_id}", data=pc.localDescription.sdp, headers=SDP)
    assert resp.status == 201, await resp.text()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=await resp.text(), type="answer"))
    return watcher


async def guest_offer(api: Api, session_id: int, token: str, voice: bool = False
                      ) -> tuple[RTCPeerConnection, int, str]:
    pc = RTCPeerConnection()
    pc.addTrack(RedGuestTrack())
    if voice:
        pc.addTrack(ToneAudioTrack(GUEST_HZ))
    await pc.setLocalDescription(await pc.createOffer())
    resp = await api.client.post(f"/api/sessions/{session_id}/guest/whip",
                                 data=pc.localDescription.sdp,
                                 headers={**SDP, **api.auth(token)})
    body = await resp.text()
    if resp.status == 201:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    return pc, resp.status, body


def replay_regions(url: str) -> list[Regions]:
    container = av.open(url, "r", timeout=20.0)
    try:
        return [regions(frame) for n, frame in enumerate(container.decode(video=0)) if n % 3 == 0]
    finally:
        container.close()


def replay_seconds_of_sound(url: str) -> list[np.ndarray[Any, Any]]:
    """The replay's sound, one array per second."""
    container = av.open(url, "r", timeout=20.0)
    try:
        resample = av.AudioResampler(format="s16", layout="mono", rate=48000)
        pcm = np.concatenate([f.to_ndarray().reshape(-1).astype(np.float64)
                              for frame in container.decode(audio=0)
                              for f in resample.resample(frame)])
    finally:
        container.close()
    return [pcm[i:i + 48000] for i in range(0, len(pcm) - 47999, 48000)]


@pytest.mark.parametrize("codec", ["video/H264", "video/VP8"])
async def test_guest_on_camera_in_webrtc_and_replay_then_host_ends_it(
    make_api: AppFactory, settings: Settings, codec: str
) -> None:
    api = await make_api(settings.with_(rtmp_port=-1, publisher_grace_s=5))
    host_token, session_id, key = await host_session(api)
    guest_name = f"koc_{session_id}"
    guest_id, guest_token = await api.user("viewer", guest_name)
    _, stranger_token = await api.user("viewer")

    # Not live yet: nobody can be invited.
    resp = await api.client.post(f"/api/sessions/{session_id}/guest", json={"user_id": guest_id},
                                 headers=api.auth(host_token))
    assert resp.status == 409, await resp.text()

    pub = await publish(api.client, session_id, key, width=HOST_W, height=HOST_H, codec=codec)
    assert pub.status == 201, pub.body
    viewer = await watch(api, session_id)
    guest_pc: RTCPeerConnection | None = None
    try:
        assert await wait_for(lambda: len(viewer.seen) >= 10, 30)
        assert not any(r.guest_on for _, r in viewer.seen)

        resp = await api.client.post(f"/api/sessions/{session_id}/guest",
                                     json={"username": guest_name}, headers=api.auth(host_token))
        assert resp.status == 201, await resp.text()
        assert await resp.json() == {"user_id": guest_id, "username": guest_name,
                                     "page": f"/guest/{session_id}"}
        # She is told through her notifications, with the link to the camera page.
        resp = await api.client.get("/api/notifications", headers=api.auth(guest_token))
        notices = [n for n in (await resp.json())["items"] if n["kind"] == "guest_invite"]
        assert [(n["link"], n["params"]["session_id"]) for n in notices] == [
            (f"/guest/{session_id}", session_id)]

        # Only the invited user publishes.
        other_pc, status, _ = await guest_offer(api, session_id, stranger_token)
        await other_pc.close()
        assert status == 403

        guest_pc, status, body = await guest_offer(api, session_id, guest_token, voice=True)
        assert status == 201, body
        joined = time.monotonic()
        assert await wait_for(lambda: sum(r.guest_on for r in viewer.recent(joined)) >= 10, 40), \
            [round(r.corner_v) for r in viewer.recent(joined)][-10:]
        await asyncio.sleep(3)  # a few seconds of the guest's part for the recording
        both = [r for r in viewer.recent(joined) if r.guest_on]
        assert len(both) >= 10
        first, last = both[0], both[-1]
        assert moved(first.corner_y, last.corner_y), "the guest's picture does not move"
        assert moved(first.host_y, last.host_y), "the host's picture does not move"
        # Viewers hear both: the host's tone and the guest's.
        both_heard = viewer.sound(time.monotonic() - 2.0, time.monotonic())
        assert len(both_heard) >= 48000, len(both_heard)
        assert tone(both_heard, GUEST_HZ) > 0.1 and tone(both_heard, HOST_HZ) > 0.1, (
            tone(both_heard, GUEST_HZ), tone(both_heard, HOST_HZ))
        resp = await api.client.get(f"/api/sessions/{session_id}/guest", headers=api.auth(host_token))
        assert (await resp.json())["guest"] == {"user_id": guest_id, "username": guest_name,
                                                  "connected": True, "on_air": True}

        # The host ends it: the guest's peer is cut at once, viewers get the host alone.
        resp = await api.client.delete(f"/api/sessions/{session_id}/guest",
                                       headers=api.auth(host_token))
        assert resp.status == 200 and (await resp.json()) == {"ended": True}
        stream = api.app[media_hub_key].streams[session_id]
        assert stream.guest is None and stream.composer is None
        ended = time.monotonic()
        assert await wait_for(lambda: guest_pc is not None
                              and guest_pc.connectionState in ("closed", "failed"), 20)
        assert await wait_for(lambda: len(viewer.recent(ended + 1.0)) >= 10, 30)
        after = viewer.recent(ended + 1.0)
        assert not any(r.guest_on for r in after), [round(r.corner_v) for r in after]
        assert moved(after[0].host_y, after[-1].host_y)
        host_alone = viewer.sound(ended + 1.0, time.monotonic())
        assert len(host_alone) >= 24000
        assert tone(host_alone, GUEST_HZ) < 0.02 and tone(host_alone, HOST_HZ) > 0.3
        # The invitation went with it.
        again, status, _ = await guest_offer(api, session_id, guest_token)
        await again.close()
        assert status == 403
        await asyncio.sleep(2.5)  # the host alone, recorded too
    finally:
        await viewer.close()
        if guest_pc is not None:
            await guest_pc.close()
        resp = await api.client.delete(pub.location or "", headers=api.auth(key))
        await pub.pc.close()
    assert resp.status in (200, 204)

    replay = await wait_replay(api, session_id, within_s=120)
    assert replay["status"] == "ready", replay
    seen = await asyncio.to_thread(replay_regions, str(api.client.make_url(replay["hls"])))
    on = [r for r in seen if r.guest_on]
    assert len(on) >= 10, [round(r.corner_v) for r in seen]
    assert len(seen) - len(on) >= 10
    assert moved(on[0].corner_y, on[-1].corner_y) and moved(on[0].host_y, on[-1].host_y)
    # The guest's part sits between host-only parts, in that order.
    flags = [r.guest_on for r in seen]
    first_on, last_on = flags.index(True), len(flags) - 1 - flags[::-1].index(True)
    assert not any(flags[:first_on][-3:]) and first_on >= 3
    assert sum(flags[first_on:last_on + 1]) >= 0.9 * (last_on + 1 - first_on)
    assert len(flags) - 1 - last_on >= 3
    # Its sound: the guest's voice in the middle seconds only, the host's throughout.
    seconds = await asyncio.to_thread(replay_seconds_of_sound, str(api.client.make_url(replay["hls"])))
    voiced = [tone(s, GUEST_HZ) > 0.1 for s in seconds]
    assert sum(voiced) >= 2 and not voiced[0] and not voiced[-1], voiced
    assert all(tone(s, HOST_HZ) > 0.1 for s in seconds[1:-1])



@pytest.mark.races
async def test_twenty_offers_at_once_from_the_guest_leave_one_guest(
    make_api: AppFactory, settings: Settings
) -> None:
    """A phone retrying (or a guest on two devices): the offers race, exactly one stays the
    guest, every other peer is closed on the server, and ending it leaves none."""
    api = await make_api(settings.with_(rtmp_port=-1, publisher_grace_s=5))
    host_token, session_id, key = await host_session(api)
    guest_id, guest_token = await api.user("viewer")
    pub = await publish(api.client, session_id, key, width=HOST_W, height=HOST_H, audio=False)
    assert pub.status == 201, pub.body
    hub = api.app[media_hub_key]
    made: list[Any] = []
    original = hub.publish_guest

    async def counting(*args: Any) -> tuple[str, str]:
        result = await original(*args)
        made.append(hub.streams[session_id].guest)
        return result

    hub.publish_guest = counting
    clients: list[RTCPeerConnection] = []
    try:
        resp = await api.client.post(f"/api/sessions/{session_id}/guest",
                                     json={"user_id": guest_id}, headers=api.auth(host_token))
        assert resp.status == 201
        results = await asyncio.gather(*(guest_offer(api, session_id, guest_token)
                                         for _ in range(20)))
        clients = [pc for pc, _, _ in results]
        assert [status for _, status, _ in results] == [201] * 20
        stream = hub.streams[session_id]
        assert len({id(g) for g in made}) == 20 and stream.guest is made[-1]
        assert await wait_for(lambda: all(g.pc.connectionState == "closed" for g in made[:-1]), 20)
        assert stream.guest.pc.connectionState != "closed"
        resp = await api.client.delete(f"/api/sessions/{session_id}/guest",
                                       headers=api.auth(host_token))
        assert (await resp.json()) == {"ended": True}
        assert stream.guest is None
        assert await wait_for(lambda: all(g.pc.connectionState == "closed" for g in made), 20)
    finally:
        for pc in clients:
            await pc.close()
        await api.client.delete(pub.location or "", headers=api.auth(key))
        await pub.pc.close()
