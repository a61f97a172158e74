"""The sale scripts run unchanged on a local 3-node Redis Cluster (hash tags keep a sale in one slot)."""

from __future__ import annotations

import asyncio
import collections

import pytest
from redis.asyncio.cluster import RedisCluster

from commerce.errors import DomainError
from commerce.flash_sale.store import FlashSaleStore, HoldExpired, NoSuchHold, SaleSpec, SoldOut, keys, now_ms


def _spec(sale_id: int, stock: int, limit: int = 2, ttl: int = 60) -> SaleSpec:
    return SaleSpec(sale_id=sale_id, session_id=1, stock=stock, price_fen=1000,
                    community_price_fen=800, members_only=False, per_buyer_limit=limit,
                    gift_first_n=3, starts_ms=0, ends_ms=0, hold_ttl_s=ttl)


async def test_sale_scripts_on_a_three_node_cluster(cluster_ports: list[int]) -> None:
    client = RedisCluster(host="127.0.0.1", port=cluster_ports[0])
    try:
        await client.initialize()
        store = FlashSaleStore(client)
        sale_ids = list(range(1, 9))
        # The sales spread over more than one node; each sale's keys share one slot.
        slots = {sid: {client.keyslot(k) for k in keys(sid).values()} for sid in sale_ids}
        assert all(len(s) == 1 for s in slots.values())
        nodes = {client.get_node_from_key(keys(sid)["meta"]).name for sid in sale_ids}
        assert len(nodes) >= 2, nodes
        for sid in sale_ids:
            assert await store.open(_spec(sid, stock=20), {7: [5]})
            assert not await store.open(_spec(sid, stock=999), {})  # idempotent: no reset

        gate = asyncio.Semaphore(64)  # the cluster client's per-node pool is bounded

        async def attempt(sid: int, buyer: int, key: str) -> str:
            try:
                async with gate:
                    return str((await store.reserve(sid, buyer, 1, None, key))["hold"])
            except SoldOut:
                return "sold_out"
            except DomainError as exc:  # over_limit
                return exc.code

        results = await asyncio.gather(*(attempt(sid, b, f"k{b}-{n % 3}") for sid in sale_ids
                                         for b in range(30) for n in range(4)))
        held = {r for r in results if "-" in r}
        assert len(held) == 20 * len(sale_ids), collections.Counter(r for r in results if "-" not in r)
        for sid in sale_ids:
            counts = await store.counts(sid)
            assert counts is not None and (counts.remaining, counts.held) == (0, 20)

        # confirm / release / expire / refund / close, each on the cluster.
        sid = sale_ids[0]
        mine = sorted(h for h in held if h.startswith(f"{sid}-"))
        holds = {h: await store.hold(h) for h in mine}
        first = mine[0]
        paid = await store.confirm(first, int(holds[first]["b"]), "ref1", 1000)  # type: ignore[index]
        assert paid["paid_rank"] == 1 and paid["gift"] == 1
        assert (await store.confirm(first, None, "ref1", 1000)) == paid
        released = await store.release(mine[1], None)
        assert released["remaining"] == 1
        with pytest.raises(HoldExpired):  # past its expiry, not yet swept
            await store.confirm(mine[2], None, "late", 1000, now=now_ms() + 61_000)
        expired = await store.expire(sid, now=now_ms() + 61_000)
        assert expired["expired"] == 18 and expired["remaining"] == 19
        with pytest.raises(NoSuchHold):  # swept: gone
            await store.confirm(mine[2], None, "late", 1000)
        refund = await store.refund(first, int(paid["buyer"]), 1, None)
        assert (refund["sold"], refund["remaining"], refund["again"]) == (0, 20, 0)
        assert (await store.refund(first, int(paid["buyer"]), 1, None))["again"] == 1
        log = await client.xrange(keys(sid)["log"])
        assert len(log) == 1
        closed = await store.close(sid)
        assert closed["closed"] == 1
        counts = await store.counts(sid)
        assert counts is not None and counts.initial == counts.remaining + counts.held + counts.sold
    finally:
        await client.aclose()
