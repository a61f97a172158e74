"""Chromium publishes over WHIP (fake camera) and plays over WHEP: the forwarded RTP must be
decodable by a real browser, not only by aiortc."""

from __future__ import annotations

import asyncio
import os
import shutil
from typing import Any

import pytest

from infra.settings import Settings
from media.keys import media_hub_key
from tests.test_media_webrtc import new_session, no_leaked_peers  # noqa: F401 - autouse fixture
from tests.webrtc_clients import wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(120),
    # Skips only off CI: in CI a missing Chromium must fail, not pass unnoticed.
    pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                       reason="needs the distro's Chromium (apt-get install chromium)"),
]

PUBLISH_JS = """async ([sessionId, key]) => {
  const stream = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 360}, audio: true});
  const pc = new RTCPeerConnection();
  window.pc = pc;
  stream.getTracks().forEach(t => pc.addTransceiver(t, {direction: 'sendonly'}));
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(r => { if (pc.iceGatheringState === 'complete') r();
    else pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r(); });
  const res = await fetch('/whip/' + sessionId, {method: 'POST', body: pc.localDescription.sdp,
    headers: {'Content-Type': 'application/sdp', 'Authorization': 'Bearer ' + key}});
  if (res.status !== 201) return 'whip ' + res.status;
  await pc.setRemoteDescription({type: 'answer', sdp: await res.text()});
  return 'ok';
}"""

WATCH_JS = """async (sessionId) => {
  const pc = new RTCPeerConnection();
  window.pc = pc;
  pc.addTransceiver('video', {direction: 'recvonly'});
  pc.addTransceiver('audio', {direction: 'recvonly'});
  const video = document.createElement('video');
  video.muted = true; video.autoplay = true; video.playsInline = true;
  document.body.appendChild(video);
  window.v = video;
  const media = new MediaStream();
  pc.ontrack = e => { media.addTrack(e.track); video.srcObject = media; };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(r => { if (pc.iceGatheringState === 'complete') r();
    else pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r(); });
  const res = await fetch('/whep/' + sessionId, {method: 'POST', body: pc.localDescription.sdp,
    headers: {'Content-Type': 'application/sdp'}});
  if (res.status !== 201) return 'whep ' + res.status;
  await pc.setRemoteDescription({type: 'answer', sdp: await res.text()});
  return 'ok';
}"""

STATS_JS = """async () => {
  const q = window.v.getVideoPlaybackQuality();
  let audio = 0;
  (await window.pc.getStats()).forEach(s => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') audio = s.packetsReceived; });
  return {frames: q.totalVideoFrames, width: window.v.videoWidth, height: window.v.videoHeight, audio};
}"""


async def test_chromium_publishes_and_watches(make_api, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    from playwright.async_api import async_playwright

    api = await make_api(settings)
    session_id, key, _ = await new_session(api)
    base = str(api.client.make_url("/healthz"))
    args = ["--no-sandbox", "--disable-gpu", "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream", "--allow-loopback-in-peer-connection",
            "--autoplay-policy=no-user-gesture-required"]
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            publisher = await browser.new_page()
            await publisher.goto(base)
            assert await publisher.evaluate(PUBLISH_JS, [session_id, key]) == "ok"
            hub = api.app[media_hub_key]
            assert await wait_for(lambda: session_id in hub.streams
                                  and "video" in hub.streams[session_id].fanouts
                                  and hub.streams[session_id].fanouts["video"].forwarded > 30, 20)
            codec = hub.streams[session_id].video_codec
            assert codec in ("h264", "vp8")

            viewer = await browser.new_page()
            await viewer.goto(base)
            assert await viewer.evaluate(WATCH_JS, session_id) == "ok"
            stats: dict[str, Any] = {}
            for _ in range(100):
                stats = await viewer.evaluate(STATS_JS)
                if stats["frames"] >= 30 and stats["audio"] > 20:
                    break
                await asyncio.sleep(0.2)
            assert stats["frames"] >= 30, (codec, stats)
            assert stats["width"] > 0 and stats["height"] > 0
            assert stats["audio"] > 20
        finally:
            await browser.close()
