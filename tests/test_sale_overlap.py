"""One product sells at one price at a time in a session: a sale whose window overlaps an open or
scheduled sale of the same product there is refused (409 sale_overlaps), decided under the
session's row lock so a burst of creations makes exactly one (commerce/flash_sale/sales.py).

Real app, real Redis, SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from commerce.flash_sale.sales import Sale
from server.keys import database_key
from tests.commerce_support import Shop, bulk_buyers, hold, make_shop, pay
from tests.conftest import Api


def _at(minutes: float) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


async def _create(shop: Shop, **fields: Any) -> tuple[int, dict[str, Any]]:
    body = {"product_id": shop.product_id, "stock": 10, "price_fen": 1000, "per_buyer_limit": 2,
            **fields}
    resp = await shop.api.client.post(f"/api/sessions/{shop.session_id}/sales", json=body,
                                      headers=shop.api.auth(shop.host_token))
    return resp.status, dict(await resp.json())


def _overlaps(answer: tuple[int, dict[str, Any]], sale_id: int) -> bool:
    status, body = answer
    return (status == 409 and body["error"]["code"] == "sale_overlaps"
            and body["error"]["sale_id"] == sale_id)


async def _statuses(api: Api, session_id: int) -> dict[int, str]:
    async with api.app[database_key].session() as db:
        rows = await db.execute(select(Sale.id, Sale.status).where(Sale.session_id == session_id))
        return {sale_id: status for sale_id, status in rows}


async def test_an_overlapping_window_is_refused_a_separate_one_is_not(any_db_api: Api) -> None:
    shop = await make_shop(any_db_api)
    status, first = await _create(shop, ends_at=_at(30))
    assert status == 201, first
    # Open-ended, scheduled inside, or straddling its end: all meet [now, +30 min).
    assert _overlaps(await _create(shop), first["id"])
    assert _overlaps(await _create(shop, starts_at=_at(10), ends_at=_at(20)), first["id"])
    status, body = await _create(shop, starts_at=_at(29), ends_at=_at(60))
    assert _overlaps((status, body), first["id"])
    assert "重叠" in body["error"]["message"]
    # Scheduled after it ends (windows are half-open), another product, another session: fine.
    status, later = await _create(shop, starts_at=_at(30.5), ends_at=_at(60))
    assert status == 201, later
    assert _overlaps(await _create(shop, starts_at=_at(45)), later["id"])
    status, oil = await _create(shop, product_id=await shop.new_product("初榨橄榄油"))
    assert status == 201, oil
    resp = await any_db_api.client.post("/api/sessions", json={"title": "第二场"},
                                        headers=any_db_api.auth(shop.host_token))
    second_session = int((await resp.json())["id"])
    status, elsewhere = await _create(replace(shop, session_id=second_session))
    assert status == 201, elsewhere
    # Closing the first frees its window: a new open-ended sale meets only the scheduled one.
    resp = await any_db_api.client.post(f"/api/sales/{first['id']}/close",
                                        headers=any_db_api.auth(shop.host_token))
    assert resp.status == 200, await resp.text()
    status, now_only = await _create(shop, ends_at=_at(25))
    assert status == 201, now_only


async def test_an_ended_sale_no_longer_blocks(api: Api) -> None:
    shop = await make_shop(api)
    status, first = await _create(shop, ends_at=_at(0.02))  # about a second
    assert status == 201, first
    await asyncio.sleep(1.5)
    # Its row may still say open (the sweeper closes it later): ended is what counts.
    status, second = await _create(shop)
    assert status == 201, second


async def test_a_sold_out_sale_gives_way_and_is_closed(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    status, first = await _create(shop, stock=1, per_buyer_limit=1)
    assert status == 201, first
    ((_uid, token),) = await bulk_buyers(api, 1)
    held_status, held = await hold(api, first["id"], token, 1)
    assert held_status == 201, held
    status, second = await _create(shop, stock=20, price_fen=900)
    assert status == 201, second
    statuses = await _statuses(api, shop.session_id)
    assert statuses == {first["id"]: "closed", second["id"]: "open"}
    view = await (await api.client.get(f"/api/sales/{first['id']}")).json()
    assert view["status"] == "closed"
    # The buyer's hold on the sold-out sale keeps its payment window, as on any close.
    paid_status, paid = await pay(api, held["hold_id"], token)
    assert paid_status in (200, 201), paid


async def test_twenty_creations_at_once_make_one_sale(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    answers = await asyncio.gather(*(_create(shop, price_fen=1000 + i) for i in range(20)))
    made = [body["id"] for status, body in answers if status == 201]
    assert len(made) == 1, answers
    assert all(_overlaps(answer, made[0]) for answer in answers if answer[0] != 201), answers
    assert list(await _statuses(api, shop.session_id)) == made
