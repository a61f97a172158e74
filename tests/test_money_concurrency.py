"""Money, status and limits under concurrency: N identical requests at once, on SQLite and
PostgreSQL, against the real app, the real simulated provider (in Redis) and real databases.

Each test fires >= 20 copies of one action with asyncio.gather and asserts the money moved
exactly once (what the provider paid out, not only what our rows say) or the limit held.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from commerce import group_buys, refunds
from commerce.flash_sale.sales import MAX_PRICE_FEN
from commerce.flash_sale.store import MAX_QTY
from commerce.orders import Order, OrderTransition
from commerce.payments import RefundKeyReused, SimulatedProvider
from commerce.refunds import Refund
from server.commerce_keys import checkout_key
from server.keys import database_key
from tests.commerce_support import bulk_buyers, community_with, hold, make_shop, pay
from tests.conftest import Api
from tests.trust_support import JPEG, Farm, buy, make_farm, pick_up, upload
from trust.claims import Claim
from trust.nps import NpsResponse
from trust.reviews import Review

# Each test fires one request twenty times at once: `make test` runs them, the fast lane does not.
pytestmark = pytest.mark.races

N = 20
POLICY = {"full_refund_without_return": True, "multiplier": 10, "max_days_after_pickup": 2,
          "auto_approve_max_fen": 10_000_000, "require_photo": True, "response_hours": 2}


def _provider(api: Api) -> SimulatedProvider:
    provider = api.app[checkout_key].provider
    assert isinstance(provider, SimulatedProvider)
    return provider


async def _order(api: Api, order_id: int) -> Order:
    async with api.app[database_key].session() as db:
        order = await db.get(Order, order_id)
    assert order is not None
    return order


async def _refund_rows(api: Api, order_id: int) -> list[Refund]:
    async with api.app[database_key].session() as db:
        return await refunds.refunds_of_order(db, order_id)


async def _steps(api: Api, order_id: int, to: str) -> int:
    async with api.app[database_key].session() as db:
        return int((await db.execute(select(func.count(OrderTransition.id)).where(
            OrderTransition.order_id == order_id, OrderTransition.to_status == to,
            OrderTransition.from_status != to))).scalar_one())


async def _post_all(api: Api, path: str, token: str, json: Any = None,
                    n: int = N) -> list[tuple[int, dict[str, Any]]]:
    async def one() -> tuple[int, dict[str, Any]]:
        resp = await api.client.post(path, json=json, headers=api.auth(token))
        return resp.status, dict(await resp.json())

    return list(await asyncio.gather(*(one() for _ in range(n))))


def _one_winner(results: list[tuple[int, dict[str, Any]]], ok: int = 200) -> dict[str, Any]:
    """Exactly one request succeeded; every other one was refused with a 409."""
    wins = [body for status, body in results if status == ok]
    assert len(wins) == 1, results
    assert all(status == 409 for status, _b in results if status != ok), results
    return wins[0]


async def _bought(api: Api, price_fen: int = 1000, qty: int = 1) -> tuple[Any, str, int]:
    shop = await make_shop(api)
    sale = await shop.sale(stock=50, price_fen=price_fen, per_buyer_limit=10)
    ((_uid, token),) = await bulk_buyers(api, 1)
    status, held = await hold(api, sale["id"], token, qty)
    assert status == 201, held
    status, paid = await pay(api, held["hold_id"], token)
    assert status == 200, paid
    return shop, token, int(paid["order_id"])


# --- refunds ---------------------------------------------------------------------------------

async def test_concurrent_refunds_pay_out_once(any_db_api: Api) -> None:
    """Four parallel refunds by one assistant paid 4,000 fen on a 1,000-fen order; now N
    refunds (and cancels) at once: one 200, the rest 409, one provider refund."""
    api = any_db_api
    shop, _token, order_id = await _bought(api, price_fen=1000, qty=1)
    _aid, assistant = await api.user("assistant")
    order = await _order(api, order_id)
    results = await _post_all(api, f"/api/orders/{order_id}/refund", assistant,
                              json={"reason": "买多了"})
    won = _one_winner(results)
    assert won["status"] == "refunded" and won["refunded_fen"] == 1000
    assert await _provider(api).refunded_total(order.payment_ref) == 1000
    (row,) = await _refund_rows(api, order_id)
    assert (row.status, row.amount_fen, row.key) == ("done", 1000, f"refund:order:{order_id}:refunded")
    assert await _steps(api, order_id, "refunded") == 1
    view = await (await api.client.get(f"/api/sales/{(await _order(api, order_id)).sale_id}")).json()
    assert (view["sold"], view["remaining"]) == (0, 50)
    assert shop.host_id > 0


async def test_the_provider_refunds_once_per_key(any_db_api: Api) -> None:
    """A retried or duplicated provider call with the same key answers the same refund."""
    provider = _provider(any_db_api)
    key = f"refund:order:{uuid.uuid4().hex}:refunded"
    refs = await asyncio.gather(*(provider.refund("sim_pay1", 700, "test", key) for _ in range(N)))
    assert len(set(refs)) == 1 and refs[0].startswith("simrf_")
    assert await provider.refunded_total("sim_pay1") == 700
    with pytest.raises(RefundKeyReused):
        await provider.refund("sim_pay1", 701, "test", key)


async def test_a_refund_cut_off_before_the_provider_is_finished_once(
        any_db_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider fails (or the process dies) between recording a refund and the provider's
    answer: the order is refunded in SQL and the refund is pending; N workers retrying at once
    pay it once."""
    api = any_db_api
    _shop, _token, order_id = await _bought(api, price_fen=1500, qty=2)
    _aid, assistant = await api.user("assistant")
    provider = _provider(api)
    real_refund = provider.refund

    async def down(*_args: Any) -> str:
        raise ConnectionError("provider unreachable")

    monkeypatch.setattr(provider, "refund", down)
    resp = await api.client.post(f"/api/orders/{order_id}/refund", json={},
                                 headers=api.auth(assistant))
    # Decided and committed: the staff member sees the refund; the money follows.
    assert resp.status == 200 and (await resp.json())["status"] == "refunded"
    monkeypatch.setattr(provider, "refund", real_refund)
    order = await _order(api, order_id)
    assert (order.status, order.refunded_fen) == ("refunded", 3000)
    (row,) = await _refund_rows(api, order_id)
    assert row.status == "pending" and await provider.refunded_total(order.payment_ref) == 0
    uow = api.app[checkout_key].uow
    # N workers at once (the app's own worker may join in): the same key, one payout.
    await asyncio.gather(*(refunds.settle_pending(uow, provider, timedelta(0)) for _ in range(N)))
    (row,) = await _refund_rows(api, order_id)
    assert row.status == "done" and row.provider_ref.startswith("simrf_")
    assert await provider.refunded_total(order.payment_ref) == 3000
    detail = await (await api.client.get(f"/api/orders/{order_id}",
                                         headers=api.auth(assistant))).json()
    assert any(row.provider_ref in step["note"] for step in detail["history"])


# --- paying a hold ---------------------------------------------------------------------------

async def test_paying_one_hold_n_times_at_once_charges_once(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    sale = await shop.sale(stock=5, price_fen=1200, per_buyer_limit=5)
    ((_uid, token),) = await bulk_buyers(api, 1)
    _s, held = await hold(api, sale["id"], token, 2)
    results = await asyncio.gather(*(pay(api, held["hold_id"], token) for _ in range(N)))
    assert {status for status, _b in results} == {200}, results
    assert len({body["order_id"] for _s, body in results}) == 1
    provider = _provider(api)
    charged = await provider.charges(held["hold_id"])
    returned = sum([await provider.refunded_total(ref) for ref in charged])
    assert sum(charged.values()) - returned == 2400, (charged, returned)
    view = await (await api.client.get(f"/api/sales/{sale['id']}")).json()
    assert (view["sold"], view["held"], view["remaining"]) == (2, 0, 3)
    async with api.app[database_key].session() as db:
        rows = list((await db.execute(select(Refund).where(Refund.order_id.is_(None),
                                                           Refund.payment_ref.in_(list(charged))))
                     ).scalars())
    assert len(rows) == len(charged) - 1 and all(r.status == "done" for r in rows)


async def test_a_hold_paid_and_given_back_at_once_ends_one_way(any_db_api: Api) -> None:
    """N payments and N releases of one hold at once: it is either sold (one order, charged
    once) or back in stock (every payment returned), and released at most once."""
    api = any_db_api
    shop = await make_shop(api)
    sale = await shop.sale(stock=5, price_fen=800, per_buyer_limit=5)
    ((_uid, token),) = await bulk_buyers(api, 1)
    _s, held = await hold(api, sale["id"], token, 2)

    async def release() -> tuple[int, dict[str, Any]]:
        resp = await api.client.delete(f"/api/holds/{held['hold_id']}", headers=api.auth(token))
        return resp.status, dict(await resp.json())

    results = await asyncio.gather(*(pay(api, held["hold_id"], token) if i % 2 else release()
                                     for i in range(2 * N)))
    paid = [b for i, (s, b) in enumerate(results) if i % 2 and s == 200]
    released = [b for i, (s, b) in enumerate(results) if not i % 2 and s == 200]
    assert len(released) <= 1 and bool(paid) != bool(released), results
    provider = _provider(api)
    charged = await provider.charges(held["hold_id"])
    returned = sum([await provider.refunded_total(ref) for ref in charged])
    view = await (await api.client.get(f"/api/sales/{sale['id']}")).json()
    if paid:
        assert len({b["order_id"] for b in paid}) == 1
        assert sum(charged.values()) - returned == 1600
        assert (view["sold"], view["held"], view["remaining"]) == (2, 0, 3)
    else:
        assert sum(charged.values()) == returned
        assert (view["sold"], view["held"], view["remaining"]) == (0, 0, 5)


async def test_lapsed_holds_swept_by_n_workers_at_once_return_once(any_db_api: Api) -> None:
    """Every process sweeps expired holds: N sweeps at once return each lapsed hold's units
    once, and a sale closed N times at once is closed (reservations refused), its holds kept."""
    import time

    api = any_db_api
    shop = await make_shop(api)
    sale = await shop.sale(stock=10, per_buyer_limit=5)
    buyers = await bulk_buyers(api, 3)
    for _uid, token in buyers:
        status, _held = await hold(api, sale["id"], token, 2)
        assert status == 201
    checkout = api.app[checkout_key]
    later = int(time.time() * 1000) + 3_600_000
    swept = await asyncio.gather(*(checkout.store.expire(sale["id"], now=later) for _ in range(N)))
    assert sum(int(r["expired"]) for r in swept) == 3
    view = await (await api.client.get(f"/api/sales/{sale['id']}")).json()
    assert (view["remaining"], view["held"], view["sold"]) == (10, 0, 0)
    _s, kept = await hold(api, sale["id"], buyers[0][1], 1)
    results = await _post_all(api, f"/api/sales/{sale['id']}/close", shop.host_token)
    assert [s for s, _b in results] == [200] * N
    status, body = await hold(api, sale["id"], buyers[1][1], 1)
    assert (status, body["error"]["code"]) == (409, "ended")
    status, paid = await pay(api, kept["hold_id"], buyers[0][1])
    assert status == 200, paid
    view = await (await api.client.get(f"/api/sales/{sale['id']}")).json()
    assert (view["status"], view["remaining"], view["held"], view["sold"]) == ("closed", 9, 0, 1)


async def test_a_payment_for_a_lapsed_hold_is_returned_once(any_db_api: Api) -> None:
    """The provider calls back N times for one payment (retries with fresh nonces) after the
    hold lapsed: every callback says hold_expired and the money goes back once."""
    import time
    from dataclasses import asdict

    from commerce.payments import PaymentCallback

    api = any_db_api
    shop = await make_shop(api)
    sale = await shop.sale(stock=5, price_fen=900, per_buyer_limit=5)
    ((_uid, token),) = await bulk_buyers(api, 1)
    _s, held = await hold(api, sale["id"], token, 1)
    checkout = api.app[checkout_key]
    await checkout.store.expire(sale["id"], now=int(time.time() * 1000) + 3_600_000)
    provider = _provider(api)
    ref = "ext_" + uuid.uuid4().hex[:12]
    callbacks = [asdict(provider.sign(PaymentCallback(held["hold_id"], ref, 900, int(time.time()),
                                                      uuid.uuid4().hex))) for _ in range(N)]
    resps = await asyncio.gather(*(api.client.post("/api/payments/callback", json=c)
                                   for c in callbacks))
    assert [r.status for r in resps] == [409] * N
    assert {(await r.json())["error"]["code"] for r in resps} == {"hold_expired"}
    assert await provider.refunded_total(ref) == 900


async def test_reconcile_repairs_run_at_once_return_stock_once(any_db_api: Api) -> None:
    from commerce import orders
    from commerce.orders import OrderStatus

    api = any_db_api
    shop = await make_shop(api)
    sale = await shop.sale(stock=5, per_buyer_limit=5)
    ((_uid, token),) = await bulk_buyers(api, 1)
    _s, held = await hold(api, sale["id"], token, 2)
    order_id = (await pay(api, held["hold_id"], token))[1]["order_id"]
    async with api.app[database_key].session() as db:
        # The process died after the SQL refund and before refund.lua.
        order = await orders.get_order(db, order_id)
        await orders.transition(db, order, OrderStatus.REFUNDED, None, "crash window")
    resps = await asyncio.gather(*(api.client.post(f"/api/reconcile?sale={sale['id']}",
                                                   headers=api.auth(api.admin_token))
                                   for _ in range(N)))
    assert [r.status for r in resps] == [200] * N
    view = await (await api.client.get(f"/api/sales/{sale['id']}")).json()
    assert (view["remaining"], view["sold"]) == (5, 0)


# --- fulfilment steps ------------------------------------------------------------------------

async def test_ready_and_pickup_confirmed_once(any_db_api: Api) -> None:
    """Ready twice and the same pickup code confirmed twice at once: one transition each."""
    api = any_db_api
    shop, token, order_id = await _bought(api)
    order = await (await api.client.get(f"/api/orders/{order_id}", headers=api.auth(token))).json()
    _one_winner(await _post_all(api, f"/api/orders/{order_id}/ready", shop.host_token))
    assert await _steps(api, order_id, "ready_for_pickup") == 1
    _one_winner(await _post_all(api, f"/api/orders/{order_id}/picked-up", shop.host_token,
                                json={"pickup_code": order["pickup_code"]}))
    assert await _steps(api, order_id, "picked_up") == 1
    _one_winner(await _post_all(api, f"/api/orders/{order_id}/complete", token))
    assert await _steps(api, order_id, "completed") == 1


async def test_delivered_once(any_db_api: Api) -> None:
    api = any_db_api
    shop, _token, order_id = await _bought(api)
    _one_winner(await _post_all(api, f"/api/orders/{order_id}/delivered", shop.host_token))
    assert await _steps(api, order_id, "delivered") == 1


async def test_a_refund_racing_the_pickup_either_refunds_or_hands_over(any_db_api: Api) -> None:
    api = any_db_api
    shop, token, order_id = await _bought(api)
    order = await (await api.client.get(f"/api/orders/{order_id}", headers=api.auth(token))).json()
    assert (await api.client.post(f"/api/orders/{order_id}/ready",
                                  headers=api.auth(shop.host_token))).status == 200
    _aid, assistant = await api.user("assistant")

    async def refund() -> int:
        resp = await api.client.post(f"/api/orders/{order_id}/refund", json={},
                                     headers=api.auth(assistant))
        return resp.status

    async def pickup() -> int:
        resp = await api.client.post(f"/api/orders/{order_id}/picked-up",
                                     json={"pickup_code": order["pickup_code"]},
                                     headers=api.auth(shop.host_token))
        return resp.status

    statuses = await asyncio.gather(*(refund() if i % 2 else pickup() for i in range(N)))
    assert statuses.count(200) == 1 and set(statuses) == {200, 409}, statuses
    final = await _order(api, order_id)
    refunded = await _provider(api).refunded_total(final.payment_ref)
    assert (final.status, refunded) in (("refunded", 1000), ("picked_up", 0))


# --- claims ----------------------------------------------------------------------------------

async def _close_farm_sale(farm: Farm) -> None:
    """The farm's own sale makes way for the test's (one sale of a product at a time)."""
    resp = await farm.api.client.post(f"/api/sales/{farm.sale_id}/close",
                                      headers=farm.api.auth(farm.host))
    assert resp.status == 200, await resp.text()


async def _farm_with_orders(api: Api, buyer: str, count: int,
                            price_fen: int = 3000) -> tuple[Farm, list[int]]:
    farm = await make_farm(api, price_fen=price_fen)
    resp = await api.client.put(f"/api/products/{farm.product_id}/claim-policy", json=POLICY,
                                headers=api.auth(farm.host))
    assert resp.status == 200, await resp.text()
    await _close_farm_sale(farm)
    resp = await api.client.post(f"/api/sessions/{farm.session_id}/sales", json={
        "product_id": farm.product_id, "stock": 500, "price_fen": price_fen,
        "per_buyer_limit": 100}, headers=api.auth(farm.host))
    assert resp.status == 201, await resp.text()
    farm.sale_id = int((await resp.json())["id"])
    made = []
    for _ in range(count):
        order_id = await buy(farm, buyer)
        await pick_up(farm, buyer, order_id)
        made.append(order_id)
    return farm, made


async def _photo(api: Api, token: str) -> int:
    return int((await (await upload(api, token, JPEG, "claim")).json())["id"])


async def test_concurrent_claims_auto_approve_at_most_the_limit(any_db_api: Api) -> None:
    """Six claims at once were all auto-approved at 10x; now N at once: 3 approved, the rest
    wait for an assistant, and the provider paid exactly three refunds."""
    api = any_db_api
    _uid, buyer = await api.user("viewer")
    _farm, order_ids = await _farm_with_orders(api, buyer, N)
    photos = [await _photo(api, buyer) for _ in order_ids]

    async def claim(order_id: int, photo: int) -> tuple[int, dict[str, Any]]:
        resp = await api.client.post("/api/claims", json={
            "order_id": order_id, "reason": "spoiled", "photos": [photo], "bad_qty": 1},
            headers=api.auth(buyer))
        return resp.status, dict(await resp.json())

    results = await asyncio.gather(*(claim(o, p) for o, p in zip(order_ids, photos, strict=True)))
    assert {status for status, _b in results} == {201}, results
    approved = [b for _s, b in results if b["status"] == "approved"]
    waiting = [b for _s, b in results if b["status"] == "pending"]
    assert len(approved) == 3 and all(b["auto"] for b in approved)
    assert len(waiting) == N - 3 and all(b["rules"] == ["too_many_recent_claims"] for b in waiting)
    provider = _provider(api)
    paid = [await provider.refunded_total((await _order(api, o)).payment_ref) for o in order_ids]
    assert sorted(paid) == [0] * (N - 3) + [3000] * 3
    assert sum(b["compensation_fen"] for b in approved) == 3 * 27000


async def test_claim_decisions_race_each_other(any_db_api: Api) -> None:
    """Approvals and rejections of one queued claim at once: one decision, one refund at most."""
    api = any_db_api
    _uid, buyer = await api.user("viewer")
    _farm, (first, second) = await _farm_with_orders(api, buyer, 2)
    _aid, assistant = await api.user("assistant")
    async with api.app[database_key].session() as db:
        # Past the window for auto-approval: both claims wait for an assistant.
        await db.execute(update(OrderTransition).where(OrderTransition.order_id.in_([first, second]))
                         .values(at=datetime.now(UTC) - timedelta(days=5)))
    claim_ids = []
    for order_id in (first, second):
        resp = await api.client.post("/api/claims", json={
            "order_id": order_id, "reason": "spoiled", "photos": [await _photo(api, buyer)]},
            headers=api.auth(buyer))
        assert resp.status == 201 and (await resp.json())["status"] == "pending"
        claim_ids.append(int((await resp.json())["id"]))
    won = _one_winner(await _post_all(api, f"/api/claims/{claim_ids[0]}/approve", assistant, {}))
    assert won["refund_fen"] == 3000 and won["refund_ref"].startswith("simrf_")
    mixed = await asyncio.gather(*(
        api.client.post(f"/api/claims/{claim_ids[1]}/{'approve' if i % 2 else 'reject'}",
                        json={"note": "照片看不清"}, headers=api.auth(assistant))
        for i in range(N)))
    assert sorted(r.status for r in mixed) == [200] + [409] * (N - 1)
    provider = _provider(api)
    assert await provider.refunded_total((await _order(api, first)).payment_ref) == 3000
    async with api.app[database_key].session() as db:
        decided = await db.get(Claim, claim_ids[1])
        assert decided is not None
        expect = 3000 if decided.status == "approved" else 0
    assert await provider.refunded_total((await _order(api, second)).payment_ref) == expect
    kinds = sorted(row.kind for row in await _refund_rows(api, second))
    assert kinds == (["refund", "transfer"] if expect else [])
    # 坏一赔十: both claims together paid 9 × 3000 beyond the refunds to the buyer, once each.
    assert await provider.transferred_total(f"user:{_uid}") == (2 if expect else 1) * 27000


async def test_one_claim_per_order_and_one_photo_per_claim_at_once(any_db_api: Api) -> None:
    api = any_db_api
    _uid, buyer = await api.user("viewer")
    _farm, (order_id, b, c) = await _farm_with_orders(api, buyer, 3)
    photos = [await _photo(api, buyer) for _ in range(N)]
    results = await asyncio.gather(*(api.client.post("/api/claims", json={
        "order_id": order_id, "reason": "spoiled", "photos": [p]}, headers=api.auth(buyer))
        for p in photos))
    assert sorted(r.status for r in results) == [201] + [409] * (N - 1)
    assert await _provider(api).refunded_total((await _order(api, order_id)).payment_ref) == 3000
    # One photo offered to two claims at once: it joins one of them, the other is refused.
    shared = await _photo(api, buyer)
    results = await asyncio.gather(*(api.client.post("/api/claims", json={
        "order_id": order, "reason": "spoiled", "photos": [shared]}, headers=api.auth(buyer))
        for order in (b, c)))
    assert sorted(r.status for r in results) == [201, 409]
    refused = next(r for r in results if r.status == 409)
    assert (await refused.json())["error"]["reason"] == "photo_in_use"
    async with api.app[database_key].session() as db:
        claims = list((await db.execute(select(Claim).where(Claim.buyer_id == _uid))).scalars())
    assert len(claims) == 2 and sum(shared in (c.photos or []) for c in claims) == 1


async def claim_while_provider_down(api: Api, buyer: str, order_id: int, call: str,
                                    monkeypatch: pytest.MonkeyPatch) -> tuple[int, dict[str, Any]]:
    """File a claim (auto-approved) while the provider's `call` (refund or transfer) cannot be
    reached; the provider answers again afterwards."""
    provider = _provider(api)

    async def down(*_args: Any) -> str:
        raise ConnectionError("provider unreachable")

    with monkeypatch.context() as patch:
        patch.setattr(provider, call, down)
        resp = await api.client.post("/api/claims", json={
            "order_id": order_id, "reason": "spoiled", "photos": [await _photo(api, buyer)]},
            headers=api.auth(buyer))
        return resp.status, dict(await resp.json())


async def test_a_claim_refund_cut_off_before_the_provider_is_finished_once(
        any_db_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    api = any_db_api
    _uid, buyer = await api.user("viewer")
    _farm, (order_id,) = await _farm_with_orders(api, buyer, 1)
    provider = _provider(api)
    status, filed = await claim_while_provider_down(api, buyer, order_id, "refund", monkeypatch)
    assert status == 201 and filed["refund_ref"] == ""
    # The decision and the refund were committed together before the provider was called.
    async with api.app[database_key].session() as db:
        claim = (await db.execute(select(Claim).where(Claim.order_id == order_id))).scalar_one()
    assert (claim.status, claim.refund_fen, claim.refund_ref) == ("approved", 3000, "")
    uow = api.app[checkout_key].uow
    await asyncio.gather(*(refunds.settle_pending(uow, provider, timedelta(0)) for _ in range(N)))
    order = await _order(api, order_id)
    assert await provider.refunded_total(order.payment_ref) == 3000
    mine = await (await api.client.get(f"/api/claims/{claim.id}", headers=api.auth(buyer))).json()
    rows = {row.kind: row for row in await _refund_rows(api, order_id)}
    assert sorted(rows) == ["refund", "transfer"]
    assert rows["refund"].status == "done" and mine["refund_ref"] == rows["refund"].provider_ref
    # The compensation beyond the price went to the buyer's account, once.
    assert rows["transfer"].status == "done" and mine["compensation_paid"]
    assert await provider.transferred_total(f"user:{_uid}") == mine["compensation_fen"] > 0


# --- reviews and NPS -------------------------------------------------------------------------

async def test_one_review_and_one_survey_answer_per_order(any_db_api: Api) -> None:
    api = any_db_api
    _uid, buyer = await api.user("viewer")
    _farm, (order_id,) = await _farm_with_orders(api, buyer, 1)
    reviews = await _post_all(api, "/api/reviews", buyer,
                              {"order_id": order_id, "stars": 5, "text": "甜"})
    assert sorted(s for s, _b in reviews) == [201] + [409] * (N - 1), reviews
    answers = await _post_all(api, "/api/nps", buyer, {"order_id": order_id, "score": 9})
    assert sorted(s for s, _b in answers) == [201] + [409] * (N - 1), answers
    async with api.app[database_key].session() as db:
        assert (await db.execute(select(func.count(Review.id)).where(
            Review.order_id == order_id))).scalar_one() == 1
        assert (await db.execute(select(func.count(NpsResponse.id)).where(
            NpsResponse.order_id == order_id))).scalar_one() == 1


# --- group-buys ------------------------------------------------------------------------------

@dataclass
class GroupSale:
    group_id: int
    sale_id: int
    community_id: int
    buyers: list[tuple[int, str]]
    order_ids: list[int]
    host_token: str


async def _group_sale(api: Api, on_failure: str, threshold: int, due: bool = True) -> GroupSale:
    """Three members of one community paid 2 units each at 1000 fen (group price 700); with
    `due` the group-buy's deadline has just passed (the app's own deadline worker may then
    decide it too, at any moment)."""
    shop = await make_shop(api)
    buyers = await bulk_buyers(api, 3)
    cid = await community_with(api, f"阳光花园{uuid.uuid4().hex[:6]}", [u for u, _t in buyers])
    sale = await shop.sale(stock=100, price_fen=1000, community_ids=[cid], per_buyer_limit=10)
    resp = await api.client.post(f"/api/sales/{sale['id']}/group-buys", json={
        "community_id": cid, "threshold": threshold, "unit": "people", "group_price_fen": 700,
        "on_failure": on_failure,
        "deadline": (datetime.now(UTC) + timedelta(hours=1)).isoformat()},
        headers=api.auth(shop.host_token))
    assert resp.status == 201, await resp.text()
    group_id = int((await resp.json())["group_id"])
    order_ids = []
    for _uid, token in buyers:
        _s, held = await hold(api, sale["id"], token, 2, community_id=cid)
        status, paid = await pay(api, held["hold_id"], token)
        assert status == 200, paid
        order_ids.append(int(paid["order_id"]))
    if due:
        await _past_deadline(api, group_id)
    return GroupSale(group_id, int(sale["id"]), cid, buyers, order_ids, shop.host_token)


async def _past_deadline(api: Api, group_id: int) -> None:
    async with api.app[database_key].session() as db:
        await db.execute(update(group_buys.GroupBuy).where(group_buys.GroupBuy.id == group_id)
                         .values(deadline=datetime.now(UTC) - timedelta(seconds=1)))


async def _group_with_orders(api: Api, on_failure: str, threshold: int) -> tuple[int, list[int]]:
    made = await _group_sale(api, on_failure, threshold)
    return made.group_id, made.order_ids


@pytest.mark.parametrize("outcome", ["succeeded", "failed"])
async def test_a_group_buy_settles_once(any_db_api: Api, outcome: str) -> None:
    """A decider died after claiming the outcome and before applying it; every process's
    deadline worker resumes it at once: each order gets the group-price difference, or its
    full refund, exactly once."""
    api = any_db_api
    group_id, order_ids = await _group_with_orders(api, "refund", 2 if outcome == "succeeded" else 9)
    async with api.app[database_key].session() as db:
        await db.execute(update(group_buys.GroupBuy).where(group_buys.GroupBuy.id == group_id)
                         .values(status=outcome, final_count=3, decided_at=datetime.now(UTC)))
    checkout = api.app[checkout_key]
    decided = await asyncio.gather(*(group_buys.decide(checkout, group_id) for _ in range(N)),
                                   return_exceptions=True)
    assert not [d for d in decided if isinstance(d, BaseException)], decided
    provider = _provider(api)
    expect = 600 if outcome == "succeeded" else 2000
    for order_id in order_ids:
        order = await _order(api, order_id)
        assert await provider.refunded_total(order.payment_ref) == expect
        assert order.refunded_fen == expect
        assert [r.amount_fen for r in await _refund_rows(api, order_id)] == [expect]
    view = await (await api.client.get(f"/api/group-buys/{group_id}")).json()
    assert view["status"] == outcome and view["settled"] is True


@pytest.mark.parametrize("outcome", ["succeeded", "failed"])
async def test_group_buy_deciders_at_once_decide_it_once(any_db_api: Api, outcome: str) -> None:
    """N deadline workers reach an undecided group-buy at once: one claims the outcome, and
    each order gets the group-price difference, or its full refund, exactly once."""
    api = any_db_api
    made = await _group_sale(api, "refund", 2 if outcome == "succeeded" else 9)
    checkout = api.app[checkout_key]
    decided = await asyncio.gather(*(group_buys.decide(checkout, made.group_id) for _ in range(N)),
                                   return_exceptions=True)
    assert set(decided) <= {outcome, "claimed_elsewhere"}, decided
    await group_buys.decide(checkout, made.group_id)  # whoever claimed it has applied it now
    provider = _provider(api)
    expect = 600 if outcome == "succeeded" else 2000
    for order_id in made.order_ids:
        order = await _order(api, order_id)
        assert order.refunded_fen == expect
        assert await provider.refunded_total(order.payment_ref) == expect
        assert [r.amount_fen for r in await _refund_rows(api, order_id)] == [expect]


async def test_an_order_paid_as_the_group_succeeds_gets_the_difference_once(
        any_db_api: Api) -> None:
    """A buyer's price was read just before the group-buy's success reached Redis (1000 fen,
    not 700) and the payment lands after the outcome's pass listed the orders; the provider
    calls back N times: the difference is refunded once."""
    import time
    from dataclasses import asdict

    from commerce.payments import PaymentCallback

    api = any_db_api
    made = await _group_sale(api, "refund", 2, due=False)
    _uid, token = made.buyers[0]
    _s, held = await hold(api, made.sale_id, token, 3, community_id=made.community_id)
    provider = _provider(api)
    start = await provider.start(held["hold_id"], 3 * 1000)
    checkout = api.app[checkout_key]
    await _past_deadline(api, made.group_id)
    for _ in range(2):  # the second call applies it if the app's worker claimed it first
        await group_buys.decide(checkout, made.group_id)
    callbacks = [asdict(provider.sign(PaymentCallback(
        held["hold_id"], start.payment_ref, 3000, int(time.time()), uuid.uuid4().hex)))
        for _ in range(N)]
    resps = await asyncio.gather(*(api.client.post("/api/payments/callback", json=c)
                                   for c in callbacks))
    assert [r.status for r in resps] == [200] * N
    (order_id,) = {int((await r.json())["order_id"]) for r in resps}
    order = await _order(api, order_id)
    assert (order.unit_price_fen, order.refunded_fen) == (1000, 900)
    assert await provider.refunded_total(start.payment_ref) == 900
    (row,) = await _refund_rows(api, order_id)
    assert (row.key, row.amount_fen) == (f"refund:order:{order_id}:group-{made.group_id}", 900)


async def test_an_order_paid_as_the_group_fails_is_refunded_once(any_db_api: Api) -> None:
    """A hold was paid (confirmed in Redis) just before the failed group-buy's pass released
    the community's holds, and its order is not in SQL yet (the paying request is between its
    two steps); N deciders at once: the order is written and refunded, once."""
    from commerce.orders import find_by_hold

    api = any_db_api
    made = await _group_sale(api, "refund", 9, due=False)
    _uid, token = made.buyers[0]
    _s, held = await hold(api, made.sale_id, token, 3, community_id=made.community_id)
    checkout = api.app[checkout_key]
    ref = "sim_" + uuid.uuid4().hex[:16]
    await checkout.store.confirm(held["hold_id"], None, ref, 1000)
    await _past_deadline(api, made.group_id)
    decided = await asyncio.gather(*(group_buys.decide(checkout, made.group_id) for _ in range(N)),
                                   return_exceptions=True)
    assert set(decided) <= {"failed", "claimed_elsewhere"}, decided
    await group_buys.decide(checkout, made.group_id)
    async with api.app[database_key].session() as db:
        late = await find_by_hold(db, held["hold_id"])
    assert late is not None and (late.status, late.refunded_fen) == ("refunded", 3000)
    provider = _provider(api)
    assert await provider.refunded_total(ref) == 3000
    for order_id in made.order_ids:
        assert await provider.refunded_total((await _order(api, order_id)).payment_ref) == 2000
    view = await (await api.client.get(f"/api/sales/{made.sale_id}")).json()
    assert view["sold"] == 0


async def test_a_claim_approval_racing_the_group_buy_refund_pays_at_most_the_order(
        any_db_api: Api) -> None:
    """A queued claim on an order is approved N times at once while N deadline workers apply
    the group-buy's price difference to the same order: one approval, and the provider pays
    out exactly what the order says it refunded, never more than the order."""
    api = any_db_api
    made = await _group_sale(api, "refund", 2, due=False)
    _uid, token = made.buyers[0]
    order_id = made.order_ids[0]
    detail = await (await api.client.get(f"/api/orders/{order_id}", headers=api.auth(token))).json()
    host = api.auth(made.host_token)
    assert (await api.client.post(f"/api/orders/{order_id}/ready", headers=host)).status == 200
    resp = await api.client.post(f"/api/orders/{order_id}/picked-up", headers=host,
                                 json={"pickup_code": detail["pickup_code"]})
    assert resp.status == 200, await resp.text()
    sale = await (await api.client.get(f"/api/sales/{made.sale_id}")).json()
    resp = await api.client.put(f"/api/products/{sale['product_id']}/claim-policy", headers=host,
                                json={**POLICY, "multiplier": 1, "max_days_after_pickup": 0,
                                      "require_photo": False})
    assert resp.status == 200, await resp.text()
    resp = await api.client.post("/api/claims", json={
        "order_id": order_id, "reason": "spoiled", "description": "坏了两个", "bad_qty": 2},
        headers=api.auth(token))
    assert resp.status == 201 and (await resp.json())["status"] == "pending", await resp.text()
    claim_id = int((await resp.json())["id"])
    _aid, assistant = await api.user("assistant")
    await _past_deadline(api, made.group_id)
    checkout = api.app[checkout_key]

    async def approve() -> int:
        return (await api.client.post(f"/api/claims/{claim_id}/approve", json={},
                                      headers=api.auth(assistant))).status

    results = await asyncio.gather(*(approve() for _ in range(N)),
                                   *(group_buys.decide(checkout, made.group_id) for _ in range(N)))
    assert sorted(results[:N]) == [200] + [409] * (N - 1)
    await group_buys.decide(checkout, made.group_id)
    order = await _order(api, order_id)
    assert order.refunded_fen == 2000
    assert await _provider(api).refunded_total(order.payment_ref) == 2000
    assert sum(r.amount_fen for r in await _refund_rows(api, order_id)) == 2000
    async with api.app[database_key].session() as db:
        claim = await db.get(Claim, claim_id)
    assert claim is not None and claim.refund_fen + claim.compensation_fen == 2000


async def test_group_buys_opened_at_once_all_join_the_sale(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    sale = await shop.sale(stock=100, price_fen=1000)
    cids = [await community_with(api, f"小区{uuid.uuid4().hex[:8]}", []) for _ in range(N)]
    deadline = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    resps = await asyncio.gather(*(api.client.post(f"/api/sales/{sale['id']}/group-buys", json={
        "community_id": cid, "threshold": 2, "unit": "people", "group_price_fen": 700,
        "deadline": deadline}, headers=api.auth(shop.host_token)) for cid in cids))
    assert [r.status for r in resps] == [201] * N
    again = await asyncio.gather(*(api.client.post(f"/api/sales/{sale['id']}/group-buys", json={
        "community_id": cids[0], "threshold": 2, "unit": "people", "group_price_fen": 700,
        "deadline": deadline}, headers=api.auth(shop.host_token)) for _ in range(N)))
    assert [r.status for r in again] == [409] * N
    view = await (await api.client.get(f"/api/sales/{sale['id']}")).json()
    assert sorted(view["community_ids"]) == sorted(cids)


# --- settings that decide money: a product's claim policy, community memberships ----------

async def test_a_claim_policy_saved_n_times_at_once(any_db_api: Api) -> None:
    """The first save of a policy inserts it: N saves at once all succeed, one row."""
    from trust.claims import ClaimPolicy

    api = any_db_api
    farm = await make_farm(api)
    resps = await asyncio.gather(*(api.client.put(
        f"/api/products/{farm.product_id}/claim-policy", json={**POLICY, "multiplier": 1 + i % 10},
        headers=api.auth(farm.host)) for i in range(N)))
    assert [r.status for r in resps] == [200] * N
    async with api.app[database_key].session() as db:
        assert (await db.execute(select(func.count()).select_from(ClaimPolicy).where(
            ClaimPolicy.product_id == farm.product_id))).scalar_one() == 1


async def test_trace_events_appended_at_once_keep_one_chain(any_db_api: Api) -> None:
    api = any_db_api
    farm = await make_farm(api)
    results = await _post_all(api, f"/api/batches/{farm.batch_code}/trace-events", farm.host,
                              {"kind": "packed", "location": "分拣间"})
    assert [s for s, _b in results] == [201] * N, results
    assert sorted(b["seq"] for _s, b in results) == list(range(1, N + 1))
    verdict = await (await api.client.get(f"/api/trace/{farm.batch_code}/verify")).json()
    assert verdict["ok"] is True, verdict


async def test_qc_reports_filed_at_once_stop_at_the_limit(any_db_api: Api,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-batch report limit is counted under the batch's lock: N reports at once against
    a limit of 5 file exactly 5, each committed into one unbroken chain."""
    from trust import qc

    api = any_db_api
    monkeypatch.setattr(qc, "MAX_REPORTS_PER_BATCH", 5)
    farm = await make_farm(api)
    results = await _post_all(api, f"/api/batches/{farm.batch_code}/qc-reports", farm.host, {
        "tester": "小美", "tested_at": "2026-05-01T08:00:00+00:00",
        "measurements": [{"kind": "brix", "value": 14.0}]})
    assert sorted(s for s, _b in results) == [201] * 5 + [400] * (N - 5), results
    verdict = await (await api.client.get(f"/api/trace/{farm.batch_code}/verify")).json()
    assert verdict["ok"] is True, verdict


# --- a session's state: the product on screen, the frozen audience ------------------------

async def test_pins_made_at_once_leave_one_product_on_screen(any_db_api: Api) -> None:
    """Claims and replay chapters point at the pin on screen: N pins at once leave one open."""
    from commerce.catalog import ProductPin

    api = any_db_api
    farm = await make_farm(api)
    resps = await asyncio.gather(*(api.client.post(
        f"/api/sessions/{farm.session_id}/pin", json={"product_id": farm.product_id},
        headers=api.auth(farm.host)) for _ in range(N)))
    assert [r.status for r in resps] == [200] * N
    async with api.app[database_key].session() as db:
        pins = list((await db.execute(select(ProductPin).where(
            ProductPin.session_id == farm.session_id))).scalars())
    assert len(pins) == N and sum(p.unpinned_at is None for p in pins) == 1


async def test_the_audience_frozen_n_times_at_once_is_one_row(any_db_api: Api) -> None:
    from commerce import audience
    from server.keys import redis_key

    api = any_db_api
    farm = await make_farm(api)

    async def freeze() -> None:
        async with api.app[database_key].session() as db:
            await audience.freeze(db, api.app[redis_key], farm.session_id)

    await asyncio.gather(*(freeze() for _ in range(N)))
    async with api.app[database_key].session() as db:
        assert (await db.execute(select(func.count()).select_from(audience.SessionAudience).where(
            audience.SessionAudience.session_id == farm.session_id))).scalar_one() == 1


# --- integer widths --------------------------------------------------------------------------

async def test_the_largest_accepted_amounts_fit(any_db_api: Api) -> None:
    """price_fen at its maximum × qty at the per-buyer maximum (10^11 fen), refunded; a claim
    at 10x of it (10^12 fen): nothing overflows PostgreSQL's columns."""
    api = any_db_api
    farm = await make_farm(api, price_fen=MAX_PRICE_FEN)
    resp = await api.client.put(f"/api/products/{farm.product_id}/claim-policy",
                                json={**POLICY, "auto_approve_max_fen": 10_000_000},
                                headers=api.auth(farm.host))
    assert resp.status == 200
    await _close_farm_sale(farm)
    resp = await api.client.post(f"/api/sessions/{farm.session_id}/sales", json={
        "product_id": farm.product_id, "stock": 2 * MAX_QTY, "price_fen": MAX_PRICE_FEN,
        "per_buyer_limit": MAX_QTY}, headers=api.auth(farm.host))
    assert resp.status == 201, await resp.text()
    farm.sale_id = int((await resp.json())["id"])
    _uid, buyer = await api.user("viewer")
    _uid2, other = await api.user("viewer")
    big = MAX_PRICE_FEN * MAX_QTY
    kept = await buy(farm, buyer, MAX_QTY)
    refunded = await buy(farm, other, MAX_QTY)
    mine = (await (await api.client.get("/api/orders", headers=api.auth(buyer))).json())["items"]
    assert [o["amount_fen"] for o in mine] == [big]
    _aid, assistant = await api.user("assistant")
    resp = await api.client.post(f"/api/orders/{refunded}/refund", json={},
                                 headers=api.auth(assistant))
    assert resp.status == 200 and (await resp.json())["refunded_fen"] == big
    await pick_up(farm, buyer, kept)
    resp = await api.client.post("/api/claims", json={
        "order_id": kept, "reason": "spoiled", "photos": [await _photo(api, buyer)],
        "bad_qty": MAX_QTY}, headers=api.auth(buyer))
    assert resp.status == 201, await resp.text()
    claim = await resp.json()
    assert claim["payout_fen"] == 10 * big and claim["status"] == "pending"
    resp = await api.client.post(f"/api/claims/{claim['id']}/approve", json={},
                                 headers=api.auth(assistant))
    assert resp.status == 200, await resp.text()
    decided = await resp.json()
    assert (decided["refund_fen"], decided["compensation_fen"]) == (big, 9 * big)
    assert await _provider(api).refunded_total((await _order(api, kept)).payment_ref) == big


def _alembic(connection: Any, action: str, target: str) -> None:
    from alembic import command
    from alembic.config import Config

    from server.database import MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    getattr(command, action)(cfg, target)


async def test_the_money_migration_goes_both_ways(any_db_api: Api) -> None:
    from sqlalchemy import inspect

    engine = any_db_api.app[database_key].engine

    def amount_type(connection: Any) -> str:
        columns = inspect(connection).get_columns("orders")
        return str(next(c["type"] for c in columns if c["name"] == "amount_fen"))

    def tables(connection: Any) -> set[str]:
        return set(inspect(connection).get_table_names())

    async with engine.begin() as conn:
        assert "refunds" in await conn.run_sync(tables)
        if engine.dialect.name == "postgresql":
            assert await conn.run_sync(amount_type) == "BIGINT"
        await conn.run_sync(_alembic, "downgrade", "0401")
        assert "refunds" not in await conn.run_sync(tables)
        if engine.dialect.name == "postgresql":
            assert await conn.run_sync(amount_type) == "INTEGER"
        await conn.run_sync(_alembic, "upgrade", "heads")
        assert "refunds" in await conn.run_sync(tables)
