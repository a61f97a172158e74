"""hls.js in Chromium plays a live stream for a minute, across a publisher reconnect.

The publisher is ffmpeg over RTMP (a small synthetic picture, paced in real time, so the box
stays quiet); it stops half-way and a new one takes over within the grace, as a phone app
reconnecting would. The live window is six ~2 s segments, so within the minute the first
segment, the reconnect's EXT-X-DISCONTINUITY and several more slide out of the playlist: each
of those refreshes must keep hls.js's numbering (a "discontinuity sequence mismatch" is fatal
and freezes the picture) while the playhead keeps moving. The playlist is Low-Latency HLS
(docs/LLHLS.md): hls.js in low-latency mode loads parts and blocks on reloads, and plays within
a few seconds of live.
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

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

PART_S = 30.0
OUTAGE_S = 2.0
WATCH_S = 62.0

# The live page's hls.js player (web/static/js/player.js); every error is kept, not only fatal.
START_HLS = """async (url) => {
  const Hls = (await import('/vendor/hls/hls.mjs')).default;
  const { liveHlsConfig, keepNearLive } = await import('/static/js/player.js');
  if (!Hls.isSupported()) return 'unsupported';
  const video = document.createElement('video');
  video.muted = true; video.autoplay = true; video.playsInline = true;
  document.body.appendChild(video);
  window.__video = video;
  window.__errors = [];
  const hls = new Hls(liveHlsConfig());
  hls.on(Hls.Events.ERROR, (_event, data) => {
    window.__errors.push({ fatal: !!data.fatal, type: data.type, details: data.details,
                           reason: String(data.error || data.reason || '').slice(0, 300) });
    if (data.fatal && data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
  });
  hls.loadSource(url);
  hls.attachMedia(video);
  keepNearLive(hls, video);
  window.__hls = hls;
  return 'ok';
}"""

STATE = """() => {
  const details = window.__hls.latestLevelDetails;
  return { t: window.__video.currentTime, errors: window.__errors,
           ready: window.__video.readyState, parts: details?.partList?.length ?? 0,
           canBlock: !!details?.canBlockReload, latency: window.__hls.latency };
}"""


async def _publish(url: str, seconds: float) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *rtmp_publish_argv(url, seconds), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)


async def test_hls_js_plays_a_minute_of_live_across_a_reconnect(
    tmp_path: Path, redis_url: str, redis_client: Redis
) -> None:
    rtmp_port = free_port()
    env = {"LINLI_RTMP_PORT": str(rtmp_port), "LINLI_PUBLISHER_GRACE_S": "30"}
    publishers: list[asyncio.subprocess.Process] = []
    async with browser_kit(tmp_path, redis_url, "hls_live_reconnect", env) as kit:
        host = await kit.rest.account("laozhang", "host", "老张")
        session = await kit.rest.call("POST", "/api/sessions", host.token, json={"title": "枇杷园"})
        sid, key = int(session["id"]), str(session["stream_key"])
        rtmp_url = f"rtmp://127.0.0.1:{rtmp_port}/live/{key}"
        playlist_url = f"/hls/{sid}/index.m3u8"
        try:
            publishers.append(await _publish(rtmp_url, PART_S))
            started = time.monotonic()
            await wait_playlist(kit.rest.http, kit.base + playlist_url, 2)
            page = await kit.page(None, "/replays", label="hls.js")
            assert await page.evaluate(START_HLS, playlist_url) == "ok"
            await page.wait_for_function("() => window.__video.currentTime > 0.5", timeout=30_000)

            samples: list[tuple[float, float, float]] = []
            watch_from = time.monotonic()
            reconnected = False
            while time.monotonic() - watch_from < WATCH_S:
                if not reconnected and time.monotonic() - started >= PART_S + OUTAGE_S:
                    assert await asyncio.wait_for(publishers[0].wait(), 20) == 0
                    publishers.append(await _publish(rtmp_url, WATCH_S))
                    reconnected = True
                state: dict[str, Any] = await page.evaluate(STATE)
                samples.append((time.monotonic() - watch_from, float(state["t"]),
                                float(state["latency"] or 0)))
                fatal = [e for e in state["errors"] if e["fatal"]]
                assert not fatal, (fatal, samples)
                await asyncio.sleep(1.0)
            assert reconnected
            state = await page.evaluate(STATE)
            await kit.shot(page, "after_a_minute")
        finally:
            for proc in publishers:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()

    # hls.js took the low-latency path: parts listed, blocking reloads, close to live.
    assert state["parts"] > 0 and state["canBlock"], state
    latencies = [lat for _t, _p, lat in samples[-20:]]
    assert max(latencies) < 4.0, samples
    # The playlist refreshes hls.js refused: none (each one would have been a parsing error).
    parsing = [e for e in state["errors"] if "sequence" in e["reason"] or
               e["details"] == "levelParsingError"]
    assert not parsing, parsing
    # The playhead never stood still for long: at most the outage plus a segment or two while
    # the reconnect's first segments were cut, and it covered most of the minute.
    for (t0, p0, _), (t1, p1, _) in zip(samples, samples[8:], strict=False):
        assert p1 - p0 >= 1.0, (f"playback stalled between {t0:.0f}s and {t1:.0f}s", samples)
    assert samples[-1][1] - samples[0][1] >= WATCH_S - 3 * OUTAGE_S - 8, samples
