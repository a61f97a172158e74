"""The in-process event bus: kinds filter subscribers, a failing one is logged, a slow one
delays no other."""

from __future__ import annotations

import asyncio
import contextlib

from commerce.event_payloads import OrderPaid, SessionEnded, StockChanged
from commerce.events import DomainEvent, EventBus

STOCK = StockChanged(sale_id=1, remaining=5, held=1, sold=4, gift_left=0, ver=3)
PAID = OrderPaid(order_id=1, sale_id=1, user_id=2, qty=1, community_id=None)


async def test_kinds_choose_subscribers_and_failures_stay_contained() -> None:
    bus = EventBus()
    seen: dict[str, list[str]] = {"all": [], "paid": [], "broken": []}

    async def every(event: DomainEvent) -> None:
        seen["all"].append(event.kind)

    async def paid_only(event: DomainEvent) -> None:
        seen["paid"].append(event.kind)

    async def broken(event: DomainEvent) -> None:
        seen["broken"].append(event.kind)
        raise RuntimeError("subscriber bug")

    bus.subscribe(every)
    bus.subscribe(paid_only, kinds=("order_paid",))
    unsubscribe = bus.subscribe(broken, kinds=("order_paid", "stock_changed"))
    await bus.publish(DomainEvent("stock_changed", 1, STOCK))
    await bus.publish(DomainEvent("order_paid", 1, PAID))
    assert seen == {"all": ["stock_changed", "order_paid"], "paid": ["order_paid"],
                    "broken": ["stock_changed", "order_paid"]}
    unsubscribe()
    await bus.publish(DomainEvent("stock_changed", 1, STOCK))
    assert seen["broken"] == ["stock_changed", "order_paid"]
    assert seen["all"][-1] == "stock_changed"


async def test_a_slow_subscriber_does_not_hold_up_another() -> None:
    bus = EventBus()
    release = asyncio.Event()
    fast_done = asyncio.Event()

    async def slow(event: DomainEvent) -> None:
        await release.wait()

    async def fast(event: DomainEvent) -> None:
        fast_done.set()

    bus.subscribe(slow, kinds=("session_ended",))
    bus.subscribe(fast)
    ended = DomainEvent("session_ended", 1, SessionEnded(ended_at=None))
    publishing = asyncio.ensure_future(bus.publish(ended))
    await asyncio.wait_for(fast_done.wait(), 5)  # while the slow one still waits
    assert not publishing.done()
    release.set()
    await asyncio.wait_for(publishing, 5)


async def test_stopping_survives_a_swallowed_cancellation() -> None:
    """A step that loses its cancellation (Python 3.11's wait_for race) must not hang stop()."""
    from infra.background import PeriodicTask, cancel_and_wait

    steps = 0

    async def swallowing_step() -> int:
        nonlocal steps
        steps += 1
        with contextlib.suppress(asyncio.CancelledError):  # lost, as the race loses it
            await asyncio.sleep(10)
        return 1

    worker = PeriodicTask("swallower", swallowing_step, idle_s=0.01)
    worker.start()
    await asyncio.sleep(0.05)
    await asyncio.wait_for(worker.stop(), 10)
    assert steps >= 1

    async def stubborn() -> None:
        for _ in range(3):
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                continue  # swallows each one; ends after the third

    task = asyncio.ensure_future(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, recancel_s=0.05), 10)
    assert task.done()
