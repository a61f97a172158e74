"""After-sales: within policy → refunded at once and the order shows it; otherwise the queue."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from commerce.base import as_utc
from commerce.orders import OrderTransition
from server.keys import database_key
from tests.conftest import Api
from tests.trust_support import JPEG, Farm, bought_and_picked_up, buy, make_farm, pin, upload
from trust.claims import Claim
from trust.uploads import Upload

POLICY = {"full_refund_without_return": True, "multiplier": 10, "max_days_after_pickup": 2,
          "auto_approve_max_fen": 100_000, "require_photo": True, "response_hours": 2}


async def _policy(farm: Farm, **changes: object) -> None:
    resp = await farm.api.client.put(f"/api/products/{farm.product_id}/claim-policy",
                                     json={**POLICY, **changes}, headers=farm.api.auth(farm.host))
    assert resp.status == 200, await resp.text()


async def _claim(api: Api, token: str, order_id: int, photo: bool = True, bad_qty: int = 1) -> dict:  # type: ignore[type-arg]
    photos = [(await (await upload(api, token, JPEG, "claim")).json())["id"]] if photo else []
    resp = await api.client.post("/api/claims", json={
        "order_id": order_id, "reason": "spoiled", "description": "两个坏果", "photos": photos,
        "bad_qty": bad_qty}, headers=api.auth(token))
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def test_claim_within_policy_is_refunded_at_once(any_db_api: Api) -> None:
    api = any_db_api
    farm = await make_farm(api, price_fen=3000)
    await _policy(farm)
    pin_id = await pin(farm)
    _, buyer, order_id = await bought_and_picked_up(farm, qty=3)
    claim = await _claim(api, buyer, order_id, bad_qty=1)
    assert claim["status"] == "approved" and claim["auto"] is True
    # 坏一赔十: 1 bad × 3000 × 10 = 30000 owed; the order was 9000, so 9000 back, 21000 credit.
    assert claim["payout_fen"] == 30000
    assert claim["refund_fen"] == 9000 and claim["compensation_fen"] == 21000
    assert claim["refund_ref"].startswith("simrf_")
    assert claim["responded_at"] is not None and claim["overdue"] is False
    assert claim["batch_id"] == farm.batch_id
    assert claim["stream_moment"]["pin_id"] == pin_id
    assert claim["replay_chapter"] == {"session_id": farm.session_id,
                                       "product_id": farm.product_id, "pin_id": pin_id}
    order = await (await api.client.get(f"/api/orders/{order_id}", headers=api.auth(buyer))).json()
    assert order["refunded_fen"] == 9000
    assert any("after-sales refund 9000" in step["note"] for step in order["history"])
    view = await (await api.client.get(f"/api/orders/{order_id}/after-sales",
                                       headers=api.auth(buyer))).json()
    assert view["claim"]["id"] == claim["id"] and view["refunded_fen"] == 9000
    assert (view["can_claim"], view["can_review"], view["nps_pending"]) == (False, True, True)
    assert view["trace_url"] == f"/trace/{farm.batch_code}"
    assert view["claim_policy"]["multiplier"] == 10
    _, stranger = await api.user("viewer")
    resp = await api.client.get(f"/api/orders/{order_id}/after-sales", headers=api.auth(stranger))
    assert resp.status == 403
    flags = await (await api.client.get(f"/api/sessions/{farm.session_id}/claim-flags")).json()
    assert flags == [{"product_id": farm.product_id, "pin_id": pin_id, "claims": 1, "bad_units": 1}]
    # One claim per order.
    resp = await api.client.post("/api/claims", json={"order_id": order_id, "reason": "other"},
                                 headers=api.auth(buyer))
    assert resp.status == 409


async def test_claims_outside_policy_wait_for_an_assistant(any_db_api: Api) -> None:
    api = any_db_api
    farm = await make_farm(api, price_fen=3000)
    await _policy(farm, multiplier=1, auto_approve_max_fen=5000)
    _, no_photo, order_a = await bought_and_picked_up(farm)
    _, too_much, order_b = await bought_and_picked_up(farm, qty=2)
    _, too_late, order_c = await bought_and_picked_up(farm)
    async with api.app[database_key].session() as db:
        # Picked up three days ago: past max_days_after_pickup.
        rows = await db.execute(select(OrderTransition).where(
            OrderTransition.order_id.in_([order_a, order_c])))
        for step in rows.scalars():
            step.at = as_utc(step.at) - timedelta(days=3)
    # The policy requires a photo: without one the claim is refused before anything is filed.
    resp = await api.client.post("/api/claims", json={
        "order_id": order_a, "reason": "spoiled", "description": "两个坏果"},
        headers=api.auth(no_photo))
    assert (resp.status, (await resp.json())["error"]["code"]) == (400, "photo_required")
    assert await (await api.client.get("/api/claims/mine", headers=api.auth(no_photo))).json() == []
    a = await _claim(api, no_photo, order_a)
    b = await _claim(api, too_much, order_b, bad_qty=2)
    c = await _claim(api, too_late, order_c)
    assert (a["status"], a["rules"]) == ("pending", ["past_max_days"])
    assert (b["status"], b["rules"]) == ("pending", ["above_auto_limit"])
    assert (c["status"], c["rules"]) == ("pending", ["past_max_days"])
    assert a["refund_fen"] == 0 and a["responded_at"] is None and a["due_at"] is not None
    _, assistant = await api.user("assistant")
    queue = await (await api.client.get("/api/claims", headers=api.auth(assistant))).json()
    assert {q["id"] for q in queue} == {a["id"], b["id"], c["id"]}
    # A viewer cannot see the queue or decide; a host cannot decide either.
    _, viewer = await api.user("viewer")
    assert (await api.client.get("/api/claims", headers=api.auth(viewer))).status == 403
    resp = await api.client.post(f"/api/claims/{a['id']}/approve", json={}, headers=api.auth(no_photo))
    assert resp.status == 403
    resp = await api.client.post(f"/api/claims/{a['id']}/approve", json={},
                                 headers=api.auth(farm.host))
    assert resp.status == 403
    # The promised response time: claim c is now past due and shows in the overdue list.
    async with api.app[database_key].session() as db:
        claim_c = await db.get(Claim, c["id"])
        assert claim_c is not None
        claim_c.due_at = as_utc(claim_c.created_at) - timedelta(minutes=1)
    overdue = await (await api.client.get("/api/claims?status=overdue",
                                          headers=api.auth(assistant))).json()
    assert [(o["id"], o["overdue"]) for o in overdue] == [(c["id"], True)]
    resp = await api.client.post(f"/api/claims/{a['id']}/approve", json={"note": "照片补发了"},
                                 headers=api.auth(assistant))
    assert resp.status == 200
    approved = await resp.json()
    assert approved["status"] == "approved" and approved["refund_fen"] == 3000
    assert approved["auto"] is False and approved["responded_at"] is not None
    resp = await api.client.post(f"/api/claims/{b['id']}/reject", json={"note": "不符合"},
                                 headers=api.auth(assistant))
    assert (await resp.json())["status"] == "rejected"
    resp = await api.client.post(f"/api/claims/{b['id']}/approve", json={},
                                 headers=api.auth(assistant))
    assert resp.status == 409
    resp = await api.client.post(f"/api/claims/{c['id']}/approve", json={"payout_fen": 999_999},
                                 headers=api.auth(assistant))
    assert resp.status == 400
    order = await (await api.client.get(f"/api/orders/{order_b}", headers=api.auth(too_much))).json()
    assert order["refunded_fen"] == 0
    mine = await (await api.client.get("/api/claims/mine", headers=api.auth(no_photo))).json()
    assert [m["id"] for m in mine] == [a["id"]]
    assert (await api.client.get(f"/api/claims/{a['id']}", headers=api.auth(viewer))).status == 403


async def test_bad_claims(api: Api) -> None:
    farm = await make_farm(api)
    _, buyer = await api.user("viewer")
    _, stranger = await api.user("viewer")
    order_id = await buy(farm, buyer)
    body = {"order_id": order_id, "reason": "spoiled", "bad_qty": 1}
    resp = await api.client.post("/api/claims", json=body, headers=api.auth(stranger))
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "not_your_order"
    resp = await api.client.post("/api/claims", json=body, headers=api.auth(buyer))
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "order_not_picked_up"
    for bad in ({**body, "reason": "because"}, {**body, "bad_qty": 0}, {**body, "order_id": "x"}):
        assert (await api.client.post("/api/claims", json=bad, headers=api.auth(buyer))).status == 400
    resp = await api.client.post("/api/claims", json={**body, "order_id": 999999},
                                 headers=api.auth(buyer))
    assert resp.status == 404
    # Someone else's upload cannot be used as a claim photo.
    _, _token, picked = await bought_and_picked_up(farm)
    foreign = await (await upload(api, stranger, JPEG, "claim")).json()
    resp = await api.client.post("/api/claims", json={**body, "order_id": picked,
                                                      "photos": [foreign["id"]]},
                                 headers=api.auth(_token))
    assert resp.status == 403
    # Policies are the product host's.
    _, other_host = await api.user("host")
    resp = await api.client.put(f"/api/products/{farm.product_id}/claim-policy", json=POLICY,
                                headers=api.auth(other_host))
    assert resp.status == 403
    resp = await api.client.put(f"/api/products/{farm.product_id}/claim-policy",
                                json={**POLICY, "multiplier": 50}, headers=api.auth(farm.host))
    assert resp.status == 400


async def _pending_claim(api: Api, farm: Farm, buyer: str, order_id: int) -> dict:  # type: ignore[type-arg]
    """A claim that waits for an assistant (picked up too long ago for auto-approval)."""
    async with api.app[database_key].session() as db:
        rows = await db.execute(select(OrderTransition).where(OrderTransition.order_id == order_id))
        for step in rows.scalars():
            step.at = as_utc(step.at) - timedelta(days=5)
    claim = await _claim(api, buyer, order_id)
    assert claim["status"] == "pending", claim
    return claim


async def test_an_empty_claim_is_refused_before_anything_is_filed(any_db_api: Api) -> None:
    """No photo where the policy requires one, or nothing said at all: 400 with a code the page
    can show, and no claim that would then block the buyer with `claim_exists`."""
    api = any_db_api
    farm = await make_farm(api)
    await _policy(farm)
    _, buyer, order_id = await bought_and_picked_up(farm)
    for body in ({}, {"description": "坏了两个"}, {"description": "  "}):
        resp = await api.client.post("/api/claims", json={
            "order_id": order_id, "reason": "spoiled", **body}, headers=api.auth(buyer))
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "photo_required"
    assert await (await api.client.get("/api/claims/mine", headers=api.auth(buyer))).json() == []
    view = await (await api.client.get(f"/api/orders/{order_id}/after-sales",
                                       headers=api.auth(buyer))).json()
    assert view["can_claim"] is True and view["claim"] is None
    # Without a photo rule, a claim still has to say something.
    await _policy(farm, require_photo=False)
    resp = await api.client.post("/api/claims", json={"order_id": order_id, "reason": "other"},
                                 headers=api.auth(buyer))
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "claim_empty"
    # With the photo the same claim goes through.
    claim = await _claim(api, buyer, order_id)
    assert claim["status"] == "approved"


async def test_the_buyer_adds_photos_to_their_open_claim(any_db_api: Api) -> None:
    api = any_db_api
    farm = await make_farm(api)
    await _policy(farm)
    _, buyer, order_id = await bought_and_picked_up(farm)
    claim = await _pending_claim(api, farm, buyer, order_id)
    photo = await (await upload(api, buyer, JPEG, "claim")).json()
    resp = await api.client.post(f"/api/claims/{claim['id']}/photos", json={"photos": [photo["id"]]},
                                 headers=api.auth(buyer))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["photos"] == [*claim["photos"], photo["id"]]
    # The claim's parties see the added photo; others do not, and cannot add to it.
    assert (await api.client.get(photo["url"], headers=api.auth(farm.host))).status == 200
    _, stranger = await api.user("viewer")
    assert (await api.client.get(photo["url"], headers=api.auth(stranger))).status == 403
    theirs = await (await upload(api, stranger, JPEG, "claim")).json()
    resp = await api.client.post(f"/api/claims/{claim['id']}/photos",
                                 json={"photos": [theirs["id"]]}, headers=api.auth(stranger))
    assert resp.status == 403
    resp = await api.client.post(f"/api/claims/{claim['id']}/photos",
                                 json={"photos": [theirs["id"]]}, headers=api.auth(buyer))
    assert resp.status == 403  # someone else's upload
    # Another buyer cannot move their claim's photo onto this claim.
    _, other_buyer, other_order = await bought_and_picked_up(farm)
    other = await _claim(api, other_buyer, other_order)
    resp = await api.client.post(f"/api/claims/{claim['id']}/photos",
                                 json={"photos": other["photos"]}, headers=api.auth(other_buyer))
    assert resp.status == 403
    # Once decided, the claim is closed to additions.
    _, assistant = await api.user("assistant")
    resp = await api.client.post(f"/api/claims/{claim['id']}/reject", json={"note": "看不出问题"},
                                 headers=api.auth(assistant))
    assert resp.status == 200
    late = await (await upload(api, buyer, JPEG, "claim")).json()
    resp = await api.client.post(f"/api/claims/{claim['id']}/photos", json={"photos": [late["id"]]},
                                 headers=api.auth(buyer))
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "claim_closed"


@pytest.mark.races
async def test_photos_added_at_once_all_land_within_the_limit(any_db_api: Api) -> None:
    """N uploads added at once: none lost from the claim's list, never more than six."""
    api = any_db_api
    farm = await make_farm(api)
    await _policy(farm)
    _, buyer, order_id = await bought_and_picked_up(farm)
    claim = await _pending_claim(api, farm, buyer, order_id)
    photos = [(await (await upload(api, buyer, JPEG, "claim")).json())["id"] for _ in range(20)]
    results = await asyncio.gather(*(api.client.post(
        f"/api/claims/{claim['id']}/photos", json={"photos": [p]}, headers=api.auth(buyer))
        for p in photos))
    assert sorted(r.status for r in results) == [200] * 5 + [400] * 15
    mine = await (await api.client.get(f"/api/claims/{claim['id']}", headers=api.auth(buyer))).json()
    assert len(mine["photos"]) == 6
    async with api.app[database_key].session() as db:
        linked = (await db.execute(select(Upload.id).where(Upload.claim_id == claim["id"]))).all()
    assert sorted(row[0] for row in linked) == sorted(mine["photos"])


async def test_the_order_shows_its_claim_after_a_reload(any_db_api: Api) -> None:
    api = any_db_api
    farm = await make_farm(api)
    await _policy(farm)
    _, buyer, order_id = await bought_and_picked_up(farm)
    listed = (await (await api.client.get("/api/orders", headers=api.auth(buyer))).json())["items"]
    assert [o["claim"] for o in listed] == [None]
    claim = await _pending_claim(api, farm, buyer, order_id)
    listed = (await (await api.client.get("/api/orders", headers=api.auth(buyer))).json())["items"]
    (row,) = listed
    assert row["claim"]["id"] == claim["id"] and row["claim"]["status"] == "pending"
    assert row["claim"]["photos"] == claim["photos"]
    one = await (await api.client.get(f"/api/orders/{order_id}", headers=api.auth(buyer))).json()
    assert one["claim"]["status"] == "pending"
