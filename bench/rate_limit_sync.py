"""What the rate limiter's sharing costs a worker, in CPU-seconds (so a busy box does not skew it).

    python bench/rate_limit_sync.py                # 2,000 buyers tapping once a second, 60 s
    python bench/rate_limit_sync.py --seconds 20

Drives `RateLimiter` the way the holds route does (per-user and per-address checks; loopback is
exempt per address, as in bench/flash_sale.py) on simulated 100 ms ticks against a real Redis,
and measures the process CPU time of the sharing alone, three ways:
- baseline: every counter every tick in a pipeline of INCRBY + EXPIRE (how it was shared before);
- one lane: every counter every tick, in one script call (`rate_limit_add.lua`);
- two lanes: the limiter's default (counters far below their limit wait for the slow tick).
Prints CPU-ms per second of traffic and the share of one core, and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from redis.asyncio import Redis  # noqa: E402

from infra.settings import Settings  # noqa: E402
from server.embedded_redis import EmbeddedRedis  # noqa: E402
from server.rate_limits import SYNC_S, RateLimiter  # noqa: E402


async def pipeline_sync(rl: RateLimiter, redis: Redis, expiring: set[str]) -> None:
    """The sharing as it was: INCRBY per counter, EXPIRE once per counter, one pipeline."""
    batch, rl._pending = rl._pending, {}
    rl._urgent = set()
    if not batch:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for key, count in batch.items():
            pipe.incrby(key, count)
        for key in batch.keys() - expiring:
            pipe.expire(key, 21)
        results = await pipe.execute()
    for key, total in zip(batch, results, strict=False):
        rl._known[key] = int(total)
    expiring |= batch.keys()


async def run(mode: str, url: str, buyers: int, seconds: float) -> float:
    redis = Redis.from_url(url)
    await redis.flushall()
    rl = RateLimiter(Settings(secret_key="x" * 32))
    rl.redis = redis
    rng = random.Random(1)
    ticks = int(seconds / SYNC_S)
    per_tick = int(buyers * SYNC_S)  # each buyer taps about once a second
    slow_every = max(1, round(rl.slow_sync_s / SYNC_S))
    expiring: set[str] = set()
    start = time.time()
    cpu = 0.0
    for tick in range(ticks):
        now = start + tick * SYNC_S
        for _ in range(per_tick):
            rl.hit([(rl.holds_user, str(rng.randrange(buyers))), (rl.holds_ip, "127.0.0.1")],
                   now=now)
        before = time.process_time()
        if mode == "baseline":
            await pipeline_sync(rl, redis, expiring)
        elif mode == "one lane":
            await rl.sync()
        else:
            await rl.sync(everything=tick % slow_every == 0)
        cpu += time.process_time() - before
    await redis.aclose()
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--buyers", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=60.0, help="simulated seconds of traffic")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"rate-limit sharing: {args.buyers} buyers tapping ~1/s, {args.seconds:g} s simulated; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="linli-rl-")))
    url = server.start()
    try:
        figures = {mode: asyncio.run(run(mode, url, args.buyers, args.seconds))
                   for mode in ("baseline", "one lane", "two lanes")}
    finally:
        server.stop()
    base = figures["baseline"]
    for mode, cpu in figures.items():
        print(f"   {mode:>9}: {1000 * cpu / args.seconds:6.1f} CPU-ms per second of traffic "
              f"({100 * cpu / args.seconds:.1f}% of a core), {cpu / base:.2f}x the baseline")


if __name__ == "__main__":
    main()
