"""品鉴官 programmes, trial samples, 晒单 and trust points through the real app, on SQLite and
PostgreSQL: the quota, the sample stock, the point balance and one award per fact hold when
twenty identical requests arrive at once; a 晒单 only from a verified order, once; a refund
takes the points back.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from media.ffmpeg_bin import ffmpeg_binary, run_ffmpeg
from realtime import questions
from server.keys import database_key
from server.realtime_component import hub_key
from tests.conftest import Api
from tests.realtime_support import connect, make_room
from tests.trust_support import (
    JPEG,
    Farm,
    ago,
    bought_and_picked_up,
    buy,
    make_farm,
    pick_up,
    pin,
    sql,
    upload,
)
from trust import points
from trust.points import PointBalance, PointRow, fifo
from trust.programmes import Programme, badge_for

N = 20


async def _programme(api: Api, farm: Farm, **fields: Any) -> int:
    resp = await api.client.post("/api/koc/programmes", json={
        "title": "枇杷品鉴官", "rules": "每月晒单一次", "quota": 5, **fields},
        headers=api.auth(farm.host))
    assert resp.status == 201, await resp.text()
    return int((await resp.json())["id"])


async def _apply(api: Api, programme_id: int, token: str) -> tuple[int, dict[str, Any]]:
    resp = await api.client.post(f"/api/koc/programmes/{programme_id}/apply", json={"note": "爱吃"},
                                 headers=api.auth(token))
    return resp.status, await resp.json()


async def _member(api: Api, farm: Farm, programme_id: int) -> tuple[int, str]:
    user_id, token = await api.user("viewer")
    status, body = await _apply(api, programme_id, token)
    assert status == 201, body
    resp = await api.client.post(f"/api/koc/applications/{body['id']}/select",
                                 headers=api.auth(farm.host))
    assert resp.status == 200, await resp.text()
    return user_id, token


async def _post(api: Api, token: str, **ref: int) -> tuple[int, dict[str, Any]]:
    resp = await upload(api, token, JPEG, "ugc")
    assert resp.status == 201, await resp.text()
    photo = (await resp.json())["id"]
    resp = await api.client.post("/api/ugc/posts", json={**ref, "text": "很甜,汁多", "photos": [photo]},
                                 headers=api.auth(token))
    return resp.status, await resp.json()


async def _balance(api: Api, user_id: int) -> int:
    async with api.app[database_key].session() as db:
        row = await db.get(PointBalance, user_id)
        return row.balance if row else 0


@pytest.mark.slow
async def test_quota_holds_under_twenty_selections_at_once(any_db_api: Api) -> None:
    api = any_db_api
    farm = await make_farm(api)
    programme_id = await _programme(api, farm, quota=5)
    applications = []
    for _ in range(N):
        _uid, token = await api.user("viewer")
        status, body = await _apply(api, programme_id, token)
        assert status == 201, body
        applications.append(body["id"])
    results = await asyncio.gather(*(
        api.client.post(f"/api/koc/applications/{app_id}/select", headers=api.auth(farm.host))
        for app_id in applications))
    statuses = Counter(r.status for r in results)
    assert statuses == {200: 5, 409: N - 5}, statuses
    codes = {(await r.json())["error"]["code"] for r in results if r.status == 409}
    assert codes == {"quota_full"}
    async with api.app[database_key].session() as db:
        programme = await db.get(Programme, programme_id)
        assert programme is not None and programme.selected == 5
    listing = await (await api.client.get(f"/api/koc/programmes/{programme_id}/applications",
                                          headers=api.auth(farm.host))).json()
    assert Counter(a["status"] for a in listing["items"]) == {"selected": 5, "applied": N - 5}


async def test_entry_criteria_are_checked_by_the_server(api: Api) -> None:
    farm = await make_farm(api)
    programme_id = await _programme(api, farm, min_orders=1)
    _uid, stranger = await api.user("viewer")
    status, body = await _apply(api, programme_id, stranger)
    assert status == 409 and body["error"]["code"] == "criteria_not_met", body
    assert body["error"]["have"] == {"orders": 0, "reviews": 0}
    await pin(farm)
    _uid, buyer, _order = await bought_and_picked_up(farm)
    status, body = await _apply(api, programme_id, buyer)
    assert status == 201 and body["status"] == "applied", body
    # An order bought but not picked up does not count.
    _uid, waiting = await api.user("viewer")
    await buy(farm, waiting)
    status, body = await _apply(api, programme_id, waiting)
    assert status == 409 and body["error"]["code"] == "criteria_not_met", body


@pytest.mark.slow
async def test_sample_stock_holds_and_one_sample_per_member(any_db_api: Api) -> None:
    api = any_db_api
    farm = await make_farm(api)
    programme_id = await _programme(api, farm, quota=N)
    members = [await _member(api, farm, programme_id) for _ in range(N)]
    resp = await api.client.put(f"/api/koc/batches/{farm.batch_id}/sample-stock", json={"units": 5},
                                headers=api.auth(farm.host))
    assert resp.status == 200, await resp.text()
    results = await asyncio.gather(*(
        api.client.post("/api/koc/samples", json={"product_id": farm.product_id, "user_id": uid,
                                                  "due_days": 7}, headers=api.auth(farm.host))
        for uid, _token in members))
    statuses = Counter(r.status for r in results)
    assert statuses == {201: 5, 409: N - 5}, statuses
    stock = await (await api.client.get(f"/api/koc/batches/{farm.batch_id}/samples",
                                        headers=api.auth(farm.host))).json()
    assert stock["stock"] == {"batch_id": farm.batch_id, "units": 5, "sent": 5, "left": 0}
    assert len(stock["samples"]) == 5
    # Twenty sends of the same sample to one member: one sample, one unit.
    resp = await api.client.put(f"/api/koc/batches/{farm.batch_id}/sample-stock",
                                json={"units": 15}, headers=api.auth(farm.host))
    assert resp.status == 200
    sent = {s["user_id"] for s in stock["samples"]}
    unsent = next(uid for uid, _t in members if uid not in sent)
    results = await asyncio.gather(*(
        api.client.post("/api/koc/samples", json={"product_id": farm.product_id, "user_id": unsent},
                        headers=api.auth(farm.host)) for _ in range(N)))
    assert Counter(r.status for r in results) == {201: 1, 409: N - 1}
    stock = await (await api.client.get(f"/api/koc/batches/{farm.batch_id}/samples",
                                        headers=api.auth(farm.host))).json()
    assert stock["stock"]["sent"] == 6 and len(stock["samples"]) == 6
    # The sample is the KOC's zero-price order.
    token = dict(members)[unsent]
    mine = await (await api.client.get("/api/koc/samples/mine", headers=api.auth(token))).json()
    assert [(s["amount_fen"], s["batch_code"]) for s in mine["items"]] == [(0, farm.batch_code)]


async def test_selection_and_a_sample_are_each_told_to_the_neighbour_once(api: Api) -> None:
    farm = await make_farm(api)
    programme_id = await _programme(api, farm)
    uid, token = await _member(api, farm, programme_id)
    await api.client.put(f"/api/koc/batches/{farm.batch_id}/sample-stock", json={"units": 5},
                         headers=api.auth(farm.host))
    for _ in range(2):  # the second send is refused (already_sent) and tells her nothing more
        await api.client.post("/api/koc/samples", json={"product_id": farm.product_id,
                                                        "user_id": uid}, headers=api.auth(farm.host))
    resp = await api.client.get("/api/notifications", headers=api.auth(token))
    assert resp.status == 200, await resp.text()
    notices = {n["kind"]: n for n in (await resp.json())["items"]}
    assert sorted(notices) == ["koc_selected", "sample_sent"]
    assert notices["koc_selected"]["params"]["title"] == "枇杷品鉴官"
    assert notices["koc_selected"]["link"] == "/koc"
    sample = notices["sample_sent"]["params"]
    assert sample["product"] and sample["due_at"].endswith("+00:00")


async def test_a_neighbour_who_is_not_a_member_gets_no_sample(api: Api) -> None:
    farm = await make_farm(api)
    await _programme(api, farm)
    uid, _token = await api.user("viewer")
    await api.client.put(f"/api/koc/batches/{farm.batch_id}/sample-stock", json={"units": 5},
                         headers=api.auth(farm.host))
    resp = await api.client.post("/api/koc/samples", json={"product_id": farm.product_id,
                                                           "user_id": uid}, headers=api.auth(farm.host))
    assert resp.status == 409 and (await resp.json())["error"]["reason"] == "not_koc"


@pytest.mark.slow
async def test_award_is_once_per_fact_under_twenty_calls(any_db_api: Api) -> None:
    api = any_db_api
    uid, _token = await api.user("viewer")

    async def award() -> bool:
        async with api.app[database_key].session() as db:
            return await points.award(db, uid, "referral:order:77", 30, "referral")

    done = await asyncio.gather(*(award() for _ in range(N)))
    assert done.count(True) == 1
    assert await _balance(api, uid) == 30
    async with api.app[database_key].session() as db:
        rows = (await db.execute(select(func.count(PointRow.id)).where(
            PointRow.user_id == uid))).scalar_one()
    assert rows == 1


@pytest.mark.slow
async def test_spends_never_take_the_balance_below_zero(any_db_api: Api) -> None:
    api = any_db_api
    farm = await make_farm(api)
    uid, token = await api.user("viewer")
    async with api.app[database_key].session() as db:
        await points.award(db, uid, f"test:{uid}", 100, "seed")
    resp = await api.client.post("/api/points/perks", json={"name": "试吃装", "cost": 30, "stock": 50},
                                 headers=api.auth(farm.host))
    assert resp.status == 201, await resp.text()
    perk = (await resp.json())["id"]
    results = await asyncio.gather(*(
        api.client.post(f"/api/points/perks/{perk}/redeem",
                        headers={**api.auth(token), "Idempotency-Key": f"k{i}"}) for i in range(N)))
    statuses = Counter(r.status for r in results)
    assert statuses == {200: 3, 409: N - 3}, statuses
    assert {(await r.json())["error"]["code"] for r in results if r.status == 409} == {
        "not_enough_points"}
    assert await _balance(api, uid) == 10
    # The same key twenty times: one redemption.
    async with api.app[database_key].session() as db:
        # Exactly the cost: a retry waiting behind the first finds no points, and its spend.
        await points.award(db, uid, f"test2:{uid}", 20, "seed")
    results = await asyncio.gather(*(
        api.client.post(f"/api/points/perks/{perk}/redeem",
                        headers={**api.auth(token), "Idempotency-Key": "same"}) for _ in range(N)))
    assert {r.status for r in results} == {200}  # a retry is answered, not refused
    ok = [await r.json() for r in results]
    assert sum(1 for body in ok if not body["repeated"]) == 1
    assert await _balance(api, uid) == 0


@pytest.mark.slow
async def test_post_from_a_picked_up_order_approved_once_and_reversed_by_refund(any_db_api: Api) -> None:
    api = any_db_api
    farm = await make_farm(api)
    await pin(farm)
    uid, token, order_id = await bought_and_picked_up(farm)
    # Someone else's order, and an order not picked up, are refused.
    _o, other = await api.user("viewer")
    status, body = await _post(api, other, order_id=order_id)
    assert status == 403 and body["error"]["code"] == "not_your_order"
    waiting = await buy(farm, other)
    status, body = await _post(api, other, order_id=waiting)
    assert status == 409 and body["error"]["code"] == "order_not_picked_up"
    status, body = await _post(api, token, order_id=order_id)
    assert status == 201 and body["status"] == "pending", body
    post_id = body["id"]
    status, again = await _post(api, token, order_id=order_id)
    assert status == 409 and again["error"]["reason"] == "already_posted"
    # Not public before approval.
    archive = await (await api.client.get(f"/api/batches/{farm.batch_code}/ugc")).json()
    assert archive["items"] == []
    _aid, assistant = await api.user("assistant")
    results = await asyncio.gather(*(
        api.client.post(f"/api/ugc/posts/{post_id}/approve", headers=api.auth(assistant))
        for _ in range(N)))
    assert Counter(r.status for r in results) == {200: 1, 409: N - 1}
    assert await _balance(api, uid) == 20
    archive = await (await api.client.get(f"/api/batches/{farm.batch_code}/ugc")).json()
    assert [p["id"] for p in archive["items"]] == [post_id]
    photo = archive["items"][0]["photos"][0]
    assert (await api.client.get(photo)).status == 200  # public once approved
    card = await (await api.client.get(f"/api/products/{farm.product_id}/ugc")).json()
    assert [p["id"] for p in card["items"]] == [post_id]
    # An approved claim refunds the order: its points go back, once.
    resp = await api.client.put(f"/api/products/{farm.product_id}/claim-policy", json={
        "auto_approve_max_fen": 0, "require_photo": False}, headers=api.auth(farm.host))
    assert resp.status == 200, await resp.text()
    resp = await api.client.post("/api/claims", json={"order_id": order_id, "reason": "spoiled",
                                                      "description": "坏了"}, headers=api.auth(token))
    assert resp.status == 201, await resp.text()
    claim = (await resp.json())["id"]
    resp = await api.client.post(f"/api/claims/{claim}/approve", json={},
                                 headers=api.auth(assistant))
    assert resp.status == 200, await resp.text()
    assert await _balance(api, uid) == 0
    async with api.app[database_key].session() as db:
        keys = sorted((await db.execute(select(PointRow.fact_key).where(
            PointRow.user_id == uid))).scalars())
    assert keys == [f"reverse:ugc:{post_id}", f"ugc:{post_id}"]


async def test_banned_words_are_masked_in_posts(api: Api) -> None:
    farm = await make_farm(api)
    await pin(farm)
    # The host bans a word in his live room (as the moderation console does).
    await api.app[hub_key].moderation.set_banned_words(farm.session_id, ["垃圾"])
    _uid, token, order_id = await bought_and_picked_up(farm)
    resp = await upload(api, token, JPEG, "ugc")
    photo = (await resp.json())["id"]
    resp = await api.client.post("/api/ugc/posts", json={
        "order_id": order_id, "text": "不是垃圾,很好吃", "photos": [photo]}, headers=api.auth(token))
    body = await resp.json()
    assert resp.status == 201 and body["text"] == "不是**,很好吃" and body["filtered"], body


def _row(row_id: int, kind: str, pts: int, key: str, at: datetime,
         expires: datetime | None = None) -> PointRow:
    return PointRow(id=row_id, user_id=1, fact_key=key, points=pts, kind=kind, reason="",
                    created_at=at, expires_at=expires)


def test_fifo_expiry_takes_the_oldest_lot_first() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    year = timedelta(days=365)
    rows = [_row(1, "earn", 100, "a", t0, t0 + year),
            _row(2, "earn", 50, "b", t0 + timedelta(days=100), t0 + timedelta(days=100) + year),
            _row(3, "spend", -120, "spend:x", t0 + timedelta(days=200))]
    # The spend used all of lot 1 and 20 of lot 2: nothing of lot 1 is left to expire.
    state = fifo(rows, t0 + year + timedelta(days=1))
    assert state.due == [] and [(lot.row_id, lot.left) for lot in state.lots] == [(2, 30)]
    state = fifo(rows, t0 + timedelta(days=100) + year + timedelta(days=1))
    assert state.due == [(2, 30)] and state.lots == []
    # A reversal takes from its own lot first; more than is left becomes a debt.
    rows2 = [_row(1, "earn", 100, "a", t0, t0 + year), _row(2, "earn", 50, "b", t0, t0 + year),
             _row(3, "spend", -120, "spend:y", t0), _row(4, "reverse", -50, "reverse:b", t0)]
    state = fifo(rows2, t0)
    assert state.lots == [] and state.debt == 20


@pytest.mark.parametrize("earned, title", [(0, None), (60, "新晋体验官"), (1000, "金牌体验官")])
def test_titles_by_threshold(earned: int, title: str | None) -> None:
    got = points.title_for(earned)
    assert (got["zh"] if got else None) == title


async def test_expired_points_leave_the_balance_once(any_db_api: Api) -> None:
    api = any_db_api
    uid, token = await api.user("viewer")
    async with api.app[database_key].session() as db:
        await points.award(db, uid, f"old:{uid}", 40, "old")
        await points.award(db, uid, f"new:{uid}", 10, "new")
    async with api.app[database_key].session() as db:
        row = (await db.execute(select(PointRow).where(PointRow.fact_key == f"old:{uid}"))).scalar_one()
        row.expires_at = datetime.now(UTC) - timedelta(days=1)
    results = await asyncio.gather(*(api.client.get("/api/points/me", headers=api.auth(token))
                                     for _ in range(5)))
    assert {r.status for r in results} == {200}
    assert await _balance(api, uid) == 10
    mine = await (await api.client.get("/api/points/me", headers=api.auth(token))).json()
    assert mine["balance"] == 10 and [r["kind"] for r in mine["rows"]].count("expire") == 1


async def test_public_profile_shows_nothing_private(api: Api) -> None:
    farm = await make_farm(api)
    programme_id = await _programme(api, farm, badge="品鉴官")
    uid, _token = await _member(api, farm, programme_id)
    resp = await api.client.get(f"/api/u/{uid}")
    body = await resp.json()
    assert resp.status == 200 and body["badges"] == ["品鉴官"], body
    assert body["name"].endswith("**") and set(body) == {"id", "name", "badges", "title", "posts"}
    assert (await api.client.get(f"/api/u/{uuid.uuid4().int % 10**8 + 10**8}")).status == 404


async def test_dashboard_koc_figures_chart_and_csv(api: Api) -> None:
    farm = await make_farm(api)
    await pin(farm)
    programme_id = await _programme(api, farm)
    uid, token = await _member(api, farm, programme_id)
    order_id = await buy(farm, token)
    await pick_up(farm, token, order_id)
    await bought_and_picked_up(farm)  # a second picked-up order, without a 晒单
    status, body = await _post(api, token, order_id=order_id)
    assert status == 201, body
    _aid, assistant = await api.user("assistant")
    resp = await api.client.post(f"/api/ugc/posts/{body['id']}/approve", headers=api.auth(assistant))
    assert resp.status == 200
    board = await (await api.client.get("/api/dashboard", headers=api.auth(farm.host))).json()
    head = board["koc"]["headline"]
    assert (head["ugc_rate"], head["ugc_from_picked_up"], head["picked_up_orders"]) == (0.5, 1, 2)
    assert (head["koc_members"], head["koc_active"], head["koc_activity_rate"]) == (1, 1, 1.0)
    assert head["point_liabilities"] == await _balance(api, uid) == 20
    assert board["koc"]["ugc_by_batch"] == [{
        "key": farm.batch_code, "label": f"{farm.batch_code} · 老张合作农场", "posts": 1,
        "picked_up": 2, "samples": 0, "ugc_rate": 0.5}]
    for chart in ("ugc_rate_by_batch", "ugc_per_batch"):
        svg = await api.client.get(board["charts"][chart])
        assert svg.status == 200 and farm.batch_code in await svg.text()
    csv_text = (await (await api.client.get(board["csv"]["koc"], headers=api.auth(farm.host))).read()
                ).decode("utf-8-sig")
    assert "ugc_rate,0.5" in csv_text and f"{farm.batch_code}," in csv_text
    # Another host sees none of it but the platform-wide liabilities.
    _oid, other = await api.user("host")
    theirs = await (await api.client.get("/api/dashboard", headers=api.auth(other))).json()
    assert theirs["koc"]["ugc_by_batch"] == [] and theirs["koc"]["headline"]["koc_members"] == 0


@pytest.mark.slow
async def test_first_review_of_a_batch_and_a_helpful_question_earn_once(any_db_api: Api) -> None:
    api = any_db_api
    farm = await make_farm(api)
    await pin(farm)
    uid, token, first = await bought_and_picked_up(farm)
    second = await buy(farm, token)
    await pick_up(farm, token, second)
    for order_id in (first, second):
        resp = await api.client.post("/api/reviews", json={"order_id": order_id, "stars": 5},
                                     headers=api.auth(token))
        assert resp.status == 201, await resp.text()
    assert await _balance(api, uid) == 10  # the batch's first review only
    async with api.app[database_key].session() as db:
        question = await questions.ask(db, farm.session_id, uid, "邻居", "什么时候到货?")
    results = await asyncio.gather(*(
        api.client.post(f"/api/questions/{question.id}/helpful", headers=api.auth(farm.host))
        for _ in range(N)))
    bodies = [await r.json() for r in results]
    assert {r.status for r in results} == {200}
    assert sum(1 for b in bodies if b["awarded"]) == 1
    assert await _balance(api, uid) == 15


async def test_exit_rule_lapses_the_badge_and_frees_the_seat(api: Api) -> None:
    farm = await make_farm(api)
    programme_id = await _programme(api, farm, quota=1, exit_days=10)
    uid, _token = await _member(api, farm, programme_id)
    async with api.app[database_key].session() as db:
        assert await badge_for(db, uid, farm.host_id) == "品鉴官"
    _other, late = await api.user("viewer")
    status, waiting = await _apply(api, programme_id, late)
    assert status == 201, waiting
    resp = await api.client.post(f"/api/koc/applications/{waiting['id']}/select",
                                 headers=api.auth(farm.host))
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "quota_full"
    # Eleven days without a 晒单: the badge is gone at once, the seat when the host looks.
    await sql(api, "UPDATE koc_applications SET selected_at = :at WHERE user_id = :u",
              at=ago(days=11), u=uid)
    async with api.app[database_key].session() as db:
        assert await badge_for(db, uid, farm.host_id) is None
    listing = await (await api.client.get(f"/api/koc/programmes/{programme_id}/applications",
                                          headers=api.auth(farm.host))).json()
    assert {a["user_id"]: a["status"] for a in listing["items"]}[uid] == "lapsed"
    resp = await api.client.post(f"/api/koc/applications/{waiting['id']}/select",
                                 headers=api.auth(farm.host))
    assert resp.status == 200, await resp.text()


async def _clip(tmp_path: Path, seconds: int) -> bytes:
    out = tmp_path / f"clip{seconds}.mp4"
    await run_ffmpeg([ffmpeg_binary(), "-nostdin", "-v", "error", "-f", "lavfi", "-i",
                      f"testsrc=size=160x120:rate=10:duration={seconds}", "-pix_fmt", "yuv420p",
                      "-c:v", "libx264", "-preset", "ultrafast", "-movflags", "+faststart",
                      "-y", str(out)], timeout_s=60)
    return out.read_bytes()


async def test_a_short_video_is_probed_and_shown_with_the_post(api: Api, tmp_path: Path) -> None:
    farm = await make_farm(api)
    await pin(farm)
    _uid, token, order_id = await bought_and_picked_up(farm)
    headers = {**api.auth(token), "Content-Type": "video/mp4"}
    # Not a video at all, an MP4 header over garbage, and a clip that is too long: refused.
    resp = await api.client.post("/api/ugc/videos", data=JPEG, headers=headers)
    assert resp.status == 415 and (await resp.json())["error"]["code"] == "unsupported_upload_type"
    fake = b"\x00\x00\x00\x18ftypisom" + b"\x00" * 2000
    resp = await api.client.post("/api/ugc/videos", data=fake, headers=headers)
    assert resp.status == 415 and (await resp.json())["error"]["code"] == "invalid_video"
    resp = await api.client.post("/api/ugc/videos", data=await _clip(tmp_path, 61), headers=headers)
    assert resp.status == 415 and (await resp.json())["error"]["max_seconds"] == 60
    resp = await api.client.post("/api/ugc/videos", data=await _clip(tmp_path, 2), headers=headers)
    video = await resp.json()
    assert resp.status == 201 and video["content_type"] == "video/mp4", video
    assert (await api.client.get(video["url"])).status == 401  # private until approved
    photo = (await (await upload(api, token, JPEG, "ugc")).json())["id"]
    resp = await api.client.post("/api/ugc/posts", json={
        "order_id": order_id, "text": "看视频", "photos": [photo], "video_id": video["id"]},
        headers=api.auth(token))
    assert resp.status == 201, await resp.text()
    _aid, assistant = await api.user("assistant")
    await api.client.post(f"/api/ugc/posts/{(await resp.json())['id']}/approve",
                          headers=api.auth(assistant))
    archive = await (await api.client.get(f"/api/batches/{farm.batch_code}/ugc")).json()
    assert archive["items"][0]["video"] == video["url"]
    served = await api.client.get(video["url"])
    assert served.status == 200 and served.content_type == "video/mp4"


async def test_badge_rides_in_comment_and_question_author_info(api: Api) -> None:
    """Over real sockets: a member's comments and questions carry `badge` in the author info of
    her host's room; everyone else's author info stays exactly {id, name, role}."""
    room = await make_room(api)
    resp = await api.client.post("/api/koc/programmes", json={"title": "品鉴官", "quota": 2},
                                 headers=api.auth(room.host))
    programme_id = (await resp.json())["id"]
    applied = await (await api.client.post(f"/api/koc/programmes/{programme_id}/apply", json={},
                                           headers=api.auth(room.viewer))).json()
    resp = await api.client.post(f"/api/koc/applications/{applied['id']}/select",
                                 headers=api.auth(room.host))
    assert resp.status == 200
    _aid, assistant = await api.user("assistant")
    _oid, other = await api.user("viewer")
    live = {"session_id": room.session_id}
    member = await connect(room.url, "/live", {**live, "token": room.viewer})
    plain = await connect(room.url, "/live", {**live, "token": other})
    mod = await connect(room.url, "/moderation", {**live, "token": assistant})
    try:
        assert (await member.call("comment", {"text": "好甜"}))["ok"]
        assert (await plain.call("comment", {"text": "想买"}))["ok"]
        seen = await plain.wait(lambda: len(plain.comments()) >= 2 and plain.comments())
        users = {c["text"]: c["user"] for c in seen}
        assert users["好甜"] == {"id": room.viewer_id, "name": users["好甜"]["name"],
                                "role": "viewer", "badge": "品鉴官"}
        assert set(users["想买"]) == {"id", "name", "role"}
        asked = await member.call("question", {"text": "有大果吗"})
        held = await mod.wait(lambda: [q for q in mod.of("question") if q["id"] == asked["question_id"]])
        assert held[0]["user"]["badge"] == "品鉴官"
        assert (await mod.call("approve", {"question_id": asked["question_id"]}))["ok"]
        public = await plain.wait(lambda: [q for q in plain.of("question")
                                           if q.get("id") == asked["question_id"]])
        assert public[0]["user"]["badge"] == "品鉴官"
    finally:
        for socket in (member, plain, mod):
            await socket.close()


async def test_campaign_hashtag_and_reward(api: Api) -> None:
    farm = await make_farm(api)
    await pin(farm)
    uid, token, order_id = await bought_and_picked_up(farm)
    now = datetime.now(UTC)
    resp = await api.client.post("/api/ugc/campaigns", json={
        "title": "源牧日记", "hashtag": "#我的源牧日记#", "starts_at": (now - timedelta(days=1)).isoformat(),
        "ends_at": (now + timedelta(days=7)).isoformat(), "reward_points": 50,
        "reward_text": "送一盒鸡蛋"}, headers=api.auth(farm.host))
    assert resp.status == 201, await resp.text()
    campaign = await resp.json()
    assert campaign["hashtag"] == "#我的源牧日记#"
    resp = await api.client.post("/api/ugc/campaigns", json={
        "title": "旧的", "hashtag": "旧话题", "starts_at": (now - timedelta(days=9)).isoformat(),
        "ends_at": (now - timedelta(days=2)).isoformat()}, headers=api.auth(farm.host))
    ended = await resp.json()
    photo = (await (await upload(api, token, JPEG, "ugc")).json())["id"]
    resp = await api.client.post("/api/ugc/posts", json={
        "order_id": order_id, "text": "好吃", "photos": [photo], "campaign_id": ended["id"]},
        headers=api.auth(token))
    assert resp.status == 409 and (await resp.json())["error"]["reason"] == "campaign_closed"
    resp = await api.client.post("/api/ugc/posts", json={
        "order_id": order_id, "text": "好吃", "photos": [photo], "campaign_id": campaign["id"]},
        headers=api.auth(token))
    post = await resp.json()
    assert resp.status == 201 and post["text"] == "#我的源牧日记# 好吃", post
    _aid, assistant = await api.user("assistant")
    await api.client.post(f"/api/ugc/posts/{post['id']}/approve", headers=api.auth(assistant))
    assert await _balance(api, uid) == 50
    # Hidden after all: the points go back.
    resp = await api.client.post(f"/api/ugc/posts/{post['id']}/hide", headers=api.auth(assistant))
    assert resp.status == 200 and await _balance(api, uid) == 0
    assert (await (await api.client.get(f"/api/batches/{farm.batch_code}/ugc")).json())["items"] == []


async def test_a_community_programme_is_its_hosts_own(api: Api) -> None:
    farm = await make_farm(api)
    _oid, other = await api.user("host")
    resp = await api.client.post("/api/communities", json={"name": f"翠湖-{uuid.uuid4().hex[:6]}"},
                                 headers=api.auth(other))
    community = (await resp.json())["id"]
    resp = await api.client.post("/api/koc/programmes", json={
        "title": "翠湖品鉴官", "quota": 3, "community_id": community}, headers=api.auth(farm.host))
    assert resp.status == 403
    resp = await api.client.post("/api/koc/programmes", json={
        "title": "翠湖品鉴官", "quota": 3, "community_id": community}, headers=api.auth(other))
    assert resp.status == 201
    listed = await (await api.client.get(f"/api/koc/programmes?community_id={community}")).json()
    assert [p["title"] for p in listed["items"]] == ["翠湖品鉴官"]
