"""Commerce events → room state: coalesced counters, sale/group moments in history, unknown kinds
forwarded. Driven by publishing DomainEvents on the app's bus, the real interface."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from commerce.events import DomainEvent
from server.keys import events_key
from tests.conftest import Api
from tests.realtime_support import connect, make_room

SALE = {"sale_id": 7, "product_id": 3, "product_name": "红富士苹果", "price_fen": 2990,
        "community_price_fen": 2590, "initial": 1000, "remaining": 1000, "held": 0, "sold": 0,
        "gift_first_n": 30, "gift_left": 30, "starts_at": "2026-11-22T08:00:00+00:00",
        "ends_at": "2026-11-22T09:00:00+00:00", "status": "open", "ver": 0}


async def test_counters_are_coalesced_to_ten_updates_a_second(api: Api) -> None:
    room = await make_room(api)
    bus = api.app[events_key]
    viewer = await connect(room.url, "/live", {"session_id": room.session_id})
    try:
        await viewer.wait(lambda: viewer.of("state"))
        await bus.publish(DomainEvent("sale_opened", room.session_id, SALE))
        opened = await viewer.wait(lambda: viewer.of("sale_opened"))
        assert opened[0]["sale"]["product_name"] == "红富士苹果" and opened[0]["seq"] >= 1
        before = len(viewer.of("state"))
        # 1,000 stock events a second for 2 seconds (plus group progress and paid orders)
        started = time.monotonic()
        for i in range(2000):
            await bus.publish(DomainEvent("stock_changed", room.session_id, {
                "sale_id": 7, "remaining": 1000 - i // 2, "held": i % 5, "sold": i // 2,
                "gift_left": max(0, 30 - i // 2), "ver": 0}))
            if i % 10 == 0:
                await bus.publish(DomainEvent("group_progress", room.session_id, {
                    "group_id": 1, "sale_id": 7, "community_id": 2, "community_name": "XX花园",
                    "count": i // 10, "threshold": 200, "unit": "people",
                    "deadline": "2026-11-22T09:00:00+00:00", "status": "open", "ver": 0}))
                await bus.publish(DomainEvent("order_paid", room.session_id, {
                    "order_id": i, "sale_id": 7, "user_id": 1, "qty": 1, "community_id": 2}))
            ahead = started + (i + 1) / 1000 - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
        elapsed = time.monotonic() - started
        final = await viewer.wait(lambda: [s for s in viewer.of("state")
                                           if s["sales"] and s["sales"][0]["remaining"] == 1000 - 1999 // 2
                                           and s["orders_paid"] == 200])
        window = viewer.of("state")[before:]
        rate = len(window) / max(elapsed, 1.0)
        assert len(window) <= (elapsed + 0.5) * 10 + 1, (len(window), elapsed)
        assert rate <= 11, rate
        assert len(window) >= 5  # it did update while the sale ran
        sale = final[-1]["sales"][0]
        assert sale["product_name"] == "红富士苹果" and sale["sold"] == 1999 // 2
        assert final[-1]["groups"][0]["count"] == 199 and final[-1]["groups"][0]["community_name"] == "XX花园"
        versions = [s["v"] for s in viewer.of("state")]
        assert versions == sorted(versions)
    finally:
        await viewer.close()


async def test_moments_and_unknown_kinds_become_room_events(api: Api) -> None:
    room = await make_room(api)
    bus = api.app[events_key]
    viewer = await connect(room.url, "/live", {"session_id": room.session_id})
    try:
        await viewer.wait(lambda: viewer.of("state"))
        await bus.publish(DomainEvent("replay_progress", room.session_id,
                                      {"status": "processing", "percent": 40}))
        await bus.publish(DomainEvent("group_outcome", room.session_id, {
            "group_id": 1, "sale_id": 7, "community_id": 2, "community_name": "XX花园", "count": 40,
            "threshold": 40, "unit": "people", "deadline": "2026-11-22T09:00:00+00:00",
            "status": "succeeded", "ver": 0}))
        ended_at = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
        await bus.publish(DomainEvent("session_ended", room.session_id, {"ended_at": ended_at}))
        forwarded = await viewer.wait(lambda: viewer.of("event"))
        assert forwarded[0]["kind"] == "replay_progress" and forwarded[0]["data"]["percent"] == 40
        outcome = await viewer.wait(lambda: viewer.of("group_outcome"))
        assert outcome[0]["group"]["status"] == "succeeded"
        ended = await viewer.wait(lambda: viewer.of("session_ended"))
        assert ended[0]["ended_at"] == ended_at.isoformat()
        seqs = [forwarded[0]["seq"], outcome[0]["seq"], ended[0]["seq"]]
        assert seqs == sorted(seqs) and len(set(seqs)) == 3
        await viewer.wait(lambda: [s for s in viewer.of("state") if s["status"] == "ended"])
        # a late joiner sees the same state
        late = await connect(room.url, "/live", {"session_id": room.session_id})
        state = (await late.wait(lambda: late.of("state")))[0]
        assert state["status"] == "ended" and state["groups"][0]["status"] == "succeeded"
        await late.close()
        # other rooms are untouched
        other = await make_room(api)
        elsewhere = await connect(other.url, "/live", {"session_id": other.session_id})
        state = (await elsewhere.wait(lambda: elsewhere.of("state")))[0]
        assert state["status"] == "live" and state["groups"] == []
        await elsewhere.close()
    finally:
        await viewer.close()
