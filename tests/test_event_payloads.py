"""Every event kind has a typed, versioned payload, checked where the event is made; its wire
form between processes round-trips, and a version this process does not know is refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from commerce.event_payloads import (
    PAYLOADS,
    ClaimDecided,
    ClaimFiled,
    CommunityNoticeSent,
    EventPayload,
    GroupOutcome,
    GroupProgress,
    NoticeStored,
    OrderPaid,
    OrderRefunded,
    OrderStatusChanged,
    PayloadError,
    ProductPinned,
    ProductUnpinned,
    ReplayProgress,
    SaleClosed,
    SaleOpened,
    SessionEnded,
    SessionLive,
    StockChanged,
    StreamStarted,
    TokenRevoked,
    read_payload,
)
from commerce.events import EVENT_KINDS, DomainEvent, EventBus

_CARD = dict(sale_id=7, product_id=3, product_name="红富士苹果", price_fen=2990,
             community_price_fen=None, initial=100, remaining=90, held=4, sold=6, gift_first_n=3,
             gift_left=0, starts_at="2026-11-22T08:00:00+00:00", ends_at=None, status="open", ver=9)
_GROUP = dict(group_id=1, sale_id=7, community_id=2, community_name="XX花园", count=5, threshold=10,
              unit="people", deadline="2026-11-22T09:00:00+00:00", status="open", ver=9)
EXAMPLES: dict[str, EventPayload] = {
    "sale_opened": SaleOpened(**_CARD),
    "sale_closed": SaleClosed(**_CARD),
    "stock_changed": StockChanged(sale_id=7, remaining=1, held=2, sold=3, gift_left=0, ver=4),
    "group_progress": GroupProgress(**_GROUP),
    "group_outcome": GroupOutcome(**_GROUP),
    "product_pinned": ProductPinned(id=1, session_id=2, product_id=3, batch_id=None,
                                    pinned_at="2026-11-22T08:00:00+00:00", unpinned_at=None,
                                    snapshot={"name": "枇杷", "price_fen": 100}, name="枇杷",
                                    price_fen=100),
    "product_unpinned": ProductUnpinned(),
    "stream_started": StreamStarted(ingest="rtmp"),
    "session_ended": SessionEnded(ended_at=datetime(2026, 11, 22, 9, 0, 1, 250, tzinfo=UTC)),
    "replay_progress": ReplayProgress(status="processing", percent=40),
    "order_paid": OrderPaid(order_id=1, sale_id=7, user_id=3, qty=1, community_id=2),
    "order_refunded": OrderRefunded(order_id=1, sale_id=7, user_id=3, qty=1, community_id=None,
                                    amount_fen=2990),
    "order_status": OrderStatusChanged(order_id=1, status="picked_up", user_id=3),
    "claim_filed": ClaimFiled(claim_id=1, status="pending", product_id=3, pin_id=None,
                              due_at="2026-11-23T09:00:00+00:00", user_id=3, payout_fen=6800),
    "claim_decided": ClaimDecided(claim_id=1, status="approved", user_id=3, payout_fen=6800),
    "session_live": SessionLive(),
    "community_notice": CommunityNoticeSent(notice_id=4, community_id=2, sender_id=1, tag="baking",
                                            recipients=12),
    "notice_stored": NoticeStored(user_id=3, notification_id=9),
    "token_revoked": TokenRevoked(user_id=3, cutoff=1_790_000_000.25),
}


def test_every_kind_has_a_versioned_model() -> None:
    assert set(PAYLOADS) == set(EVENT_KINDS) == set(EXAMPLES)
    for kind, model in PAYLOADS.items():
        assert kind == model.KIND and model.model_fields["v"].default == 1


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_the_wire_form_between_processes_round_trips(kind: str) -> None:
    payload = EXAMPLES[kind]
    back = read_payload(kind, payload.to_json())
    assert back == payload and type(back) is type(payload)
    # What subscribers and rooms read: the fields given, never the version.
    assert back.fields_set() == payload.fields_set() and "v" not in payload.fields_set()
    event = DomainEvent(kind, 1, payload)
    assert event.payload is payload and event.data == payload.fields_set()


def test_optional_fields_not_given_stay_out_of_the_event() -> None:
    pinned = EXAMPLES["product_pinned"]
    assert "unit" not in pinned.fields_set() and "evidence" not in pinned.fields_set()
    assert read_payload("product_pinned", pinned.to_json()).fields_set() == pinned.fields_set()


@pytest.mark.parametrize(("kind", "given", "why"), [
    ("stock_changed", {"sale_id": "7", "remaining": 1, "held": 2, "sold": 3, "gift_left": 0,
                       "ver": 4}, "sale_id"),  # strict: no "7" -> 7
    ("stock_changed", {"sale_id": 7, "remaining": 1, "held": 2, "sold": 3, "gift_left": 0},
     "ver"),  # missing
    ("order_paid", {"order_id": 1, "sale_id": 7, "user_id": 3, "qty": 1, "community_id": None,
                    "note": "x"}, "note"),  # not declared
    ("stream_started", {"ingest": "carrier-pigeon"}, "ingest"),
    ("session_ended", {"ended_at": "yesterday"}, "ended_at"),
    ("session_ended", StockChanged(sale_id=7, remaining=1, held=2, sold=3, gift_left=0, ver=4),
     "takes SessionEnded, not StockChanged"),
])
def test_a_wrong_payload_fails_where_it_is_made(kind: str, given: object, why: str) -> None:
    with pytest.raises(PayloadError, match=why):
        DomainEvent(kind, 1, given)


def test_payloads_are_frozen() -> None:
    stock = EXAMPLES["stock_changed"]
    with pytest.raises(ValueError, match="frozen"):
        stock.remaining = 0


async def test_the_bus_checks_the_payload_again_when_publishing() -> None:
    event = DomainEvent("session_ended", 1, EXAMPLES["session_ended"])
    object.__setattr__(event, "payload", EXAMPLES["stock_changed"])
    with pytest.raises(PayloadError):
        await EventBus().publish(event)


def test_a_version_this_process_does_not_know_is_refused() -> None:
    newer = '{"v": 2, "ended_at": null, "reason": "host"}'
    with pytest.raises(PayloadError, match="session_ended"):
        read_payload("session_ended", newer)
    with pytest.raises(PayloadError, match="no payload model"):
        read_payload("buyer_list", "{}")
