"""The room's stock and group counters end where Redis is, however bursts interleave: a value
carries the sale's version from the script that made it, the later version wins whichever
process saw it when, and the sale is read again (with its version) once things are quiet."""

from __future__ import annotations

import asyncio
import random
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from commerce.events import DomainEvent
from server.keys import events_key
from tests.commerce_support import bulk_buyers, community_with, hold, make_shop, pay
from tests.conftest import ADMIN_PASSWORD, Api
from tests.realtime_support import Recorder, connect, make_room
from tests.test_realtime_cluster import Process, cluster_env, two_processes  # noqa: F401

ROUNDS = 3
STOCK = 20


def _stock_of(state: dict[str, Any], sale_id: int) -> tuple[int, int, int] | None:
    for sale in state.get("sales", []):
        if int(sale.get("sale_id", 0)) == sale_id and "remaining" in sale:
            return int(sale["remaining"]), int(sale["held"]), int(sale["sold"])
    return None


def _group_of(state: dict[str, Any], group_id: int) -> tuple[int, str] | None:
    for group in state.get("groups", []):
        if int(group.get("group_id", 0)) == group_id:
            return int(group["count"]), str(group["status"])
    return None


async def test_an_older_value_seen_later_does_not_win(api: Api) -> None:
    """The failure as it was: a request's answer published after a later one's (stamped later,
    made earlier) replaced it, and nothing corrected it."""
    room = await make_room(api)
    bus = api.app[events_key]
    viewer = await connect(room.url, "/live", {"session_id": room.session_id})
    try:
        await viewer.wait(lambda: viewer.of("state"))
        newer = {"sale_id": 9, "remaining": 0, "held": 6, "sold": 14, "gift_left": 0, "ver": 40}
        older = {"sale_id": 9, "remaining": 0, "held": 12, "sold": 8, "gift_left": 0, "ver": 31}
        await bus.publish(DomainEvent("stock_changed", room.session_id, newer))
        await viewer.wait(lambda: [s for s in viewer.of("state") if _stock_of(s, 9) == (0, 6, 14)])
        # in this process's buffer, and in Redis after a flush: the older value loses both ways
        await bus.publish(DomainEvent("stock_changed", room.session_id, older))
        await bus.publish(DomainEvent("group_progress", room.session_id, {
            "group_id": 4, "sale_id": 9, "community_id": 1, "community_name": "阳光花园",
            "count": 5, "threshold": 10, "unit": "people", "deadline": "2026-11-22T09:00:00+00:00",
            "status": "open", "ver": 40}))
        await asyncio.sleep(0.3)
        await bus.publish(DomainEvent("group_progress", room.session_id, {
            "group_id": 4, "sale_id": 9, "community_id": 1, "community_name": "阳光花园",
            "count": 9, "threshold": 10, "unit": "people", "deadline": "2026-11-22T09:00:00+00:00",
            "status": "open", "ver": 33}))
        await bus.publish(DomainEvent("stock_changed", room.session_id, older))
        await asyncio.sleep(0.5)
        last = viewer.of("state")[-1]
        assert _stock_of(last, 9) == (0, 6, 14) and _group_of(last, 4) == (5, "open")
        late = await connect(room.url, "/live", {"session_id": room.session_id})
        joined = (await late.wait(lambda: late.of("state")))[-1]
        assert _stock_of(joined, 9) == (0, 6, 14) and "ver" not in joined["sales"][0]
        await late.close()
    finally:
        await viewer.close()


async def _converged(http: aiohttp.ClientSession, watchers: list[Recorder], sale_id: int,
                     group_id: int, timeout: float = 10.0) -> tuple[tuple[int, int, int], int]:  # noqa: ASYNC109
    """Wait until every watcher's last state shows what the API says; then it must stay so."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        async with http.get(f"/api/sales/{sale_id}") as resp:
            sale = await resp.json()
        async with http.get(f"/api/group-buys/{group_id}") as resp:
            group = await resp.json()
        truth = (int(sale["remaining"]), int(sale["held"]), int(sale["sold"]))
        lasts = [w.of("state")[-1] if w.of("state") else {} for w in watchers]
        if all(_stock_of(s, sale_id) == truth and _group_of(s, group_id) == (group["count"],
                                                                             group["status"])
               for s in lasts):
            break
        if loop.time() > deadline:
            raise AssertionError(f"room {[(_stock_of(s, sale_id), _group_of(s, group_id)) for s in lasts]}"
                                 f" vs truth {truth} {group['count']}")
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # nothing later undoes it
    for watcher in watchers:
        last = watcher.of("state")[-1]
        assert _stock_of(last, sale_id) == truth
        assert _group_of(last, group_id) == (group["count"], group["status"])
    return truth, int(group["count"])


async def _burst(bases: list[str], sale_id: int, buyers: list[str], seed: int) -> list[int]:
    """Holds from every process at once; each hold is then paid, given back or kept, again on
    any process. Returns the answers' statuses."""
    rng = random.Random(seed)
    plan = [(rng.choice(bases), rng.choice(buyers), rng.choice(("pay", "release", "keep")),
             rng.choice(bases), rng.randint(1, 2)) for _ in range(40)]

    async def one(base: str, token: str, then: str, other: str, qty: int) -> int:
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex}
        async with aiohttp.ClientSession(base) as http:
            async with http.post(f"/api/sales/{sale_id}/holds", json={"qty": qty},
                                 headers=headers) as resp:
                body = await resp.json()
                if resp.status != 201:
                    assert body["error"]["code"] in ("sold_out", "over_limit"), body
                    return resp.status
            hold_id = body["hold_id"]
        auth = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(other) as http:
            if then == "pay":
                async with http.post(f"/api/holds/{hold_id}/pay", headers=auth) as resp:
                    assert resp.status == 200, await resp.text()
            elif then == "release":
                async with http.delete(f"/api/holds/{hold_id}", headers=auth) as resp:
                    assert resp.status == 200, await resp.text()
        return 201

    return list(await asyncio.gather(*(one(*step) for step in plan)))


async def _accounts(base: str) -> tuple[str, list[str], list[int]]:
    """(host token, buyer tokens, buyer ids) made through the API of a running server."""
    async with aiohttp.ClientSession(base) as http:
        async with http.post("/api/auth/token", json={"username": "admin",
                                                      "password": ADMIN_PASSWORD}) as resp:
            admin = (await resp.json())["token"]
        tokens, ids = [], []
        for role in ("host", "viewer", "viewer", "viewer", "viewer"):
            name, password = f"{role}_{secrets.token_hex(4)}", secrets.token_urlsafe(16)
            async with http.post("/api/users", json={"username": name, "password": password,
                                                     "role": role},
                                 headers={"Authorization": f"Bearer {admin}"}) as resp:
                assert resp.status == 201, await resp.text()
                ids.append(int((await resp.json())["id"]))
            async with http.post("/api/auth/token", json={"username": name,
                                                          "password": password}) as resp:
                tokens.append((await resp.json())["token"])
    return tokens[0], tokens[1:], ids[1:]


async def _post(http: aiohttp.ClientSession, path: str, token: str, body: Any) -> Any:
    async with http.post(path, json=body, headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status in (200, 201), await resp.text()
        return await resp.json()


async def test_counters_converge_after_bursts_on_two_processes(
        two_processes: tuple[Process, Process]) -> None:  # noqa: F811
    a, b = two_processes
    host, buyers, buyer_ids = await _accounts(a.url)
    async with aiohttp.ClientSession(a.url) as http:
        async with http.post("/api/auth/token", json={"username": "admin",
                                                      "password": ADMIN_PASSWORD}) as resp:
            admin = (await resp.json())["token"]
        session = await _post(http, "/api/sessions", host, {"title": "两个进程抢购"})
        product = await _post(http, "/api/products", host, {"name": "白沙枇杷", "price_fen": 6800})
        community = await _post(http, "/api/communities", admin, {"name": "阳光花园"})
        for uid in buyer_ids:
            await _post(http, f"/api/communities/{community['id']}/members", admin, {"user_id": uid})
        watchers = [await connect(base, "/live", {"session_id": session["id"]})
                    for base in (a.url, b.url)]
        try:
            for round_ in range(ROUNDS):
                sale = await _post(http, f"/api/sessions/{session['id']}/sales", host, {
                    "product_id": product["id"], "stock": STOCK, "price_fen": 1000,
                    "per_buyer_limit": STOCK, "community_ids": [community["id"]],
                    "community_price_fen": 900})
                deadline = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
                group = await _post(http, f"/api/sales/{sale['id']}/group-buys", host, {
                    "community_id": community["id"], "threshold": 30, "unit": "units",
                    "deadline": deadline, "group_price_fen": 800})
                statuses = await _burst([a.url, b.url], sale["id"], buyers, seed=round_)
                assert 201 in statuses
                (remaining, held, sold), count = await _converged(
                    http, watchers, sale["id"], group["group_id"])
                assert remaining + held + sold == STOCK and count == held + sold
                # closing the sale gives the last word too
                await _post(http, f"/api/sales/{sale['id']}/close", host, {})
                await _converged(http, watchers, sale["id"], group["group_id"])
        finally:
            for watcher in watchers:
                await watcher.close()


async def test_counters_converge_after_bursts_in_one_process(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    buyers = await bulk_buyers(api, 4)
    cid = await community_with(api, "阳光花园", [uid for uid, _t in buyers])
    watcher = await connect(str(api.client.make_url("/")), "/live", {"session_id": shop.session_id})
    base = str(api.client.make_url("")).rstrip("/")
    try:
        for round_ in range(ROUNDS):
            # Each round sells its own product: the earlier rounds' sales are still open.
            product_id = await shop.new_product(f"枇杷 第{round_ + 1}批")
            sale = await shop.sale(product_id=product_id, stock=STOCK, per_buyer_limit=STOCK,
                                   community_ids=[cid], community_price_fen=900)
            resp = await api.client.post(f"/api/sales/{sale['id']}/group-buys", json={
                "community_id": cid, "threshold": 30, "unit": "units", "group_price_fen": 800,
                "deadline": (datetime.now(UTC) + timedelta(hours=1)).isoformat()},
                headers=api.auth(shop.host_token))
            assert resp.status == 201, await resp.text()
            group_id = (await resp.json())["group_id"]
            rng = random.Random(round_)

            async def one(token: str, then: str, qty: int, sale_id: int = sale["id"]) -> None:
                status, body = await hold(api, sale_id, token, qty)
                if status != 201:
                    return
                if then == "pay":
                    assert (await pay(api, body["hold_id"], token))[0] == 200
                elif then == "release":
                    resp = await api.client.delete(f"/api/holds/{body['hold_id']}",
                                                   headers=api.auth(token))
                    assert resp.status == 200

            await asyncio.gather(*(one(rng.choice(buyers)[1], rng.choice(("pay", "release", "keep")),
                                       rng.randint(1, 2)) for _ in range(40)))
            async with aiohttp.ClientSession(base) as fresh:
                (remaining, held, sold), count = await _converged(fresh, [watcher], sale["id"],
                                                                  group_id)
            assert remaining + held + sold == STOCK and count == held + sold
    finally:
        await watcher.close()
