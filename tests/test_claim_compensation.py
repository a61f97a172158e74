"""坏一赔十: what a claim pays beyond the order's price reaches the buyer through the payment
provider's transfer, once, even when the provider is down at the decision or many deciders and
retry workers run at once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from commerce import refunds
from commerce.payments import RefundKeyReused
from server.commerce_keys import checkout_key
from tests.conftest import Api
from tests.test_money_concurrency import (
    N,
    _farm_with_orders,
    _provider,
    _refund_rows,
    claim_while_provider_down,
)


async def test_compensation_cut_off_by_the_provider_is_transferred_once_later(
        any_db_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    api = any_db_api
    uid, buyer = await api.user("viewer")
    _farm, (order_id,) = await _farm_with_orders(api, buyer, 1)
    provider = _provider(api)
    status, claim = await claim_while_provider_down(api, buyer, order_id, "transfer", monkeypatch)
    assert status == 201 and claim["status"] == "approved", claim
    # Decided and refunded; the compensation is owed, recorded, and not yet paid.
    assert claim["compensation_fen"] == 27000 and not claim["compensation_paid"]
    assert await provider.transferred_total(f"user:{uid}") == 0

    uow = api.app[checkout_key].uow
    await asyncio.gather(*(refunds.settle_pending(uow, provider, timedelta(0)) for _ in range(N)))
    assert await provider.transferred_total(f"user:{uid}") == 27000
    rows = [row for row in await _refund_rows(api, order_id) if row.kind == "transfer"]
    assert [(r.status, r.amount_fen, r.payee) for r in rows] == [("done", 27000, f"user:{uid}")]
    mine = await (await api.client.get(f"/api/claims/{claim['id']}", headers=api.auth(buyer))).json()
    assert mine["compensation_paid"] and mine["compensation_ref"] == rows[0].provider_ref
    # The buyer's order history says the money arrived.
    order = await (await api.client.get(f"/api/orders/{order_id}", headers=api.auth(buyer))).json()
    assert "赔付到账" in str(order), order


async def test_the_provider_transfers_once_per_key(any_db_api: Api) -> None:
    provider = _provider(any_db_api)
    refs = await asyncio.gather(*(provider.transfer("user:7", 500, "x", "transfer:claim:99")
                                  for _ in range(N)))
    assert len(set(refs)) == 1 and await provider.transferred_total("user:7") == 500
    with pytest.raises(RefundKeyReused):
        await provider.transfer("user:7", 600, "x", "transfer:claim:99")

