"""Trust archive: reviews only from buyers of a picked-up order; NPS once per order."""

from __future__ import annotations

from tests.conftest import Api
from tests.trust_support import JPEG, bought_and_picked_up, buy, make_farm, pick_up, upload


async def test_only_verified_buyers_review(any_db_api: Api) -> None:
    api = any_db_api
    farm = await make_farm(api)
    _, stranger = await api.user("viewer")
    buyer_id, buyer = await api.user("viewer")
    order_id = await buy(farm, buyer, 2)
    body = {"order_id": order_id, "stars": 5, "text": "很甜"}
    # A non-buyer (someone else's order) is refused.
    resp = await api.client.post("/api/reviews", json=body, headers=api.auth(stranger))
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "not_your_order"
    # The seller cannot review their own goods either.
    resp = await api.client.post("/api/reviews", json=body, headers=api.auth(farm.host))
    assert resp.status == 403
    # Paid but not picked up yet.
    resp = await api.client.post("/api/reviews", json=body, headers=api.auth(buyer))
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "order_not_picked_up"
    await pick_up(farm, buyer, order_id)
    photo = await (await upload(api, buyer, JPEG, "review")).json()
    resp = await api.client.post("/api/reviews", json={**body, "photos": [photo["id"]]},
                                 headers=api.auth(buyer))
    assert resp.status == 201, await resp.text()
    review = await resp.json()
    assert review["batch_id"] == farm.batch_id and review["product_id"] == farm.product_id
    resp = await api.client.post("/api/reviews", json={**body, "stars": 1}, headers=api.auth(buyer))
    assert resp.status == 409
    # No edit or delete route exists for anyone.
    assert (await api.client.put("/api/reviews", json=body, headers=api.auth(farm.host))).status == 405
    for bad in ({**body, "stars": 6}, {**body, "stars": 0}, {**body, "text": "长" * 1001}):
        assert (await api.client.post("/api/reviews", json=bad, headers=api.auth(buyer))).status == 400
    # Review photos become public evidence.
    assert (await api.client.get(photo["url"])).status == 200
    for url in (f"/api/batches/{farm.batch_code}/reviews", f"/api/products/{farm.product_id}/reviews"):
        archive = await (await api.client.get(url)).json()
        assert archive["count"] == 1 and archive["average"] == 5.0
        assert archive["distribution"]["5"] == 1
        assert archive["reviews"][0]["verified_purchase"] is True
        assert archive["reviews"][0]["photos"] == [photo["url"]]
        assert archive["reviews"][0]["buyer"].endswith("**") and str(buyer_id) not in archive[
            "reviews"][0]["buyer"]
    assert (await api.client.get("/api/batches/NOPE/reviews")).status == 404


async def test_archive_averages_and_pages(api: Api) -> None:
    farm = await make_farm(api)
    for stars in (5, 4, 2):
        _, token, order_id = await bought_and_picked_up(farm)
        resp = await api.client.post("/api/reviews", json={"order_id": order_id, "stars": stars},
                                     headers=api.auth(token))
        assert resp.status == 201
    page = await (await api.client.get(f"/api/batches/{farm.batch_code}/reviews?limit=2")).json()
    assert page["count"] == 3 and page["average"] == round(11 / 3, 2)
    assert [r["stars"] for r in page["reviews"]] == [2, 4]
    rest = await (await api.client.get(
        f"/api/batches/{farm.batch_code}/reviews?limit=2&before_id={page['next_before_id']}")).json()
    assert [r["stars"] for r in rest["reviews"]] == [5]


async def test_nps_once_per_picked_up_order(any_db_api: Api) -> None:
    api = any_db_api
    farm = await make_farm(api)
    _, buyer, order_id = await bought_and_picked_up(farm)
    _, other = await api.user("viewer")
    pending = await (await api.client.get("/api/nps/pending", headers=api.auth(buyer))).json()
    assert pending["order_ids"] == [order_id]
    resp = await api.client.post("/api/nps", json={"order_id": order_id, "score": 9},
                                 headers=api.auth(other))
    assert resp.status == 403
    resp = await api.client.post("/api/nps", json={"order_id": order_id, "score": 11},
                                 headers=api.auth(buyer))
    assert resp.status == 400
    resp = await api.client.post("/api/nps", json={"order_id": order_id, "score": 9},
                                 headers=api.auth(buyer))
    assert resp.status == 201
    resp = await api.client.post("/api/nps", json={"order_id": order_id, "score": 3},
                                 headers=api.auth(buyer))
    assert resp.status == 409
    pending = await (await api.client.get("/api/nps/pending", headers=api.auth(buyer))).json()
    assert pending["order_ids"] == []
