"""Helpers for the trust tests: a farm with a batch, a product on sale, buyers with real orders.

Orders go through the real flow (hold → simulated payment → ready → picked up with the code),
so reviews, claims and NPS are tested against what commerce actually stores.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from commerce import catalog
from commerce.accounts import Principal, Role
from server.keys import database_key
from tests.conftest import Api

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64 + b"\xff\xd9"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
HTML = b"<!doctype html><html><script>alert(1)</script></html>"


@dataclass
class Farm:
    api: Api
    host_id: int
    host: str
    session_id: int
    batch_code: str
    batch_id: int
    product_id: int
    sale_id: int
    price_fen: int
    extra: dict[str, Any] = field(default_factory=dict)


async def make_farm(api: Api, farm: str = "老张合作农场", price_fen: int = 6800,
                    stock: int = 100) -> Farm:
    host_id, host = await api.user("host")
    h = api.auth(host)
    resp = await api.client.post("/api/sessions", json={"title": "枇杷直播", "farm": farm}, headers=h)
    assert resp.status == 201, await resp.text()
    session_id = (await resp.json())["id"]
    code = "B-" + uuid.uuid4().hex[:10]
    resp = await api.client.post("/api/batches", json={
        "code": code, "farm": farm, "plot": "3号坡", "harvested_at": "2026-05-01T06:00:00+00:00",
    }, headers=h)
    assert resp.status == 201, await resp.text()
    batch_id = (await resp.json())["id"]
    resp = await api.client.post("/api/products", json={
        "name": "白沙枇杷", "price_fen": price_fen, "batch_id": batch_id}, headers=h)
    assert resp.status == 201, await resp.text()
    product_id = (await resp.json())["id"]
    resp = await api.client.post(f"/api/sessions/{session_id}/sales", json={
        "product_id": product_id, "stock": stock, "price_fen": price_fen, "per_buyer_limit": 5,
    }, headers=h)
    assert resp.status == 201, await resp.text()
    sale_id = (await resp.json())["id"]
    return Farm(api, host_id, host, session_id, code, batch_id, product_id, sale_id, price_fen)


async def pin(farm: Farm) -> int:
    """The host pins the product (as the live room would), so orders have a stream moment."""
    async with farm.api.app[database_key].session() as db:
        row = await catalog.pin_product(db, farm.session_id, farm.product_id,
                                        Principal(farm.host_id, "host", Role.HOST))
    return row.id


async def buy(farm: Farm, buyer: str, qty: int = 1) -> int:
    api = farm.api
    resp = await api.client.post(f"/api/sales/{farm.sale_id}/holds", json={"qty": qty},
                                 headers={**api.auth(buyer), "Idempotency-Key": uuid.uuid4().hex})
    assert resp.status == 201, await resp.text()
    hold = (await resp.json())["hold_id"]
    resp = await api.client.post(f"/api/holds/{hold}/pay", headers=api.auth(buyer))
    assert resp.status == 200, await resp.text()
    return int((await resp.json())["order_id"])


async def pick_up(farm: Farm, buyer: str, order_id: int) -> None:
    api = farm.api
    order = await (await api.client.get(f"/api/orders/{order_id}", headers=api.auth(buyer))).json()
    resp = await api.client.post(f"/api/orders/{order_id}/ready", headers=api.auth(farm.host))
    assert resp.status == 200, await resp.text()
    resp = await api.client.post(f"/api/orders/{order_id}/picked-up",
                                 json={"pickup_code": order["pickup_code"]},
                                 headers=api.auth(farm.host))
    assert resp.status == 200, await resp.text()


async def bought_and_picked_up(farm: Farm, qty: int = 1) -> tuple[int, str, int]:
    """A new viewer buys `qty` and picks up: (user id, token, order id)."""
    user_id, token = await farm.api.user("viewer")
    order_id = await buy(farm, token, qty)
    await pick_up(farm, token, order_id)
    return user_id, token, order_id


async def upload(api: Api, token: str, data: bytes, purpose: str, filename: str = "a.jpg",
                 content_type: str = "image/jpeg") -> Any:
    from aiohttp import FormData

    form = FormData()
    form.add_field("file", data, filename=filename, content_type=content_type)
    return await api.client.post(f"/api/uploads?purpose={purpose}", data=form,
                                 headers=api.auth(token))


async def sql(api: Api, statement: str, **params: Any) -> None:
    """Tamper with stored rows the way an attacker with database access would: plain SQL."""
    async with api.app[database_key].session() as db:
        await db.execute(text(statement), params)


def ago(**kwargs: float) -> datetime:
    return datetime.now(UTC) - timedelta(**kwargs)
