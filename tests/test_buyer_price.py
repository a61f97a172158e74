"""The price a buyer is shown is the price she is charged: one rule (commerce/pricing.py) behind
the sale card (`your_price_fen`), the hold answer and the payment; and the pickup point she picks
is where her order goes, if it is her community's."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from commerce.pricing import buyer_price
from tests.commerce_support import bulk_buyers, community_with, hold, make_shop
from tests.conftest import Api


def test_the_rule_list_community_group() -> None:
    assert buyer_price(6800, 5800, None).as_dict() == {
        "your_price_fen": 6800, "your_price_basis": "list", "list_price_fen": 6800}
    assert (buyer_price(6800, 5800, 3).unit_fen, buyer_price(6800, 5800, 3).basis) == (5800, "community")
    assert buyer_price(6800, None, 3).unit_fen == 6800  # a member, but no community price
    succeeded = {"status": "succeeded", "group_price_fen": 5000}
    assert (buyer_price(6800, 5800, 3, succeeded).unit_fen, buyer_price(6800, 5800, 3, succeeded).basis) \
        == (5000, "group")
    # An open group-buy promises, it does not charge; a group price above the deal never applies.
    assert buyer_price(6800, 5800, 3, {"status": "open", "group_price_fen": 5000}).unit_fen == 5800
    assert buyer_price(6800, 5800, 3, {"status": "succeeded", "group_price_fen": 6000}).unit_fen == 5800
    assert buyer_price(6800, 5800, None, succeeded).unit_fen == 6800  # not buying as a member


async def _sale_as(api: Api, sale_id: int, token: str | None) -> dict[str, Any]:
    headers = api.auth(token) if token else {}
    resp = await api.client.get(f"/api/sales/{sale_id}", headers=headers)
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def _point(api: Api, cid: int, name: str) -> int:
    resp = await api.client.post(f"/api/communities/{cid}/pickup-points", json={"name": name},
                                 headers=api.auth(api.admin_token))
    assert resp.status == 201, await resp.text()
    return int((await resp.json())["id"])


async def _pay(api: Api, hold_id: str, token: str, **body: Any) -> tuple[int, dict[str, Any]]:
    resp = await api.client.post(f"/api/holds/{hold_id}/pay", json=body, headers=api.auth(token))
    return resp.status, dict(await resp.json())


async def _order(api: Api, order_id: int, token: str) -> dict[str, Any]:
    resp = await api.client.get(f"/api/orders/{order_id}", headers=api.auth(token))
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def test_card_price_is_the_charged_price(api: Api) -> None:
    shop = await make_shop(api)
    (li, li_token), (wang, wang_token), (_x, stranger) = await bulk_buyers(api, 3)
    sunny = await community_with(api, "阳光花园", [li, wang])
    other = await community_with(api, "翠湖苑", [])
    gate = await _point(api, sunny, "南门驿站")  # the default
    locker = await _point(api, sunny, "3号楼快递柜")
    elsewhere = await _point(api, other, "翠湖苑门卫")
    sale = await shop.sale(price_fen=6800, community_price_fen=5800, community_ids=[sunny],
                           per_buyer_limit=3, gift_first_n=30, gift_text="前30名送桑葚一盒")

    anonymous = await _sale_as(api, sale["id"], None)
    assert "your_price_fen" not in anonymous and anonymous["price_fen"] == 6800
    mine = await _sale_as(api, sale["id"], li_token)
    assert (mine["your_price_fen"], mine["list_price_fen"], mine["your_price_basis"]) \
        == (5800, 6800, "community")
    assert (mine["your_community_id"], mine["your_community_name"]) == (sunny, "阳光花园")
    assert (mine["your_limit_left"], mine["gift_left"]) == (3, 30)
    outsider = await _sale_as(api, sale["id"], stranger)
    assert (outsider["your_price_fen"], outsider["your_community_id"]) == (6800, None)

    status, held = await hold(api, sale["id"], li_token, 2)
    assert status == 201 and held["unit_price_fen"] == mine["your_price_fen"]
    # Another community's point is refused, and nothing is charged for trying.
    status, refused = await _pay(api, held["hold_id"], li_token, pickup_point_id=elsewhere)
    assert status == 400 and refused["error"]["reason"] == "not_your_pickup_point"
    status, paid = await _pay(api, held["hold_id"], li_token, pickup_point_id=locker)
    assert status == 200, paid
    order = await _order(api, paid["order_id"], li_token)
    assert (order["unit_price_fen"], order["amount_fen"]) == (5800, 5800 * 2)
    assert order["pickup_point_id"] == locker and order["gift"] is True
    after = await _sale_as(api, sale["id"], li_token)
    assert (after["your_limit_left"], after["gift_left"]) == (1, 29)

    # Without a choice the order goes to the community's default point.
    _s, held = await hold(api, sale["id"], wang_token, 1)
    status, paid = await _pay(api, held["hold_id"], wang_token)
    assert status == 200 and (await _order(api, paid["order_id"], wang_token))["pickup_point_id"] == gate

    # Once the community's group-buy succeeds, the card, the hold and the charge say its price.
    resp = await api.client.post(f"/api/sales/{sale['id']}/group-buys",
                                 headers=api.auth(shop.host_token), json={
        "community_id": sunny, "threshold": 2, "unit": "people", "group_price_fen": 5000,
        "deadline": (datetime.now(UTC) + timedelta(seconds=1)).isoformat()})
    assert resp.status == 201, await resp.text()
    group_id = (await resp.json())["group_id"]
    for _ in range(80):
        view = await (await api.client.get(f"/api/group-buys/{group_id}")).json()
        if view["status"] == "succeeded" and view["settled"]:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the group-buy was never decided")
    now = await _sale_as(api, sale["id"], li_token)
    assert (now["your_price_fen"], now["your_price_basis"]) == (5000, "group")
    _s, held = await hold(api, sale["id"], li_token, 1)
    assert held["unit_price_fen"] == 5000
    status, paid = await _pay(api, held["hold_id"], li_token)
    assert status == 200 and (await _order(api, paid["order_id"], li_token))["amount_fen"] == 5000


@pytest.mark.races
async def test_twenty_pays_of_one_hold_with_a_point_make_one_order(any_db_api: Api) -> None:
    """The same pay (with her chosen point) fired 20 times at once: one order, charged once at
    her price, at that point; the hold's units are sold once."""
    api = any_db_api
    shop = await make_shop(api)
    ((li, li_token),) = await bulk_buyers(api, 1)
    sunny = await community_with(api, "阳光花园", [li])
    await _point(api, sunny, "南门驿站")
    locker = await _point(api, sunny, "3号楼快递柜")
    sale = await shop.sale(price_fen=6800, community_price_fen=5800, community_ids=[sunny],
                           per_buyer_limit=3, stock=10)
    _s, held = await hold(api, sale["id"], li_token, 3)
    answers = await asyncio.gather(*(_pay(api, held["hold_id"], li_token, pickup_point_id=locker)
                                      for _ in range(20)))
    assert {status for status, _ in answers} == {200}, answers
    assert len({body["order_id"] for _, body in answers}) == 1
    orders = (await (await api.client.get("/api/orders", headers=api.auth(li_token))).json())["items"]
    assert [(o["amount_fen"], o["pickup_point_id"]) for o in orders] == [(5800 * 3, locker)]
    counts = await _sale_as(api, sale["id"], li_token)
    assert (counts["sold"], counts["remaining"], counts["held"]) == (3, 7, 0)
