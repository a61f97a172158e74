"""Live-room comment rendering in real Chromium: does the page keep its frame rate while comments
pour in? Feeds the page's own CommentList the way the hub delivers them (one batch per ~100 ms)
at several rates, and prints frame intervals (p50/p99/max), long tasks (> 50 ms) and the list
size. Run: python bench/web_comments.py [--seconds 8]. Needs the distro Chromium and Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.embedded_redis import EmbeddedRedis
from tests.browser_support import CHROMIUM_ARGS, chromium_path, running_server

FEED = """async ([perSecond, seconds]) => {
  const list = window.linliLive.comments;
  const frames = [];
  let longTasks = 0;
  let longest = 0;
  new PerformanceObserver((entries) => {
    for (const e of entries.getEntries()) { longTasks += 1; longest = Math.max(longest, e.duration); }
  }).observe({ type: 'longtask', buffered: false });
  let last = performance.now();
  let running = true;
  const tick = (now) => { frames.push(now - last); last = now; if (running) requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  const perBatch = Math.max(1, Math.round(perSecond / 10));
  let n = 0;
  const started = performance.now();
  while (performance.now() - started < seconds * 1000) {
    const batch = [];
    for (let i = 0; i < perBatch; i++, n++) {
      batch.push({ id: `b${n}`, seq: n + 1, user: { id: n % 500, name: `邻居${n % 500}` },
                   text: `第${n}条:这批枇杷真甜,给我留两斤 🍑`, ts: Date.now() });
    }
    list.add(batch);
    await new Promise((r) => setTimeout(r, 100));
  }
  running = false;
  await new Promise((r) => setTimeout(r, 200));
  frames.sort((a, b) => a - b);
  const pick = (q) => frames[Math.min(frames.length - 1, Math.floor(q * frames.length))];
  return { sent: n, frames: frames.length, p50: pick(0.5), p99: pick(0.99), max: frames[frames.length - 1],
           longTasks, longest, listed: document.querySelector('#comment-list').childElementCount };
}"""


async def main(seconds: float) -> None:
    chromium = chromium_path()
    if chromium is None:
        print("Chromium not found (apt-get install chromium); nothing measured")
        return
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory(prefix="linli-bench-web-") as tmp:
        redis = EmbeddedRedis(Path(tmp) / "redis")
        url = redis.start()
        try:
            async with (running_server(Path(tmp), url) as (_server, rest),
                        async_playwright() as playwright):
                host = await rest.account("benchhost", "host", "主播")
                sid = (await rest.call("POST", "/api/sessions", host.token, json={"title": "bench"}))["id"]
                browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                page = await browser.new_page(viewport={"width": 420, "height": 860},
                                              base_url=rest.base)
                await page.goto(f"/live/{sid}")
                await page.wait_for_function(
                    "() => window.linliLive && window.linliLive.conn.socket.connected")
                print(f"comment rendering, {seconds:.0f} s per rate, headless Chromium, 420x860 viewport")
                print(f"{'comments/s':>10} {'frames':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
                      f"{'long tasks':>10} {'longest ms':>10} {'in list':>7}")
                for rate in (50, 200, 1000):
                    r = await page.evaluate(FEED, [rate, seconds])
                    print(f"{rate:>10} {r['frames']:>7} {r['p50']:>7.1f} {r['p99']:>7.1f} {r['max']:>7.1f} "
                          f"{r['longTasks']:>10} {r['longest']:>10.1f} {r['listed']:>7}")
                await browser.close()
        finally:
            redis.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0)
    asyncio.run(main(parser.parse_args().seconds))
