"""Helpers for commerce tests: a host with a session and product, many buyers made directly in SQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from commerce import accounts
from commerce.accounts import Principal, Role
from server.keys import database_key, tokens_key
from tests.conftest import Api

# One precomputed argon2 hash for every bulk buyer: hashing 500 passwords would take minutes.
BULK_HASH = "$argon2id$v=19$m=8192,t=1,p=4$c29tZXNhbHQ$0mYlF8b0iCPR7mYgH5WkCg"


@dataclass
class Shop:
    api: Api
    host_id: int
    host_token: str
    session_id: int
    product_id: int

    async def sale(self, expect: int = 201, **fields: Any) -> dict[str, Any]:
        body = {"product_id": self.product_id, "stock": 100, "price_fen": 1000,
                "per_buyer_limit": 2, **fields}
        resp = await self.api.client.post(f"/api/sessions/{self.session_id}/sales", json=body,
                                          headers=self.api.auth(self.host_token))
        assert resp.status == expect, await resp.text()
        return dict(await resp.json())

    async def new_product(self, name: str, price_fen: int = 6800) -> int:
        """Another product of the host: one product has one sale at a time in a session."""
        resp = await self.api.client.post("/api/products", json={"name": name, "price_fen": price_fen},
                                          headers=self.api.auth(self.host_token))
        assert resp.status == 201, await resp.text()
        return int((await resp.json())["id"])


async def make_shop(api: Api) -> Shop:
    host_id, host_token = await api.user("host")
    headers = api.auth(host_token)
    resp = await api.client.post("/api/sessions", json={"title": "枇杷专场"}, headers=headers)
    assert resp.status == 201, await resp.text()
    session_id = (await resp.json())["id"]
    resp = await api.client.post("/api/products", json={"name": "白沙枇杷", "price_fen": 6800},
                                 headers=headers)
    assert resp.status == 201, await resp.text()
    return Shop(api, host_id, host_token, session_id, (await resp.json())["id"])


async def bulk_buyers(api: Api, count: int) -> list[tuple[int, str]]:
    """(user id, token) for `count` viewers inserted straight into SQL, tokens issued locally."""
    prefix = uuid.uuid4().hex[:6]
    made: list[tuple[int, str]] = []
    tokens = api.app[tokens_key]
    async with api.app[database_key].session() as db:
        users = [accounts.User(username=f"b{prefix}_{i}", display_name=f"邻居{i}",
                               password_hash=BULK_HASH, role=Role.VIEWER.value)
                 for i in range(count)]
        db.add_all(users)
        await db.flush()
        for user in users:
            made.append((user.id, tokens.issue(Principal(user.id, user.username, Role.VIEWER))))
    return made


async def community_with(api: Api, name: str, member_ids: list[int]) -> int:
    resp = await api.client.post("/api/communities", json={"name": name},
                                 headers=api.auth(api.admin_token))
    assert resp.status == 201, await resp.text()
    cid = int((await resp.json())["id"])
    async with api.app[database_key].session() as db:
        for uid in member_ids:
            await accounts.add_member(db, cid, uid, approved_by=1)
    return cid


async def hold(api: Api, sale_id: int, token: str, qty: Any = 1, key: str | None = None,
               **extra: Any) -> tuple[int, dict[str, Any]]:
    headers = api.auth(token)
    headers["Idempotency-Key"] = key or uuid.uuid4().hex
    resp = await api.client.post(f"/api/sales/{sale_id}/holds", json={"qty": qty, **extra},
                                 headers=headers)
    return resp.status, dict(await resp.json())


async def pay(api: Api, hold_id: str, token: str) -> tuple[int, dict[str, Any]]:
    resp = await api.client.post(f"/api/holds/{hold_id}/pay", headers=api.auth(token))
    return resp.status, dict(await resp.json())
