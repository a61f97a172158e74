"""Live room weight and first frame in real Chromium: how long until a phone shows the first
video frame of a live session, and how many bytes of JavaScript and CSS the room loads.

The server runs with the demo on (its synthetic stream is live in the demo session). Each run
opens the room in a fresh phone-sized context (390×844, cold cache) and records, from the
navigation start: DOMContentLoaded, the first presented video frame (requestVideoFrameCallback),
the playback mode (WebRTC or HLS), and the JS/CSS bytes (encoded = over the wire, decoded).
Runs come in two profiles measured in the same process: unthrottled (the baseline) and a
throttled phone network (Chromium's Network.emulateNetworkConditions over CDP); the throttled
figures are printed as ratios to the baseline. Network emulation shapes HTTP (page, scripts,
WHEP signalling, HLS); WebRTC media over UDP is not shaped by it.

Run: python bench/live_room_weight.py [--runs 3] [--latency-ms 150] [--down-kbps 1600]
Needs the distro Chromium and Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.embedded_redis import EmbeddedRedis
from tests.browser_support import CHROMIUM_ARGS, PHONE, chromium_path, running_server

# Installed before any page script: note when the first frame is presented.
FIRST_FRAME = """
(() => {
  const watch = () => {
    const video = document.getElementById('video');
    if (!video) return;
    const mark = () => { if (window.__firstFrame === undefined) window.__firstFrame = performance.now(); };
    if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(mark);
    else video.addEventListener('loadeddata', mark, { once: true });
  };
  document.addEventListener('DOMContentLoaded', watch);
})();
"""

MEASURE = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  let jsEnc = 0, jsDec = 0, cssEnc = 0, cssDec = 0, files = 0;
  for (const e of performance.getEntriesByType('resource')) {
    const path = new URL(e.name).pathname;
    const isJs = path.endsWith('.js') || path.endsWith('.mjs');
    const isCss = path.endsWith('.css');
    if (!isJs && !isCss) continue;
    files += 1;
    if (isJs) { jsEnc += e.encodedBodySize; jsDec += e.decodedBodySize; }
    else { cssEnc += e.encodedBodySize; cssDec += e.decodedBodySize; }
  }
  return { dcl: nav.domContentLoadedEventEnd, frame: window.__firstFrame, jsEnc, jsDec, cssEnc, cssDec,
           files, mode: document.getElementById('video-status').dataset.mode };
}"""


async def one_run(browser: Any, base: str, session_id: int,
                  throttle: dict[str, Any] | None) -> dict[str, Any]:
    context = await browser.new_context(viewport=PHONE, locale="zh-CN", timezone_id="Asia/Shanghai",
                                        has_touch=True, base_url=base)
    try:
        page = await context.new_page()
        cdp = await context.new_cdp_session(page)
        await cdp.send("Network.enable")
        await cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
        if throttle is not None:
            await cdp.send("Network.emulateNetworkConditions", throttle)
        await page.add_init_script(FIRST_FRAME)
        await page.goto(f"/live/{session_id}")
        await page.wait_for_function("() => window.__firstFrame !== undefined", timeout=60_000)
        return dict(await page.evaluate(MEASURE))
    finally:
        await context.close()


def summary(runs: list[dict[str, Any]]) -> dict[str, float]:
    keys = ("dcl", "frame", "jsEnc", "jsDec", "cssEnc", "cssDec")
    return {k: statistics.median(float(r[k]) for r in runs) for k in keys}


async def main(runs: int, latency_ms: float, down_kbps: float, up_kbps: float) -> None:
    chromium = chromium_path()
    if chromium is None:
        print("Chromium not found (apt-get install chromium); nothing measured")
        return
    from playwright.async_api import async_playwright

    throttled = {"offline": False, "latency": latency_ms,
                 "downloadThroughput": down_kbps * 1000 / 8, "uploadThroughput": up_kbps * 1000 / 8}
    with tempfile.TemporaryDirectory(prefix="linli-bench-room-") as tmp:
        redis = EmbeddedRedis(Path(tmp) / "redis")
        url = redis.start()
        try:
            async with (running_server(Path(tmp), url, {"LINLI_DEMO": "1"}) as (_server, rest),
                        async_playwright() as playwright):
                live = await rest.call("GET", "/api/sessions?status=live")
                if not live:
                    print("no live demo session; nothing measured")
                    return
                session_id = int(live[0]["id"])
                browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                # One warm-up run so the demo stream's first keyframe is not in the baseline.
                await one_run(browser, rest.base, session_id, None)
                results: dict[str, list[dict[str, Any]]] = {"baseline": [], "throttled": []}
                for _ in range(runs):
                    # Interleaved, so drift of the machine hits both profiles alike.
                    results["baseline"].append(await one_run(browser, rest.base, session_id, None))
                    results["throttled"].append(await one_run(browser, rest.base, session_id, throttled))
                await browser.close()
        finally:
            redis.stop()

    base, slow = summary(results["baseline"]), summary(results["throttled"])
    modes = {name: sorted({str(r["mode"]) for r in rs}) for name, rs in results.items()}
    files = results["baseline"][0]["files"]
    print(f"live room, phone 390x844, cold cache, median of {runs} runs per profile")
    print(f"throttled profile: {latency_ms:.0f} ms latency, {down_kbps:.0f} kbit/s down, "
          f"{up_kbps:.0f} kbit/s up (CDP Network.emulateNetworkConditions)")
    print(f"playback modes: baseline {modes['baseline']}, throttled {modes['throttled']}")
    print(f"{'':24} {'baseline':>10} {'throttled':>10} {'ratio':>7}")
    for key, label in (("dcl", "DOMContentLoaded ms"), ("frame", "first video frame ms")):
        print(f"{label:24} {base[key]:>10.0f} {slow[key]:>10.0f} {slow[key] / max(base[key], 1):>7.2f}")
    print(f"JS  bytes (wire / decoded)  {base['jsEnc']:>8.0f} / {base['jsDec']:.0f}")
    print(f"CSS bytes (wire / decoded)  {base['cssEnc']:>8.0f} / {base['cssDec']:.0f}")
    print(f"JS+CSS files                {files:>8}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=150.0)
    parser.add_argument("--down-kbps", type=float, default=1600.0)
    parser.add_argument("--up-kbps", type=float, default=750.0)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.latency_ms, args.down_kbps, args.up_kbps))
