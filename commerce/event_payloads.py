"""The payload of every event kind: a typed, versioned model, checked when the event is made.

Each model names its kind (`KIND`) and carries `v`, the version of its shape. A field is added
with a default and the same `v`; a field renamed, removed or retyped is a new `v`. A process
that reads another's event of a version it does not know (the cluster bus, during a rolling
upgrade) refuses it by name rather than guess (`read_payload`).

Strict: a wrong type is an error, not a conversion (a count given as "3" fails where it is
published, not in a room). What a room is sent is `DomainEvent.public_data()`: the fields the
publisher set, less `v` and less anything not listed in `PUBLIC_FIELDS`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError


class EventPayload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    KIND: ClassVar[str]
    v: Literal[1] = 1

    def fields_set(self) -> dict[str, Any]:
        """The fields the publisher gave, as Python values (datetimes stay datetimes)."""
        return self.model_dump(exclude_unset=True, exclude={"v"})

    def to_json(self) -> str:
        """Its wire form between processes: the given fields and the version."""
        return json.dumps({"v": self.v, **self.model_dump(mode="json", exclude_unset=True,
                                                          exclude={"v"})})


# --- the flash sale and its group-buys ------------------------------------------------------

class _SaleCard(EventPayload):
    sale_id: int
    product_id: int
    product_name: str
    price_fen: int
    community_price_fen: int | None
    initial: int
    remaining: int
    held: int
    sold: int
    gift_first_n: int
    gift_left: int
    starts_at: str
    ends_at: str | None
    status: str
    ver: int


class SaleOpened(_SaleCard):
    KIND = "sale_opened"


class SaleClosed(_SaleCard):
    KIND = "sale_closed"


class StockChanged(EventPayload):
    KIND = "stock_changed"
    sale_id: int
    remaining: int
    held: int
    sold: int
    gift_left: int
    ver: int


class _GroupCard(EventPayload):
    group_id: int
    sale_id: int
    community_id: int
    community_name: str
    count: int
    threshold: int
    unit: str
    deadline: str
    status: str
    ver: int


class GroupProgress(_GroupCard):
    KIND = "group_progress"


class GroupOutcome(_GroupCard):
    KIND = "group_outcome"


# --- the session and its stream -------------------------------------------------------------

class ProductPinned(EventPayload):
    """The pin row and, beside it, what the card showed (its snapshot's fields)."""

    KIND = "product_pinned"
    id: int
    session_id: int
    product_id: int
    batch_id: int | None
    pinned_at: str
    unpinned_at: str | None
    snapshot: dict[str, Any]
    name: str | None = None
    price_fen: int | None = None
    unit: str | None = None
    evidence: Any = None


class ProductUnpinned(EventPayload):
    KIND = "product_unpinned"


class StreamStarted(EventPayload):
    KIND = "stream_started"
    ingest: Literal["rtmp", "whip"]


class SessionEnded(EventPayload):
    KIND = "session_ended"
    ended_at: datetime | None


class ReplayProgress(EventPayload):
    KIND = "replay_progress"
    status: str
    percent: int


# --- one buyer's orders ---------------------------------------------------------------------

class OrderPaid(EventPayload):
    KIND = "order_paid"
    order_id: int
    sale_id: int
    user_id: int
    qty: int
    community_id: int | None


class OrderRefunded(EventPayload):
    KIND = "order_refunded"
    order_id: int
    sale_id: int
    user_id: int
    qty: int
    community_id: int | None
    amount_fen: int


class OrderStatusChanged(EventPayload):
    KIND = "order_status"
    order_id: int
    status: str
    user_id: int


# --- after-sales work -----------------------------------------------------------------------

class ClaimFiled(EventPayload):
    KIND = "claim_filed"
    claim_id: int
    status: str
    product_id: int
    pin_id: int | None
    due_at: str | None
    user_id: int  # the buyer: told of the decision in private, never in the room
    payout_fen: int


class ClaimDecided(EventPayload):
    KIND = "claim_decided"
    claim_id: int
    status: str
    user_id: int
    payout_fen: int


class SessionLive(EventPayload):
    """A scheduled session's first publish (once, whichever process took it): subscribers
    of its 预约 are told."""

    KIND = "session_live"


class CommunityNoticeSent(EventPayload):
    """A community's managers sent its members (those with `tag`, when set) a notice; each
    recipient's notification is stored already, this tells the server to deliver them."""

    KIND = "community_notice"
    notice_id: int
    community_id: int
    sender_id: int
    tag: str | None
    recipients: int


class NoticeStored(EventPayload):
    """A notification for `user_id` is stored already (a host's invitation on camera, her
    selection as 品鉴官, a trial sample on its way); this tells the server to deliver it live to
    her open pages, in whichever process holds her sockets."""

    KIND = "notice_stored"
    user_id: int
    notification_id: int


# --- between the server's processes ---------------------------------------------------------

class TokenRevoked(EventPayload):
    """Tokens of `user_id` issued before `cutoff` (Unix seconds) are refused from now on."""

    KIND = "token_revoked"
    user_id: int
    cutoff: float


PAYLOADS: Mapping[str, type[EventPayload]] = {
    model.KIND: model for model in (
        SaleOpened, SaleClosed, StockChanged, GroupProgress, GroupOutcome, ProductPinned,
        ProductUnpinned, StreamStarted, SessionEnded, ReplayProgress, OrderPaid, OrderRefunded,
        OrderStatusChanged, ClaimFiled, ClaimDecided, SessionLive, CommunityNoticeSent,
        NoticeStored, TokenRevoked,
    )
}


class PayloadError(ValueError):
    """A payload that does not fit its kind's model (or a version this process cannot read)."""


def payload_for(kind: str, given: EventPayload | Mapping[str, Any]) -> EventPayload:
    """`given` as the kind's model: a model of the kind as it is, a mapping validated into it."""
    model = PAYLOADS.get(kind)
    if model is None:
        raise PayloadError(f"event kind {kind!r} has no payload model")
    if isinstance(given, EventPayload):
        if type(given) is not model:
            raise PayloadError(f"{kind} takes {model.__name__}, not {type(given).__name__}")
        return given
    try:
        return model.model_validate(dict(given))
    except ValidationError as exc:
        raise PayloadError(f"{kind}: {exc}") from None


def read_payload(kind: str, text: str) -> EventPayload:
    """A payload from another process (`EventPayload.to_json`), of a version this one knows."""
    model = PAYLOADS.get(kind)
    if model is None:
        raise PayloadError(f"event kind {kind!r} has no payload model")
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        raise PayloadError(f"{kind}: {exc}") from None
