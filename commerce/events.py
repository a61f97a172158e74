"""How domain events leave commerce: a tiny publish/subscribe interface, no transport inside.

realtime/ subscribes and turns events into broadcasts; tests subscribe to assert on them.
Events are published after the change they describe is committed (Zulip's rule).

Every kind has an audience, declared once in `EVENT_KINDS`; an event of an undeclared kind cannot
be made. Events are private by default: only `PUBLIC` kinds may reach a live room, whose members
include anonymous sockets, so a public payload names no buyer (no user id, no amount a buyer paid
or got back, no buyer's community).

Every kind also has a typed, versioned payload (commerce/event_payloads.py), checked when the
event is made: subscribers read `event.payload`, and a payload that does not fit its kind fails
where it is published.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from commerce.event_payloads import PAYLOADS, EventPayload, payload_for

log = logging.getLogger(__name__)


class Audience(enum.StrEnum):
    PUBLIC = "public"  # anyone in the session's room, signed in or not
    USER = "user"  # about one buyer: that buyer and in-process subscribers only (never a room)
    STAFF = "staff"  # the session's host, assistants, admins (never a room)
    INTERNAL = "internal"  # between parts of the server only


EVENT_KINDS: Mapping[str, Audience] = MappingProxyType({
    # the flash sale and its group-buys, as counters and moments of the room
    "sale_opened": Audience.PUBLIC,
    "sale_closed": Audience.PUBLIC,
    "stock_changed": Audience.PUBLIC,
    "group_progress": Audience.PUBLIC,
    "group_outcome": Audience.PUBLIC,
    # the session and its stream
    "product_pinned": Audience.PUBLIC,
    "product_unpinned": Audience.PUBLIC,
    "stream_started": Audience.PUBLIC,
    "session_ended": Audience.PUBLIC,
    "replay_progress": Audience.PUBLIC,
    # one buyer's orders: the room only counts paid orders, without saying whose
    "order_paid": Audience.USER,
    "order_refunded": Audience.USER,
    "order_status": Audience.USER,
    # after-sales work
    "claim_filed": Audience.STAFF,
    "claim_decided": Audience.STAFF,
    # a scheduled session's first publish: its subscribers are told (each privately)
    "session_live": Audience.INTERNAL,
    # a community's notice to its members: each is told privately, never a room
    "community_notice": Audience.INTERNAL,
    # a notification stored for one user (an invitation on camera, a 品鉴官 selection, a
    # trial sample): only that user is told, privately
    "notice_stored": Audience.INTERNAL,
    # between the server's processes (carried by the cluster bus, docs/CLUSTER.md)
    "token_revoked": Audience.INTERNAL,
})
PUBLIC_KINDS = frozenset(k for k, a in EVENT_KINDS.items() if a is Audience.PUBLIC)
if set(PAYLOADS) != set(EVENT_KINDS):
    raise RuntimeError("every event kind has a payload model, and only kinds do: "
                       f"{sorted(set(PAYLOADS) ^ set(EVENT_KINDS))}")

_SALE = ("sale_id", "product_id", "product_name", "price_fen", "community_price_fen", "initial",
         "remaining", "held", "sold", "gift_first_n", "gift_left", "starts_at", "ends_at", "status")
_STOCK = ("sale_id", "remaining", "held", "sold", "gift_left")
_GROUP = ("group_id", "sale_id", "community_id", "community_name", "count", "threshold", "unit",
          "deadline", "status")
_PIN = ("id", "session_id", "product_id", "batch_id", "pinned_at", "unpinned_at", "snapshot",
        "name", "price_fen", "unit", "evidence")
# What of a public event's payload may reach a room; anything else is dropped on the way, so a
# field added to a payload later stays in the server until it is listed here. `ver` is the sale's
# version in Redis (see realtime/state.py): it orders counters, it says nothing about anyone.
PUBLIC_FIELDS: Mapping[str, frozenset[str]] = MappingProxyType({
    "sale_opened": frozenset((*_SALE, "ver")),
    "sale_closed": frozenset((*_SALE, "ver")),
    "stock_changed": frozenset((*_STOCK, "ver")),
    "group_progress": frozenset((*_GROUP, "ver")),
    "group_outcome": frozenset((*_GROUP, "ver")),
    "product_pinned": frozenset(_PIN),
    "product_unpinned": frozenset(),
    "stream_started": frozenset(("ingest",)),
    "session_ended": frozenset(("ended_at",)),
    "replay_progress": frozenset(("status", "percent")),
})


class UnknownEventKind(ValueError):
    """A kind nobody classified: whether it may reach a room is undecided, so it may not exist."""


def ensure_known(kinds: Iterable[str]) -> None:
    for kind in kinds:
        if kind not in EVENT_KINDS:
            raise UnknownEventKind(f"event kind {kind!r} is not declared in EVENT_KINDS")


@dataclass(frozen=True)
class DomainEvent:
    """`kind` is one of EVENT_KINDS, e.g. "stock_changed"; `payload` is that kind's model
    (`StockChanged(...)`; a mapping is validated into it). `origin` is the process that
    published it when it came from another one over the cluster bus, else None."""

    kind: str
    session_id: int | None
    payload: EventPayload
    origin: str | None = field(default=None, compare=False)

    def __init__(self, kind: str, session_id: int | None,
                 payload: EventPayload | Mapping[str, Any], origin: str | None = None) -> None:
        ensure_known((kind,))
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "session_id", session_id)
        object.__setattr__(self, "payload", payload_for(kind, payload))
        object.__setattr__(self, "origin", origin)

    @property
    def audience(self) -> Audience:
        return EVENT_KINDS[self.kind]

    @property
    def data(self) -> dict[str, Any]:
        """The payload's fields as the publisher set them (without its version)."""
        return self.payload.fields_set()

    def public_data(self) -> dict[str, Any] | None:
        """The payload as a room may see it, or None when this kind never reaches a room."""
        allowed = PUBLIC_FIELDS.get(self.kind) if self.audience is Audience.PUBLIC else None
        if allowed is None:
            return None
        return {k: v for k, v in self.data.items() if k in allowed}


Handler = Callable[[DomainEvent], Awaitable[None]]


class EventBus:
    """In-process fan-out to subscribers. A failing subscriber is logged and never blocks others.

    A subscriber may name the kinds it wants: every reservation publishes `stock_changed`, which
    only the live room listens to, and gathering a task per subscriber for it was 14% of a
    worker's time in bench/flash_sale.py. One interested subscriber is awaited directly; several
    run concurrently, so a slow one (a recording finishing at `session_ended`) delays no other.
    """

    def __init__(self) -> None:
        self._handlers: list[tuple[Handler, frozenset[str] | None]] = []

    def subscribe(self, handler: Handler, kinds: Iterable[str] | None = None) -> Callable[[], None]:
        if kinds is not None:
            kinds = tuple(kinds)
            ensure_known(kinds)
        entry = (handler, None if kinds is None else frozenset(kinds))
        self._handlers.append(entry)
        return lambda: self._handlers.remove(entry)

    async def publish(self, event: DomainEvent) -> None:
        # DomainEvent refuses an unknown kind or a payload of another kind when made; checked
        # again here for an object that got past that (object.__setattr__).
        ensure_known((event.kind,))
        payload_for(event.kind, event.payload)
        wanted = [h for h, kinds in self._handlers if kinds is None or event.kind in kinds]
        if len(wanted) == 1:
            try:
                await wanted[0](event)
            except Exception:
                log.exception("event handler failed", extra={"event": event.kind})
            return
        results = await asyncio.gather(*(h(event) for h in wanted), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.error("event handler failed", exc_info=result, extra={"event": event.kind})
