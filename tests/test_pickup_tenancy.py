"""Pickup points belong to their community's host: another host can neither add nor move one,
and a community's new orders go to its default point, never to whichever row has the lowest id.
On SQLite and PostgreSQL, with the default held under 20 concurrent writers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, select, text

from commerce.pickup import PickupPoint
from server.database import MIGRATIONS_DIR
from server.keys import database_key
from tests.commerce_support import bulk_buyers, hold, make_shop, pay
from tests.conftest import Api

N = 20


async def _post(api: Api, path: str, token: str, body: dict[str, Any],
                method: str = "POST") -> tuple[int, dict[str, Any]]:
    resp = await api.client.request(method, path, json=body, headers=api.auth(token))
    return resp.status, dict(await resp.json())


async def _community(api: Api, host_token: str, name: str, members: list[int]) -> int:
    status, made = await _post(api, "/api/communities", host_token, {"name": name})
    assert status == 201, made
    for uid in members:
        status, body = await _post(api, f"/api/communities/{made['id']}/members", host_token,
                                   {"user_id": uid})
        assert status == 201, body
    return int(made["id"])


async def _order_point(api: Api, sale_id: int, token: str) -> int | None:
    status, held = await hold(api, sale_id, token)
    assert status == 201, held
    status, paid = await pay(api, held["hold_id"], token)
    assert status == 200, paid
    resp = await api.client.get(f"/api/orders/{paid['order_id']}", headers=api.auth(token))
    point = (await resp.json())["pickup_point_id"]
    return int(point) if point is not None else None


async def test_another_host_cannot_add_or_move_a_pickup_point(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    _, intruder = await api.user("host")
    ((buyer_id, buyer),) = await bulk_buyers(api, 1)
    cid = await _community(api, shop.host_token, "阳光花园", [buyer_id])
    path = f"/api/communities/{cid}/pickup-points"

    # The attacker goes first, while the community has no point at all: refused.
    status, body = await _post(api, path, intruder, {"name": "骗子的地址", "address": "别处"})
    assert (status, body["error"]["code"]) == (403, "forbidden")
    status, own = await _post(api, path, shop.host_token, {"name": "3号楼门卫室"})
    assert status == 201 and own["default"] is True
    status, second = await _post(api, path, shop.host_token, {"name": "东门快递柜"})
    assert status == 201 and second["default"] is False
    status, body = await _post(api, f"/api/pickup-points/{second['id']}", intruder,
                               {"default": True, "address": "别处"}, method="PATCH")
    assert (status, body["error"]["code"]) == (403, "forbidden")
    status, body = await _post(api, path, api.admin_token, {"name": "物业前台"})
    assert status == 201 and body["default"] is False

    sale = await shop.sale(stock=10, per_buyer_limit=10, community_ids=[cid])
    assert await _order_point(api, sale["id"], buyer) == own["id"]
    # The community's host moves the default: new orders follow it.
    status, moved = await _post(api, f"/api/pickup-points/{second['id']}", shop.host_token,
                                {"default": True}, method="PATCH")
    assert status == 200 and moved["default"] is True
    assert await _order_point(api, sale["id"], buyer) == second["id"]
    listed = await (await api.client.get(path)).json()
    assert [p["default"] for p in listed] == [True, False, False]


async def test_a_lower_id_row_does_not_take_the_orders(any_db_api: Api) -> None:
    """A point that is not the default (say one left from before this rule, added by someone
    else, with the lowest id) does not receive the community's orders."""
    api = any_db_api
    shop = await make_shop(api)
    intruder_id, _ = await api.user("host")
    ((buyer_id, buyer),) = await bulk_buyers(api, 1)
    cid = await _community(api, shop.host_token, "翠湖小区", [buyer_id])
    async with api.app[database_key].session() as db:
        planted = PickupPoint(community_id=cid, name="骗子的地址", created_by=intruder_id)
        db.add(planted)
        await db.flush()
        planted_id = planted.id
    status, own = await _post(api, f"/api/communities/{cid}/pickup-points", shop.host_token,
                              {"name": "3号楼门卫室"})
    assert status == 201 and own["id"] > planted_id and own["default"] is True
    sale = await shop.sale(stock=10, per_buyer_limit=10, community_ids=[cid])
    assert await _order_point(api, sale["id"], buyer) == own["id"]


@pytest.mark.races
async def test_concurrent_first_points_make_exactly_one_default(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    cid = await _community(api, shop.host_token, "明月小区", [])
    results = await asyncio.gather(*(
        _post(api, f"/api/communities/{cid}/pickup-points", shop.host_token, {"name": f"点{i}"})
        for i in range(N)))
    assert [status for status, _ in results] == [201] * N, results
    assert sum(body["default"] for _, body in results) == 1
    async with api.app[database_key].session() as db:
        rows = (await db.execute(select(PickupPoint).where(PickupPoint.community_id == cid))).scalars()
        assert sum(p.is_default for p in rows) == 1

    # N managers' clicks moving the default at once, to N different points: one default remains.
    ids = [body["id"] for _, body in results]
    moves = await asyncio.gather(*(
        _post(api, f"/api/pickup-points/{pid}", shop.host_token, {"default": True}, method="PATCH")
        for pid in ids))
    assert {status for status, _ in moves} <= {200, 409}, moves
    listed = await (await api.client.get(f"/api/communities/{cid}/pickup-points")).json()
    assert sum(p["default"] for p in listed) == 1


def _alembic(connection: Connection, action: str, target: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    getattr(command, action)(cfg, target)


async def test_migration_keeps_existing_communities_routing_as_before(any_db_api: Api) -> None:
    """Before 0403 orders went to a community's lowest-id point: that point becomes its default."""
    api = any_db_api
    shop = await make_shop(api)
    firsts = []
    for name in ("一号小区", "二号小区"):
        cid = await _community(api, shop.host_token, name, [])
        for point in ("北门", "南门", "西门"):
            status, made = await _post(api, f"/api/communities/{cid}/pickup-points",
                                       shop.host_token, {"name": point})
            assert status == 201
            if point == "北门":
                firsts.append(made["id"])
    engine = api.app[database_key].engine
    async with engine.begin() as conn:
        await conn.run_sync(_alembic, "downgrade", "0401")
        await conn.run_sync(_alembic, "upgrade", "heads")
        rows = (await conn.execute(text("SELECT id FROM pickup_points WHERE is_default"))).all()
    assert sorted(row[0] for row in rows) == sorted(firsts)
