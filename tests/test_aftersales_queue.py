"""The claims queue and the shop's reviews and NPS, through the API on SQLite and PostgreSQL:
decisions (approve with 坏一赔十, reject or reship with a reason) happen once however many
arrive at once, the queue shows what the ledger paid, and a host's one public reply per review
shows on every public review list."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func, select

from server.keys import database_key
from tests.conftest import Api
from tests.test_money_concurrency import N, _farm_with_orders, _photo, _provider
from tests.trust_support import Farm, ago, bought_and_picked_up, make_farm, sql
from trust.reviews import ReviewReply

QUEUED = {"full_refund_without_return": True, "multiplier": 10, "max_days_after_pickup": 2,
          "auto_approve_max_fen": 0, "require_photo": True, "response_hours": 2}


async def _queued_claim(api: Api) -> tuple[Farm, int, str, dict[str, Any]]:
    """A picked-up order of 30 元 with a 坏一赔十 policy that a person must decide."""
    uid, buyer = await api.user("viewer")
    farm, (order_id,) = await _farm_with_orders(api, buyer, 1)
    resp = await api.client.put(f"/api/products/{farm.product_id}/claim-policy", json=QUEUED,
                                headers=api.auth(farm.host))
    assert resp.status == 200
    resp = await api.client.post("/api/claims", json={
        "order_id": order_id, "reason": "spoiled", "photos": [await _photo(api, buyer)]},
        headers=api.auth(buyer))
    claim = await resp.json()
    assert resp.status == 201 and claim["status"] == "pending", claim
    return farm, uid, buyer, claim


async def test_one_of_many_decisions_wins_and_the_queue_shows_the_ledger(any_db_api: Api) -> None:
    api = any_db_api
    farm, uid, buyer, claim = await _queued_claim(api)
    _, assistant = await api.user("assistant")
    queue = await (await api.client.get("/api/claims", headers=api.auth(assistant))).json()
    row = next(c for c in queue if c["id"] == claim["id"])
    assert row["batch_code"] == farm.batch_code and row["trace_url"] == f"/trace/{farm.batch_code}"
    assert row["multiplier"] == 10 and row["payout_fen"] == 30000 and len(row["photo_urls"]) == 1
    assert row["refund_status"] is None and row["compensation_status"] is None

    paths = ["approve", "reject", "reship"]

    async def one(i: int) -> tuple[int, dict[str, Any]]:
        resp = await api.client.post(f"/api/claims/{claim['id']}/{paths[i % 3]}",
                                     json={"note": f"第{i}个决定"}, headers=api.auth(assistant))
        return resp.status, dict(await resp.json())

    results = await asyncio.gather(*(one(i) for i in range(N)))
    wins = [body for status, body in results if status == 200]
    assert len(wins) == 1, results
    assert all(status == 409 for status, _b in results if status != 200), results
    won = wins[0]
    provider = _provider(api)
    order = await (await api.client.get(f"/api/orders/{claim['order_id']}",
                                        headers=api.auth(buyer))).json()
    if won["status"] == "approved":
        assert (won["refund_fen"], won["compensation_fen"]) == (3000, 27000)
        assert won["refund_status"] == "paid" and won["compensation_status"] == "paid"
        assert await provider.transferred_total(f"user:{uid}") == 27000
        assert order["claim"]["compensation_paid"] and order["claim"]["refund_status"] == "paid"
    else:
        assert won["refund_fen"] == 0 and won["refund_status"] is None
        assert await provider.transferred_total(f"user:{uid}") == 0 and order["refunded_fen"] == 0
    decided = await (await api.client.get("/api/claims?status=decided",
                                          headers=api.auth(assistant))).json()
    assert [c["id"] for c in decided] == [claim["id"]]
    pending = await (await api.client.get("/api/claims", headers=api.auth(assistant))).json()
    assert claim["id"] not in [c["id"] for c in pending]


async def test_reship_needs_a_reason_pays_nothing_and_is_in_the_order_history(
        any_db_api: Api) -> None:
    api = any_db_api
    _farm, uid, buyer, claim = await _queued_claim(api)
    _, assistant = await api.user("assistant")
    for path in ("reship", "reject"):
        resp = await api.client.post(f"/api/claims/{claim['id']}/{path}", json={"note": "  "},
                                     headers=api.auth(assistant))
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "reason_required"
    # The host is a party to the claim, not its judge.
    resp = await api.client.post(f"/api/claims/{claim['id']}/reship", json={"note": "补发"},
                                 headers=api.auth(_farm.host))
    assert resp.status == 403
    resp = await api.client.post(f"/api/claims/{claim['id']}/reship",
                                 json={"note": "明天补发一箱"}, headers=api.auth(assistant))
    body = await resp.json()
    assert resp.status == 200 and body["status"] == "reshipped", body
    assert body["refund_fen"] == 0 and body["compensation_fen"] == 0
    assert await _provider(api).transferred_total(f"user:{uid}") == 0
    order = await (await api.client.get(f"/api/orders/{claim['order_id']}",
                                        headers=api.auth(buyer))).json()
    assert order["refunded_fen"] == 0 and order["status"] == "picked_up"
    assert any("明天补发一箱" in step["note"] for step in order["history"]), order["history"]
    assert order["claim"]["status"] == "reshipped"
    assert order["claim"]["decision_note"] == "明天补发一箱"


async def _reviewed(api: Api, farm: Farm, stars: int, text: str) -> int:
    _uid, buyer, order_id = await bought_and_picked_up(farm)
    resp = await api.client.post("/api/reviews", json={"order_id": order_id, "stars": stars,
                                                       "text": text}, headers=api.auth(buyer))
    assert resp.status == 201
    return int((await resp.json())["id"])


async def test_one_public_reply_per_review_by_the_products_host(any_db_api: Api) -> None:
    api = any_db_api
    farm = await make_farm(api)
    other = await make_farm(api, farm="别家农场")
    review_id = await _reviewed(api, farm, 2, "有两个坏的")
    await _reviewed(api, farm, 5, "很甜")
    _, assistant = await api.user("assistant")
    for token in (other.host, assistant):
        resp = await api.client.put(f"/api/reviews/{review_id}/reply", json={"text": "x"},
                                    headers=api.auth(token))
        assert resp.status == 403
    resp = await api.client.put(f"/api/reviews/{review_id}/reply", json={"text": " "},
                                headers=api.auth(farm.host))
    assert resp.status == 400

    async def reply(i: int) -> int:
        resp = await api.client.put(f"/api/reviews/{review_id}/reply",
                                    json={"text": f"抱歉,已补发 {i}"}, headers=api.auth(farm.host))
        return resp.status

    assert set(await asyncio.gather(*(reply(i) for i in range(N)))) == {200}
    async with api.app[database_key].session() as db:
        count = (await db.execute(select(func.count(ReviewReply.id)).where(
            ReviewReply.review_id == review_id))).scalar_one()
    assert count == 1
    resp = await api.client.put(f"/api/reviews/{review_id}/reply", json={"text": "抱歉,已补发"},
                                headers=api.auth(farm.host))
    assert resp.status == 200 and (await resp.json())["edited"]
    for path in (f"/api/products/{farm.product_id}/reviews", f"/api/batches/{farm.batch_code}/reviews",
                 f"/api/sessions/{farm.session_id}/reviews"):
        data = await (await api.client.get(path)).json()
        assert data["distribution"] == {"1": 0, "2": 1, "3": 0, "4": 0, "5": 1}, path
        by_id = {r["id"]: r for r in data["items"]}
        assert by_id[review_id]["reply"]["text"] == "抱歉,已补发", path
        assert [r["reply"] for r in data["items"] if r["id"] != review_id] == [None]
    page = await (await api.client.get(f"/api/sessions/{farm.session_id}/reviews?limit=1")).json()
    assert len(page["items"]) == 1 and page["next"] is not None
    rest = await (await api.client.get(
        f"/api/sessions/{farm.session_id}/reviews?limit=1&cursor={page['next']}")).json()
    assert [r["id"] for r in rest["items"]] != [r["id"] for r in page["items"]]


async def test_nps_report_per_session_within_the_hosts_own(any_db_api: Api) -> None:
    api = any_db_api
    farm = await make_farm(api)
    other = await make_farm(api, farm="别家农场")
    for score in (10, 9, 7, 3):
        _uid, buyer, order_id = await bought_and_picked_up(farm)
        resp = await api.client.post("/api/nps", json={"order_id": order_id, "score": score},
                                     headers=api.auth(buyer))
        assert resp.status == 201
    report = await (await api.client.get(f"/api/nps/report?session_id={farm.session_id}",
                                         headers=api.auth(farm.host))).json()
    assert report["score"] == 25.0 and report["count"] == 4
    assert (report["promoters"], report["passives"], report["detractors"]) == (2, 1, 1)
    assert len(report["trend"]) == 1 and report["trend"][0]["score"] == 25.0
    assert [i["score"] for i in report["items"]] == [3, 7, 9, 10]
    resp = await api.client.get(f"/api/nps/report?session_id={farm.session_id}",
                                headers=api.auth(other.host))
    assert resp.status == 403
    mine = await (await api.client.get("/api/nps/report", headers=api.auth(other.host))).json()
    assert mine["count"] == 0 and mine["score"] is None


async def test_overdue_filter_and_a_hosts_queue_holds_his_own(any_db_api: Api) -> None:
    api = any_db_api
    farm, _uid, _buyer, late = await _queued_claim(api)
    other, _uid2, _buyer2, fresh = await _queued_claim(api)
    await sql(api, "UPDATE claims SET due_at = :due WHERE id = :id", due=ago(hours=1),
              id=late["id"])
    _, assistant = await api.user("assistant")
    overdue = await (await api.client.get("/api/claims?status=overdue",
                                          headers=api.auth(assistant))).json()
    assert [c["id"] for c in overdue] == [late["id"]] and overdue[0]["overdue"]
    pending = await (await api.client.get("/api/claims", headers=api.auth(assistant))).json()
    assert [c["id"] for c in pending] == [late["id"], fresh["id"]]  # oldest due first
    for host, claim in ((farm.host, late), (other.host, fresh)):
        mine = await (await api.client.get("/api/claims?status=all",
                                           headers=api.auth(host))).json()
        assert [c["id"] for c in mine] == [claim["id"]]


async def test_migration_0411_goes_down_and_up(any_db_api: Api) -> None:
    """The replies table goes with 0411 and comes back empty; reviews stay."""
    from sqlalchemy import text

    from tests.test_pickup_tenancy import _alembic

    api = any_db_api
    farm = await make_farm(api)
    review_id = await _reviewed(api, farm, 4, "不错")
    resp = await api.client.put(f"/api/reviews/{review_id}/reply", json={"text": "谢谢"},
                                headers=api.auth(farm.host))
    assert resp.status == 200
    async with api.app[database_key].engine.begin() as conn:
        await conn.run_sync(_alembic, "downgrade", "0407")
        await conn.run_sync(_alembic, "upgrade", "heads")
        left = (await conn.execute(text("SELECT count(*) FROM review_replies"))).scalar_one()
        reviews = (await conn.execute(text("SELECT count(*) FROM reviews"))).scalar_one()
    assert (left, reviews) == (0, 1)
    resp = await api.client.put(f"/api/reviews/{review_id}/reply", json={"text": "再谢"},
                                headers=api.auth(farm.host))
    assert resp.status == 200
