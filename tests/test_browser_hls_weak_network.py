"""A viewer on a weak network (800 kbit/s, throttled in Chromium over CDP) plays a 720p live
stream through the master playlist without a stall: hls.js picks the 360p rendition.

The publisher is ffmpeg over RTMP at 1280x720 (about 1.5–2 Mbit/s, more than the link), the
server writes the 360p rendition (LINLI_HLS_LOW_RENDITION=on) and the live page's player
(web/static/js/player.js) loads `master.m3u8`.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.browser_support import browser_kit, free_port
from tests.media_flow import wait_playlist
from tests.media_synth import rtmp_publish_argv

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]

LINK_KBIT = 800
WATCH_S = 20.0

# The live page's hls.js player; stalls counted both ways hls.js and the element report them.
START_HLS = """async (url) => {
  const Hls = (await import('/vendor/hls/hls.mjs')).default;
  const { liveHlsConfig, keepNearLive } = await import('/static/js/player.js');
  if (!Hls.isSupported()) return 'unsupported';
  const video = document.createElement('video');
  video.muted = true; video.autoplay = true; video.playsInline = true;
  document.body.appendChild(video);
  window.__video = video;
  window.__errors = [];
  window.__waiting = 0;
  window.__playing = false;
  video.addEventListener('playing', () => { window.__playing = true; });
  video.addEventListener('waiting', () => { if (window.__playing) window.__waiting += 1; });
  const hls = new Hls(liveHlsConfig());
  hls.on(Hls.Events.ERROR, (_event, data) => {
    window.__errors.push({ fatal: !!data.fatal, details: data.details, at: video.currentTime,
                           reason: String(data.error || data.reason || '').slice(0, 200),
                           url: String(data.frag?.url || data.context?.url || '').slice(-60),
                           rate: video.playbackRate });
    if (data.fatal && data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
  });
  hls.loadSource(url);
  hls.attachMedia(video);
  keepNearLive(hls, video);
  window.__hls = hls;
  return 'ok';
}"""

STATE = """() => {
  const hls = window.__hls;
  const level = hls.levels[hls.currentLevel];
  return { t: window.__video.currentTime, errors: window.__errors, waiting: window.__waiting,
           levels: hls.levels.map((l) => l.height), height: level ? level.height : 0,
           videoHeight: window.__video.videoHeight };
}"""


def _publish_argv(url: str, seconds: float) -> list[str]:
    # A phone app's 720p at a constant ~2 Mbit/s (CBR with filler), well above the link.
    argv = rtmp_publish_argv(url, seconds, size="1280x720")
    at = argv.index("-pix_fmt")
    return [*argv[:at], "-b:v", "2000k", "-minrate", "2000k", "-maxrate", "2000k",
            "-bufsize", "1000k", "-x264-params", "nal-hrd=cbr", *argv[at:]]


async def test_an_800_kbit_viewer_plays_the_360p_rendition_without_a_stall(
    tmp_path: Path, redis_url: str, redis_client: Redis
) -> None:
    rtmp_port = free_port()
    env = {"LINLI_RTMP_PORT": str(rtmp_port), "LINLI_HLS_LOW_RENDITION": "on"}
    async with browser_kit(tmp_path, redis_url, "hls_weak_network", env) as kit:
        host = await kit.rest.account("laozhang", "host", "老张")
        session = await kit.rest.call("POST", "/api/sessions", host.token, json={"title": "枇杷园"})
        sid, key = int(session["id"]), str(session["stream_key"])
        publisher = await asyncio.create_subprocess_exec(
            *_publish_argv(f"rtmp://127.0.0.1:{rtmp_port}/live/{key}", WATCH_S + 40),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        try:
            await wait_playlist(kit.rest.http, f"{kit.base}/hls/{sid}/360p/index.m3u8", 3, 40)
            async with kit.rest.http.get(f"{kit.base}/hls/{sid}/master.m3u8") as resp:
                assert resp.status == 200
                master = await resp.text()
            bandwidths = sorted(int(b.split(",")[0]) for b in master.split("BANDWIDTH=")[1:])
            assert bandwidths[0] < LINK_KBIT * 1000 < bandwidths[1], master
            page = await kit.page(None, "/replays", label="weak network")
            cdp = await page.context.new_cdp_session(page)
            await cdp.send("Network.enable")
            await cdp.send("Network.emulateNetworkConditions", {
                "offline": False, "latency": 40,
                "downloadThroughput": LINK_KBIT * 1000 / 8, "uploadThroughput": LINK_KBIT * 1000 / 8})
            assert await page.evaluate(START_HLS, f"/hls/{sid}/master.m3u8") == "ok"
            await page.wait_for_function("() => window.__playing && window.__video.currentTime > 0.5",
                                         timeout=40_000)
            first: dict[str, Any] = await page.evaluate(STATE)
            watch_from = time.monotonic()
            samples: list[tuple[float, float]] = []
            while time.monotonic() - watch_from < WATCH_S:
                await asyncio.sleep(1.0)
                state: dict[str, Any] = await page.evaluate(STATE)
                samples.append((time.monotonic() - watch_from, float(state["t"])))
            await kit.shot(page, "after_20s_at_800kbit")
        finally:
            if publisher.returncode is None:
                publisher.kill()
            await publisher.wait()

    assert sorted(first["levels"]) == [360, 720], first
    # The 720p variant does not fit the link: hls.js stays on (or settles to) 360p.
    assert state["height"] == 360 and state["videoHeight"] == 360, (state, master)
    stalls = [e for e in state["errors"] if e["details"] == "bufferStalledError"]
    assert not stalls and state["waiting"] == 0, (state, samples)
    assert not [e for e in state["errors"] if e["fatal"]], state
    # The playhead moved with the clock the whole time.
    assert samples[-1][1] - first["t"] >= WATCH_S - 2.0, (first, samples)
