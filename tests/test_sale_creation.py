"""Opening a sale with an Idempotency-Key: once per host, session and key (commerce/flash_sale/lifecycle.py).

Real app, real Redis, SQLite (and PostgreSQL where the database matters). The concurrent case
holds the first creation at a gate so the duplicates really arrive while it is in flight.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from commerce.flash_sale import lifecycle, sales
from commerce.flash_sale.sales import Sale
from server.commerce_keys import checkout_key
from server.keys import database_key
from tests.commerce_support import Shop, make_shop
from tests.conftest import Api


def _body(shop: Shop, **fields: Any) -> dict[str, Any]:
    return {"product_id": shop.product_id, "stock": 40, "price_fen": 1000, "per_buyer_limit": 2,
            **fields}


async def _create(api: Api, session_id: int, token: str, key: str | None,
                  body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    headers = api.auth(token)
    if key is not None:
        headers["Idempotency-Key"] = key
    resp = await api.client.post(f"/api/sessions/{session_id}/sales", json=body, headers=headers)
    return resp.status, dict(await resp.json())


async def _sql_sales(api: Api, session_id: int) -> list[int]:
    async with api.app[database_key].session() as db:
        rows = await db.execute(select(Sale.id).where(Sale.session_id == session_id))
        return sorted(rows.scalars())


async def _second_session(api: Api, shop: Shop) -> int:
    resp = await api.client.post("/api/sessions", json={"title": "橄榄油专场"},
                                 headers=api.auth(shop.host_token))
    assert resp.status == 201, await resp.text()
    return int((await resp.json())["id"])


async def test_a_repeated_key_on_the_same_session_answers_the_first_sale(api: Api) -> None:
    shop = await make_shop(api)
    status, first = await _create(api, shop.session_id, shop.host_token, "open-loquats", _body(shop))
    assert status == 201, first
    status, again = await _create(api, shop.session_id, shop.host_token, "open-loquats", _body(shop))
    assert status == 201, again
    assert again["id"] == first["id"] and again["initial"] == 40 and again["remaining"] == 40
    assert await _sql_sales(api, shop.session_id) == [first["id"]]
    # Equal drafts written differently are the same request: same instant, same communities.
    oil = await shop.new_product("初榨橄榄油")
    status, ok = await _create(api, shop.session_id, shop.host_token, "open-later",
                               _body(shop, product_id=oil, starts_at="2031-05-01T08:00:00Z"))
    assert status == 201, ok
    status, same = await _create(api, shop.session_id, shop.host_token, "open-later",
                                 _body(shop, product_id=oil, starts_at="2031-05-01T16:00:00+08:00"))
    assert status == 201 and same["id"] == ok["id"], same


async def test_a_key_reused_with_another_body_is_refused(api: Api) -> None:
    shop = await make_shop(api)
    status, first = await _create(api, shop.session_id, shop.host_token, "k1", _body(shop))
    assert status == 201, first
    status, reused = await _create(api, shop.session_id, shop.host_token, "k1",
                                   _body(shop, price_fen=900))
    assert status == 409, reused
    assert reused["error"]["code"] == "idempotency_key_reused"
    zh, _, en = reused["error"]["message"].partition(" / ")
    assert any("\u4e00" <= c <= "\u9fff" for c in zh) and en.isascii() and en, reused
    assert await _sql_sales(api, shop.session_id) == [first["id"]]
    # The original request still answers its sale.
    status, again = await _create(api, shop.session_id, shop.host_token, "k1", _body(shop))
    assert status == 201 and again["id"] == first["id"], again


async def test_the_same_key_on_another_session_opens_a_new_sale(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    other_session = await _second_session(api, shop)
    status, here = await _create(api, shop.session_id, shop.host_token, "open", _body(shop))
    assert status == 201, here
    status, there = await _create(api, other_session, shop.host_token, "open", _body(shop))
    assert status == 201, there
    assert there["id"] != here["id"] and there["session_id"] == other_session
    assert await _sql_sales(api, shop.session_id) == [here["id"]]
    assert await _sql_sales(api, other_session) == [there["id"]]
    # Each session's key answers its own sale from now on.
    status, back = await _create(api, other_session, shop.host_token, "open", _body(shop))
    assert status == 201 and back["id"] == there["id"], back
    # A key is also the sender's: an admin opening a sale here with the host's key gets a new one
    # (of another product: the loquats already sell here).
    status, admins = await _create(api, shop.session_id, api.admin_token, "open",
                                   _body(shop, product_id=await shop.new_product("初榨橄榄油")))
    assert status == 201 and admins["id"] not in (here["id"], there["id"]), admins


async def test_duplicates_while_the_first_is_in_flight_make_exactly_one_sale(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    shop = await make_shop(api)
    entered, release = asyncio.Event(), asyncio.Event()
    real_create = sales.insert_sale

    async def gated(*args: Any, **kwargs: Any) -> Sale:
        entered.set()
        await release.wait()
        return await real_create(*args, **kwargs)

    monkeypatch.setattr(sales, "insert_sale", gated)
    first = asyncio.create_task(_create(api, shop.session_id, shop.host_token, "dup", _body(shop)))
    await asyncio.wait_for(entered.wait(), 10)
    duplicates = await asyncio.gather(*(
        _create(api, shop.session_id, shop.host_token, "dup", _body(shop)) for _ in range(3)))
    for status, body in duplicates:
        assert status == 409 and body["error"]["code"] == "conflict", body
        assert body["error"]["reason"] == "in_progress", body
    # A different body under the pending key is refused outright, not told to wait.
    status, other = await _create(api, shop.session_id, shop.host_token, "dup",
                                  _body(shop, stock=41))
    assert status == 409 and other["error"]["code"] == "idempotency_key_reused", other
    release.set()
    status, made = await first
    assert status == 201, made
    status, again = await _create(api, shop.session_id, shop.host_token, "dup", _body(shop))
    assert status == 201 and again["id"] == made["id"], again
    assert await _sql_sales(api, shop.session_id) == [made["id"]]


async def test_a_burst_of_the_same_request_makes_one_sale(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    together = await asyncio.gather(*(
        _create(api, shop.session_id, shop.host_token, "burst", _body(shop)) for _ in range(8)))
    made = {body["id"] for status, body in together if status == 201}
    assert len(made) == 1, together
    assert all(status == 201 or body["error"].get("reason") == "in_progress"
               for status, body in together), together
    assert await _sql_sales(api, shop.session_id) == sorted(made)


async def test_a_failed_try_leaves_the_key_free_for_a_retry(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    shop = await make_shop(api)
    status, missing = await _create(api, shop.session_id, shop.host_token, "retry",
                                    _body(shop, product_id=999_999))
    assert status == 404, missing
    # Nothing was made, so the corrected request may use the same key.
    status, made = await _create(api, shop.session_id, shop.host_token, "retry", _body(shop))
    assert status == 201, made
    assert await _sql_sales(api, shop.session_id) == [made["id"]]

    real_create, failures = sales.insert_sale, [1]

    async def flaky(*args: Any, **kwargs: Any) -> Sale:
        if failures[0]:
            failures[0] -= 1
            raise RuntimeError("injected: the database went away")
        return await real_create(*args, **kwargs)

    oil = await shop.new_product("初榨橄榄油")
    monkeypatch.setattr(sales, "insert_sale", flaky)
    status, broken = await _create(api, shop.session_id, shop.host_token, "again",
                                   _body(shop, product_id=oil))
    assert status == 500 and broken["error"]["code"] == "internal", broken
    status, second = await _create(api, shop.session_id, shop.host_token, "again",
                                   _body(shop, product_id=oil))
    assert status == 201, second
    assert await _sql_sales(api, shop.session_id) == sorted([made["id"], second["id"]])


async def test_a_sale_made_but_not_opened_is_opened_by_the_retry(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first try wrote the row and died before Redis had the stock: the retry opens it."""
    shop = await make_shop(api)
    real_open, failures = lifecycle.open_sale, [1]

    async def flaky(*args: Any, **kwargs: Any) -> None:
        if failures[0]:
            failures[0] -= 1
            raise RuntimeError("injected: died before opening")
        await real_open(*args, **kwargs)

    monkeypatch.setattr(lifecycle, "open_sale", flaky)
    status, broken = await _create(api, shop.session_id, shop.host_token, "half", _body(shop))
    assert status == 500, broken
    (sale_id,) = await _sql_sales(api, shop.session_id)
    store = api.app[checkout_key].store
    assert await store.counts(sale_id) is None
    status, again = await _create(api, shop.session_id, shop.host_token, "half", _body(shop))
    assert status == 201 and again["id"] == sale_id, again
    assert again["remaining"] == 40
    counts = await store.counts(sale_id)
    assert counts is not None and counts.remaining == 40
    assert await _sql_sales(api, shop.session_id) == [sale_id]


async def test_without_a_key_each_request_opens_a_sale(api: Api) -> None:
    shop = await make_shop(api)
    for product_id in (shop.product_id, await shop.new_product("初榨橄榄油")):
        status, body = await _create(api, shop.session_id, shop.host_token, None,
                                     _body(shop, product_id=product_id))
        assert status == 201, body
    assert len(await _sql_sales(api, shop.session_id)) == 2
    # A key-less repeat is a new request, but cannot put the loquats on sale twice.
    status, body = await _create(api, shop.session_id, shop.host_token, None, _body(shop))
    assert status == 409 and body["error"]["code"] == "sale_overlaps", body
    assert len(await _sql_sales(api, shop.session_id)) == 2


@pytest.mark.parametrize("key", ["x" * 101, "tab\there"])
async def test_a_malformed_key_is_invalid_input(api: Api, key: str) -> None:
    shop = await make_shop(api)
    status, body = await _create(api, shop.session_id, shop.host_token, key, _body(shop))
    assert status == 400 and body["error"]["code"] == "invalid_input", body
    assert body["error"]["field"] == "Idempotency-Key"
    assert await _sql_sales(api, shop.session_id) == []
