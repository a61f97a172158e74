"""Room state: counters, pinned product, sales and group-buys, kept in one Redis hash per room.

Commerce publishes thousands of `stock_changed` events a second during a flash sale; the live
room needs only the latest value ten times a second. Each process coalesces what it observes
(latest value per field, sums for likes and paid orders) and flushes every 100 ms with
`state_flush.lua`, which writes the fields and, at most once per 100 ms per room across all
processes, publishes the full snapshot.

Which value of a field wins is decided by its order key (version, observed_ms). Counters of a sale
(its stock and its group-buys) carry the sale's version from Redis: every sale script that
changes them increments it in the same step and hands it back, so of two values the one with the
higher version is the later state, whichever process observed it when. A value observed later
but made earlier (a slow request's answer) loses, and the last change's value wins everywhere.
Fields Redis does not version (the pin, the session's status) have version 0 and fall back on
the time they were observed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from commerce.events import DomainEvent
from realtime.history import Event, dumps, load_script, room_key

log = logging.getLogger(__name__)

STATE_PERIOD_S = 0.1  # ≤ 10 state updates per second per room
STATE_TTL_S = 2 * 24 * 3600
VIEWER_ENTRY_TTL_MS = 15_000
VIEWER_REFRESH_S = 5.0

_INT_FIELDS = ("v", "viewers", "likes", "orders_paid")
_STOCK_KEYS = ("remaining", "held", "sold", "gift_left")


def now_ms() -> int:
    return int(time.time() * 1000)


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as the API writes times: ISO 8601 with its offset. Socket frames carry
    both, `ts` (ms, what clients before `at` read) and `at` (this)."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def stamped(body: dict[str, Any], ms: int) -> dict[str, Any]:
    """`body` with `ts` (epoch ms) and `at` (the same instant, ISO 8601 with offset)."""
    return dict(body, ts=ms, at=iso_ms(ms))


def wire_comment(event: Event) -> dict[str, Any]:
    """A stored comment as the `comments` frame lists it: without the history's kind tag, and
    with `at` beside `ts` (derived, so comments stored before `at` existed get one too)."""
    body = {k: v for k, v in event.items() if k != "ev"}
    ts = body.get("ts")
    if isinstance(ts, int) and not isinstance(ts, bool) and "at" not in body:
        body["at"] = iso_ms(ts)
    return body


def snapshot(room: int, fields: dict[Any, Any]) -> dict[str, Any]:
    """The `state` payload built from the room's hash (bytes or str keys and values)."""
    out: dict[str, Any] = {
        "session_id": room, "v": 0, "viewers": 0, "likes": 0, "orders_paid": 0,
        "pinned": None, "pinned_question": None, "slow_mode_s": 0, "status": "live",
        "ended_at": None, "sales": [], "groups": [], "question_votes": {},
    }
    sales: dict[int, dict[str, Any]] = {}
    stocks: dict[int, dict[str, Any]] = {}
    groups: list[dict[str, Any]] = []
    for raw_key, raw_value in fields.items():
        key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
        text = raw_value.decode() if isinstance(raw_value, bytes) else str(raw_value)
        if key in _INT_FIELDS:
            out[key] = int(text)
            continue
        _observed, _, body = text.partition("|")
        value: Any = json.loads(body) if body else None
        prefix, _, ident = key.partition(":")
        if prefix == "sale":
            sales[int(ident)] = value
        elif prefix == "stock":
            stocks[int(ident)] = value
        elif prefix == "group":
            groups.append(value)
        elif prefix == "qv":
            out["question_votes"][ident] = value
        elif key == "session":
            out["status"] = value.get("status", "live")
            out["ended_at"] = value.get("ended_at")
        elif key in ("pinned", "pinned_question", "slow_mode_s"):
            out[key] = value
    for sale_id, stock in stocks.items():
        sales.setdefault(sale_id, {"sale_id": sale_id}).update(stock)
    out["sales"] = [sales[k] for k in sorted(sales)]
    out["groups"] = sorted(groups, key=lambda g: int(g.get("group_id") or 0))
    return out


async def read_snapshot(redis: Redis, room: int) -> dict[str, Any]:
    return snapshot(room, await redis.hgetall(room_key(room, "state")))


OrderKey = tuple[int, int]  # (version, observed_ms)


@dataclass
class _Pending:
    # name → (order, value): serialized when flushed, so a burst of stock changes costs one
    # encoding per 100 ms, not one per reservation (values are fresh objects nobody mutates).
    fields: dict[str, tuple[OrderKey, Any]] = field(default_factory=dict)
    likes: int = 0
    orders: int = 0
    viewers: bool = False
    publish: bool = False


class StateCoalescer:
    """Per-process latest-value buffer for room state, flushed every 100 ms."""

    def __init__(self, redis: Redis, channel: str, host_id: str,
                 local_viewers: Callable[[int], int], active_rooms: Callable[[], list[int]]) -> None:
        self._redis = redis
        self._channel = channel
        self._host_id = host_id
        self._local_viewers = local_viewers
        self._active_rooms = active_rooms
        self._flush_script = load_script(redis, "state_flush.lua")
        self._pending: dict[int, _Pending] = {}
        self._wake = asyncio.Event()
        self.published = 0

    def set_field(self, room: int, name: str, value: Any, version: int = 0) -> None:
        """Set `name` unless this process already holds a later value of it (higher version)."""
        fields = self._room(room).fields
        order = (version, now_ms())
        held = fields.get(name)
        if held is None or held[0] <= order:
            fields[name] = (order, value)

    def add_likes(self, room: int, count: int) -> None:
        self._room(room).likes += count

    def add_orders(self, room: int, count: int) -> None:
        self._room(room).orders += count

    def viewers_changed(self, room: int) -> None:
        self._room(room).viewers = True

    def _room(self, room: int) -> _Pending:
        pending = self._pending.get(room)
        if pending is None:
            pending = self._pending[room] = _Pending()
            self._wake.set()
        pending.publish = True
        return pending

    async def run(self) -> None:
        """Flush loop: wakes when something is pending, then at most every STATE_PERIOD_S."""
        last_refresh = 0.0
        while True:
            if not self._pending:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), VIEWER_REFRESH_S)
            if time.monotonic() - last_refresh >= VIEWER_REFRESH_S:
                last_refresh = time.monotonic()
                for room in self._active_rooms():
                    self.viewers_changed(room)
            started = time.monotonic()
            try:
                await self.flush()
            except Exception:
                log.exception("state flush failed; retrying")
            await asyncio.sleep(max(0.0, STATE_PERIOD_S - (time.monotonic() - started)))

    async def flush(self) -> None:
        batch, self._pending = self._pending, {}
        for room, pending in batch.items():
            try:
                version = await self._flush_room(room, pending)
            except Exception:
                # Keep what we have for the next tick (a newer value may replace it meanwhile).
                again = self._room(room)
                for name, value in pending.fields.items():
                    newer = again.fields.get(name)
                    if newer is None or newer[0] < value[0]:
                        again.fields[name] = value
                again.likes += pending.likes
                again.orders += pending.orders
                again.viewers = again.viewers or pending.viewers
                raise
            if version:
                self.published += 1
            elif pending.publish:
                # Another process published within the gate period: ours goes out next tick.
                self._room(room)

    async def _flush_room(self, room: int, pending: _Pending) -> int:
        args: list[Any] = [
            self._channel, room, now_ms(), int(STATE_PERIOD_S * 1000), STATE_TTL_S, self._host_id,
            self._local_viewers(room) if pending.viewers else "", VIEWER_ENTRY_TTL_MS,
            pending.likes, pending.orders,
        ]
        for name, ((version, observed), value) in pending.fields.items():
            args += [name, version, observed, dumps(value)]
        keys = [room_key(room, "state"), room_key(room, "viewers"), room_key(room, "gate")]
        return int(await self._flush_script(keys=keys, args=args))


def commerce_to_room(event: DomainEvent, state: StateCoalescer) -> Event | None:
    """Apply a commerce event to the room state; return the room event to number and send, if any.

    Only public kinds reach the room, and of their payload only the public fields
    (`DomainEvent.public_data`); every other kind is private by default. The one thing the room
    learns from a buyer's `order_paid` is that the paid-orders counter goes up by one.

    Counters (stock, group progress, paid orders) only change state; discrete moments (a sale
    opens or closes, a group-buy succeeds or fails, the session ends, a pin) also become
    history events. Other public kinds (media's `stream_started`, `replay_progress`) are
    forwarded as `event`.
    """
    assert event.session_id is not None
    room, kind = event.session_id, event.kind
    data = event.public_data()
    if data is None:
        if kind == "order_paid":
            state.add_orders(room, 1)
        return None
    version = int(data.pop("ver", 0) or 0)
    if kind in ("sale_opened", "sale_closed"):
        sale_id = int(data["sale_id"])
        state.set_field(room, f"sale:{sale_id}",
                        {k: v for k, v in data.items() if k not in _STOCK_KEYS}, version)
        state.set_field(room, f"stock:{sale_id}",
                        {k: data[k] for k in _STOCK_KEYS if k in data}, version)
        return {"ev": kind, "sale": data}
    if kind == "stock_changed":
        state.set_field(room, f"stock:{int(data['sale_id'])}",
                        {k: data[k] for k in _STOCK_KEYS if k in data}, version)
        return None
    if kind in ("group_progress", "group_outcome"):
        state.set_field(room, f"group:{int(data['group_id'])}", data, version)
        return {"ev": kind, "group": data} if kind == "group_outcome" else None
    if kind == "session_ended":
        # Nothing is being presented any more: no 讲解中 for late joiners either.
        state.set_field(room, "session", {"status": "ended", "ended_at": data.get("ended_at")})
        state.set_field(room, "pinned", None)
        return {"ev": "session_ended", "ended_at": data.get("ended_at")}
    if kind == "product_pinned":
        state.set_field(room, "pinned", data)
        return {"ev": "pinned", "pin": data}
    if kind == "product_unpinned":
        state.set_field(room, "pinned", None)
        return {"ev": "unpinned", "pin": None}
    return {"ev": "event", "kind": kind, "data": data}
