"""One sale beyond one Redis core: bucketed stock on a local 3-node Redis Cluster. Prints figures.

    python bench/sale_buckets.py                       # rate 1 vs 3 buckets (20 s each) + soak
    python bench/sale_buckets.py --seconds 5 --attempts 4000   # small, for a shared box

1. Reservation rate of ONE sale with 1 bucket, then with 3 (one per node), from `--procs`
   client processes with `--concurrency` requests in flight each. Besides the wall-clock rate
   it prints each node's CPU-seconds: with one bucket the node owning it does every stock step
   and caps the sale at what one core does; with three, that work splits over three nodes.
   "ceiling" = reservations per CPU-second of the busiest node (what the sale could reach if
   the clients and the box were not the limit), also counted in script time alone (INFO
   commandstats: what one sale's stock work costs a node), and the ratios of the ceilings.
2. Chaos soak on the cluster (bucketed sales only): buyers reserve, pay, give back or let holds
   lapse; the sweeper runs; meanwhile one node at a time is restarted (SIGTERM, AOF) and
   requests are cancelled between their steps (a worker dying mid-reservation). Afterwards,
   with everything quiet, `reconcile` must find every bucket balanced, nothing oversold and
   every buyer's count exact; the bench prints that and exits 1 if not.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from redis.asyncio.cluster import RedisCluster  # noqa: E402
from redis.exceptions import RedisError  # noqa: E402

from commerce.errors import DomainError  # noqa: E402
from commerce.flash_sale.buckets import BucketedStore, bucket_keys  # noqa: E402
from commerce.flash_sale.store import SaleSpec  # noqa: E402
from tests.redis_cluster_support import LocalCluster  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BIG = 100_000_000


def cpu_seconds(pid: int) -> float:
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def spec(sale_id: int, stock: int, limit: int, ttl_s: int = 900, gift: int = 0) -> SaleSpec:
    return SaleSpec(sale_id=sale_id, session_id=1, stock=stock, price_fen=1000,
                    community_price_fen=None, members_only=False, per_buyer_limit=limit,
                    gift_first_n=gift, starts_ms=0, ends_ms=0, hold_ttl_s=ttl_s)


# --- 1. rate --------------------------------------------------------------------------------

def _rate_worker(port: int, sale_id: int, seconds: float, concurrency: int, seed: int,
                 out: Any) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    out.put(asyncio.run(_rate_load(port, sale_id, seconds, concurrency, seed)))


async def _rate_load(port: int, sale_id: int, seconds: float, concurrency: int,
                     seed: int) -> int:
    client = RedisCluster(host="127.0.0.1", port=port, max_connections=4 * concurrency)
    await client.initialize()
    store = BucketedStore(client)
    done = 0
    stop_at = time.perf_counter() + seconds
    rng = random.Random(seed)

    async def loop() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await store.reserve(sale_id, rng.randrange(1, 1_000_000), 1, uuid.uuid4().hex)
            done += 1

    await asyncio.gather(*(loop() for _ in range(concurrency)))
    await client.aclose()
    return done


async def _open(port: int, sale_id: int, buckets: int) -> list[str]:
    client = RedisCluster(host="127.0.0.1", port=port)
    await client.initialize()
    await BucketedStore(client).open(spec(sale_id, BIG, BIG), buckets)
    nodes = [client.get_node_from_key(bucket_keys(sale_id, b, buckets)["meta"]).name
             for b in range(buckets)]
    await client.aclose()
    return nodes


async def _script_usec(ports: list[int], reset: bool) -> list[float]:
    """Microseconds each node spent running scripts (INFO commandstats), or reset the counts."""
    from redis.asyncio import Redis

    out = []
    for port in ports:
        client = Redis(host="127.0.0.1", port=port)
        if reset:
            await client.config_resetstat()
            out.append(0.0)
        else:
            stats = await client.info("commandstats")
            out.append(float(sum(v.get("usec", 0) for k, v in stats.items()
                                 if k in ("cmdstat_evalsha", "cmdstat_eval"))))
        await client.aclose()
    return out


def rate(cluster: LocalCluster, sale_id: int, buckets: int, seconds: float, procs: int,
         concurrency: int) -> dict[str, Any]:
    nodes = asyncio.run(_open(cluster.ports[0], sale_id, buckets))
    asyncio.run(_script_usec(cluster.ports, reset=True))
    cpu0 = [cpu_seconds(pid) for pid in cluster.pids()]
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_rate_worker, args=(cluster.ports[0], sale_id, seconds,
                                                      concurrency, i, queue))
               for i in range(procs)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    made = sum(queue.get() for _ in workers)
    elapsed = time.perf_counter() - started
    for worker in workers:
        worker.join()
    cpu = [cpu_seconds(pid) - c for pid, c in zip(cluster.pids(), cpu0, strict=True)]
    usec = asyncio.run(_script_usec(cluster.ports, reset=False))
    return {"buckets": buckets, "made": made, "rate": made / seconds, "elapsed": elapsed,
            "node_cpu": cpu, "ceiling": made / max(max(cpu), 1e-9),
            "script_usec": usec, "script_ceiling": made / max(max(usec) / 1e6, 1e-9),
            "bucket_nodes": sorted(set(nodes))}


# --- 2. chaos soak --------------------------------------------------------------------------

async def soak(cluster: LocalCluster, attempts: int, buyers: int, sales: int, stock: int,
               limit: int, buckets: int, restarts: int) -> bool:
    port = cluster.ports[0]
    client = RedisCluster(host="127.0.0.1", port=port, max_connections=256)
    await client.initialize()
    store = BucketedStore(client)
    sale_ids = [9_100_000 + i for i in range(sales)]
    for sale_id in sale_ids:
        await store.open(spec(sale_id, stock, limit, ttl_s=2, gift=10), buckets)
    outcomes: dict[str, int] = {}
    faults = {"cancelled": 0, "redis_errors": 0, "node_restarts": 0}
    left = attempts
    stop = asyncio.Event()

    def count(name: str) -> None:
        outcomes[name] = outcomes.get(name, 0) + 1

    async def buyer_loop(buyer: int) -> None:
        nonlocal left
        rng = random.Random(buyer)
        while left > 0:
            left -= 1
            sale_id = rng.choice(sale_ids)
            key = uuid.uuid4().hex
            for _try in range(20):  # the same key until it gets an answer
                task = asyncio.ensure_future(store.reserve(sale_id, buyer, rng.randint(1, 2), key))
                if rng.random() < 0.02:  # a worker dying somewhere between the steps
                    await asyncio.sleep(rng.random() * 0.003)
                    task.cancel()
                try:
                    held = await task
                except asyncio.CancelledError:
                    faults["cancelled"] += 1
                    count("cancelled")
                    break  # that worker is gone; reconcile settles its request
                except DomainError as exc:
                    count(exc.code)
                    if exc.code == "in_flight":
                        await asyncio.sleep(0.05)
                        continue
                    break
                except (RedisError, OSError, AttributeError):
                    # AttributeError: redis-py's cluster client mid-reconnect to a restarted node
                    faults["redis_errors"] += 1
                    await asyncio.sleep(0.2)
                    continue
                count("held")
                roll = rng.random()
                try:
                    if roll < 0.5:
                        await store.confirm(held["hold"], buyer, "pay-" + key)
                        count("paid")
                    elif roll < 0.7:
                        await store.release(held["hold"], buyer)
                        count("given_back")
                except DomainError as exc:
                    count("after_" + exc.code)
                except (RedisError, OSError, AttributeError):
                    faults["redis_errors"] += 1
                break

    async def sweeper() -> None:
        while not stop.is_set():
            for sale_id in sale_ids:
                try:
                    await store.expire(sale_id)
                except (RedisError, OSError, AttributeError):
                    faults["redis_errors"] += 1
            await asyncio.sleep(0.5)

    async def chaos() -> None:
        for i in range(restarts):
            await asyncio.sleep(2.0)
            if stop.is_set():
                return
            await asyncio.to_thread(cluster.restart, i % len(cluster.ports))
            faults["node_restarts"] += 1

    started = time.perf_counter()
    sweep = asyncio.ensure_future(sweeper())
    faulting = asyncio.ensure_future(chaos())
    await asyncio.gather(*(buyer_loop(b) for b in range(1, buyers + 1)))
    elapsed = time.perf_counter() - started
    stop.set()
    await faulting
    await sweep
    await asyncio.sleep(2.5)  # every hold lapses
    ok = True
    print(f"   {attempts:,} attempts in {elapsed:.1f} s; outcomes {dict(sorted(outcomes.items()))}")
    print(f"   faults {faults}")
    for sale_id in sale_ids:
        for _ in range(50):
            try:
                await store.expire(sale_id)
                report = await store.reconcile(sale_id, stale_ms=0)
                break
            except (RedisError, OSError, AttributeError):
                await asyncio.sleep(0.2)
        else:
            raise RuntimeError("the cluster never answered after the soak")
        over_limit = [b for b in range(1, buyers + 1)
                      if await store.bought_by(sale_id, b) > limit]
        again = await store.reconcile(sale_id, stale_ms=0)
        print(f"   sale {sale_id}: remaining {again.remaining}, held {again.held}, "
              f"sold {again.sold} of {stock}; oversold {again.oversold}; unbalanced buckets "
              f"{again.unbalanced_buckets}; buyer drift {len(again.buyer_drift)}; in-flight "
              f"finished {report.finished}, given back {report.given_back}; "
              f"buyers over limit {len(over_limit)}")
        ok = ok and again.ok and not over_limit and again.held == 0
    await client.aclose()
    return ok


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0, help="per rate run")
    parser.add_argument("--procs", type=int, default=3, help="client processes")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight per process")
    parser.add_argument("--attempts", type=int, default=20_000, help="soak attempts (CI size)")
    parser.add_argument("--buyers", type=int, default=300)
    parser.add_argument("--sales", type=int, default=4)
    parser.add_argument("--stock", type=int, default=300, help="units per sale (sells out)")
    parser.add_argument("--limit", type=int, default=3)
    parser.add_argument("--restarts", type=int, default=2, help="node restarts during the soak")
    parser.add_argument("--skip", default="", help="comma list: rate,soak")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    load = os.getloadavg()
    print(f"bucket bench: {os.cpu_count()} CPUs, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    cluster = LocalCluster(3)
    cluster.start()
    ok = True
    try:
        if "rate" not in skip:
            print(f"1. one sale's reservations, {args.procs} client processes × {args.concurrency} "
                  f"in flight, {args.seconds:g} s per run")
            runs = [rate(cluster, 9_000_000 + buckets, buckets, args.seconds, args.procs,
                         args.concurrency) for buckets in (1, 3)]
            for r in runs:
                cpu = ", ".join(f"{c:.1f}" for c in r["node_cpu"])
                scripts = ", ".join(f"{u / 1e6:.2f}" for u in r["script_usec"])
                print(f"   {r['buckets']} bucket(s) on {len(r['bucket_nodes'])} node(s): "
                      f"{r['rate']:,.0f} reservations/s wall; node CPU-s [{cpu}], of it in "
                      f"scripts [{scripts}]; ceiling {r['ceiling']:,.0f} per busiest-node CPU-s, "
                      f"{r['script_ceiling']:,.0f} per busiest-node script-second")
            one, three = runs
            print(f"   3 buckets / 1 bucket: {three['rate'] / max(one['rate'], 1e-9):.2f}x wall "
                  f"clock, {three['ceiling'] / max(one['ceiling'], 1e-9):.2f}x CPU ceiling, "
                  f"{three['script_ceiling'] / max(one['script_ceiling'], 1e-9):.2f}x script "
                  f"ceiling")
        if "soak" not in skip:
            print(f"2. chaos soak on the cluster: {args.attempts:,} attempts, {args.buyers} buyers, "
                  f"{args.sales} sales × {args.stock} units in 3 buckets, limit {args.limit}, "
                  f"{args.restarts} node restarts")
            ok = asyncio.run(soak(cluster, args.attempts, args.buyers, args.sales, args.stock,
                                  args.limit, 3, args.restarts))
            print(f"   nothing oversold, books exact: {'yes' if ok else 'NO'}")
    finally:
        cluster.stop()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
