"""Dashboard figures equal hand-computed values on a seeded data set (see the table in each test)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from commerce import accounts, audience, catalog, live_sessions
from commerce.accounts import Principal, Role
from commerce.flash_sale.sales import Sale
from commerce.group_buys import GroupBuy
from commerce.orders import Order, OrderTransition
from server.keys import database_key, redis_key
from tests.conftest import Api
from trust.claims import Claim
from trust.nps import NpsResponse
from trust.trace import TraceLookupDaily, TraceLookupUser

NOW = datetime.now(UTC)
T0 = NOW - timedelta(days=10)
H = timedelta(hours=1)


async def seed(api: Api) -> dict[str, Any]:
    """Three sessions (S1, S2 at 甲农场; S3 at 乙农场), four buyers, two communities.

    Promised pickup (sale.pickup_by): A1 T0+2h, A2 T0+50h, B3 T0+99h. On time = ready (or
    delivered) by the promise; when the buyer collects does not matter.

    order  buyer sess comm status            ready → picked         on time  claim  nps
    o1     u1    S1   C1   completed         T0+1h → T0+5h          yes             10
    o2     u2    S1   C1   picked_up         T0+1h → T0+60h         yes      yes    6
    o3     u3    S1   C2   refunded          -                      (not counted)
    o4     u1    S2   C1   picked_up         T0+49h → T0+50h        yes             9
    o5     u4    S2   C2   ready_for_pickup  now−1h                 late
    o6     u2    S3   C2   ready_for_pickup  now−72h                late
    o7     u4    S3   -    delivered         T0+100h                late     yes    8
    o8     u3    S3   C2   cancelled (never counted)
    Group-buys: S1/C1 succeeded, S1/C2 failed, S3/C2 succeeded, S2/C1 open.
    Audience: S1 10 viewers / 3 interacting, S2 4 / 1 (SQL), S3 5 / 2 (Redis).
    Trace look-ups (signed in): (bA,u1), (bA,u3), (bB,u4); all look-ups: bA 5, bB 2.
    """
    users = [await api.user("viewer") for _ in range(4)]
    u1, u2, u3, u4 = (uid for uid, _ in users)
    host_id, _ = await api.user("host")
    host = Principal(host_id, "host", Role.HOST)
    async with api.app[database_key].session() as db:
        c1 = (await accounts.create_community(db, "阳光花园-dash", host_id)).id
        c2 = (await accounts.create_community(db, "翠湖小区-dash", host_id)).id
        s1 = await live_sessions.create_session(db, host, "S1", farm="甲农场")
        s2 = await live_sessions.create_session(db, host, "S2", farm="甲农场")
        s3 = await live_sessions.create_session(db, host, "S3", farm="乙农场")
        ba = await catalog.create_batch(db, host, "DASH-A", farm="甲农场")
        bb = await catalog.create_batch(db, host, "DASH-B", farm="乙农场")
        pa = await catalog.create_product(db, host, "枇杷", 1000, batch_id=ba.id)
        pb = await catalog.create_product(db, host, "橄榄油", 1000, batch_id=bb.id)
        sales = {}
        for name, session, product, promise in (("A1", s1, pa, 2), ("A2", s2, pa, 50),
                                                ("B3", s3, pb, 99)):
            sale = Sale(session_id=session.id, product_id=product.id, stock=100, price_fen=1000,
                        per_buyer_limit=5, starts_at=T0, pickup_by=T0 + promise * H,
                        created_by=host_id)
            db.add(sale)
            await db.flush()
            sales[name] = sale
        plan = [
            # name, user, session, sale, community, status, paid, ready, picked
            ("o1", u1, s1, "A1", c1, "completed", T0, T0 + H, T0 + 5 * H),
            ("o2", u2, s1, "A1", c1, "picked_up", T0 + 0.1 * H, T0 + H, T0 + 60 * H),
            ("o3", u3, s1, "A1", c2, "refunded", T0 + 0.2 * H, None, None),
            ("o4", u1, s2, "A2", c1, "picked_up", T0 + 48 * H, T0 + 49 * H, T0 + 50 * H),
            ("o5", u4, s2, "A2", c2, "ready_for_pickup", T0 + 48.5 * H, NOW - H, None),
            ("o6", u2, s3, "B3", c2, "ready_for_pickup", T0 + 96 * H, NOW - 72 * H, None),
            ("o7", u4, s3, "B3", None, "delivered", T0 + 97 * H, None, T0 + 100 * H),
            ("o8", u3, s3, "B3", c2, "cancelled", T0 + 98 * H, None, None),
        ]
        orders: dict[str, Order] = {}
        for rank, (name, user, session, sale, comm, status, paid, ready, picked) in enumerate(plan):
            order = Order(hold_id=f"dash-{name}", sale_id=sales[sale].id, session_id=session.id,
                          user_id=user, qty=1, unit_price_fen=1000, amount_fen=1000,
                          refunded_fen=1000 if status == "refunded" else 0, community_id=comm,
                          paid_rank=rank + 1, gift=False, payment_ref=f"ref-{name}", status=status,
                          pickup_code="123456", paid_at=paid)
            db.add(order)
            await db.flush()
            orders[name] = order
            db.add(OrderTransition(order_id=order.id, from_status="held", to_status="paid", at=paid))
            if ready is not None:
                db.add(OrderTransition(order_id=order.id, from_status="paid",
                                       to_status="ready_for_pickup", at=ready))
            if picked is not None:
                delivered = status == "delivered"
                db.add(OrderTransition(
                    order_id=order.id, from_status="paid" if delivered else "ready_for_pickup",
                    to_status="delivered" if delivered else "picked_up", at=picked))
        for sale, comm, status in (("A1", c1, "succeeded"), ("A1", c2, "failed"),
                                   ("B3", c2, "succeeded"), ("A2", c1, "open")):
            db.add(GroupBuy(sale_id=sales[sale].id, community_id=comm, threshold=2, unit="people",
                            deadline=T0 + 2 * H, group_price_fen=800, on_failure="refund",
                            status=status, created_by=host_id))
        for name, product, batch, session in (("o2", pa, ba, s1), ("o7", pb, bb, s3)):
            o = orders[name]
            db.add(Claim(order_id=o.id, buyer_id=o.user_id, product_id=product.id,
                         batch_id=batch.id, session_id=session.id, reason="spoiled", bad_qty=1,
                         status="pending", due_at=NOW, community_id=o.community_id))
        for name, score in (("o1", 10), ("o2", 6), ("o4", 9), ("o7", 8)):
            o = orders[name]
            db.add(NpsResponse(order_id=o.id, user_id=o.user_id, score=score,
                               session_id=o.session_id))
        for batch, user in ((ba, u1), (ba, u3), (bb, u4)):
            db.add(TraceLookupUser(batch_id=batch.id, user_id=user))
        db.add(TraceLookupDaily(batch_id=ba.id, day="2026-05-01", count=5))
        db.add(TraceLookupDaily(batch_id=bb.id, day="2026-05-01", count=2))
        db.add(audience.SessionAudience(session_id=s1.id, viewers=10, interacting=3))
        db.add(audience.SessionAudience(session_id=s2.id, viewers=4, interacting=1))
    redis: Redis = api.app[redis_key]
    for viewer in ("u:1", "u:2", "a:x", "a:y", "a:z"):
        await audience.note_viewer(redis, s3.id, viewer)
    for viewer in ("u:1", "a:x"):
        await audience.note_interaction(redis, s3.id, viewer)
    return {"s1": s1.id, "s2": s2.id, "s3": s3.id, "c1": c1, "c2": c2}


def r(x: float) -> float:
    return round(x, 4)


def by_key(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["key"]: row for row in body["rows"]}


async def _get(api: Api, by: str) -> dict[str, dict[str, Any]]:
    resp = await api.client.get(f"/api/dashboard?by={by}", headers=api.auth(api.admin_token))
    assert resp.status == 200, await resp.text()
    return by_key(await resp.json())


def check(row: dict[str, Any], expected: dict[str, float | None]) -> None:
    got = {k: row[k] for k in expected}
    assert got == expected, (row["key"], got, expected)


async def test_dashboard_by_session(any_db_api: Api) -> None:
    api = any_db_api
    ids = await seed(api)
    rows = await _get(api, "session")
    check(rows[str(ids["s1"])], {
        "live_interaction_rate": 0.3, "conversion_rate": 0.3, "group_buy_success_rate": 0.5,
        "repeat_purchase_rate": 0.0, "on_time_fulfilment_rate": 1.0, "claim_rate": 0.5,
        "return_rate": r(1 / 3), "nps": 0.0, "trace_lookup_rate": r(2 / 3)})
    assert rows[str(ids["s1"])]["counts"]["trace_lookups"] == 5
    check(rows[str(ids["s2"])], {
        "live_interaction_rate": 0.25, "conversion_rate": 0.5, "group_buy_success_rate": None,
        "repeat_purchase_rate": 0.5, "on_time_fulfilment_rate": 0.5, "claim_rate": 0.0,
        "return_rate": 0.0, "nps": 100.0, "trace_lookup_rate": 0.5})
    check(rows[str(ids["s3"])], {
        "live_interaction_rate": 0.4, "conversion_rate": 0.4, "group_buy_success_rate": 1.0,
        "repeat_purchase_rate": 1.0, "on_time_fulfilment_rate": 0.0, "claim_rate": 1.0,
        "return_rate": 0.0, "nps": 0.0, "trace_lookup_rate": 0.5})
    assert rows[str(ids["s3"])]["counts"]["orders"] == 2  # the cancelled o8 never counts


async def test_dashboard_by_farm_and_community(any_db_api: Api) -> None:
    api = any_db_api
    ids = await seed(api)
    farms = await _get(api, "farm")
    check(farms["甲农场"], {
        "live_interaction_rate": r(4 / 14), "conversion_rate": r(5 / 14),
        "group_buy_success_rate": 0.5, "repeat_purchase_rate": 0.25,
        "on_time_fulfilment_rate": 0.75, "claim_rate": r(1 / 3), "return_rate": 0.2,
        "nps": 33.3, "trace_lookup_rate": 0.5})
    check(farms["乙农场"], {
        "live_interaction_rate": 0.4, "conversion_rate": 0.4, "group_buy_success_rate": 1.0,
        "repeat_purchase_rate": 0.0, "on_time_fulfilment_rate": 0.0, "claim_rate": 1.0,
        "return_rate": 0.0, "nps": 0.0, "trace_lookup_rate": 0.5})
    comms = await _get(api, "community")
    check(comms[str(ids["c1"])], {
        "live_interaction_rate": None, "conversion_rate": None, "group_buy_success_rate": 1.0,
        "repeat_purchase_rate": 0.5, "on_time_fulfilment_rate": 1.0, "claim_rate": r(1 / 3),
        "return_rate": 0.0, "nps": 33.3, "trace_lookup_rate": 0.5})
    assert comms[str(ids["c1"])]["label"] == "阳光花园-dash"
    check(comms[str(ids["c2"])], {
        "group_buy_success_rate": 0.5, "repeat_purchase_rate": 0.0, "on_time_fulfilment_rate": 0.0,
        "claim_rate": None, "return_rate": r(1 / 3), "nps": None, "trace_lookup_rate": r(1 / 3)})
    check(comms[""], {
        "group_buy_success_rate": None, "repeat_purchase_rate": 0.0, "on_time_fulfilment_rate": 0.0,
        "claim_rate": 1.0, "return_rate": 0.0, "nps": 0.0, "trace_lookup_rate": 1.0})


async def test_csv_and_charts(api: Api) -> None:
    ids = await seed(api)
    admin = api.auth(api.admin_token)
    resp = await api.client.get("/api/dashboard.csv?by=farm", headers=admin)
    assert resp.status == 200 and resp.content_type == "text/csv"
    text = (await resp.read()).decode("utf-8-sig")
    table = list(csv.reader(io.StringIO(text)))
    header, lines = table[0], {line[0]: line for line in table[1:]}
    assert header[:3] == ["farm", "label", "gmv_fen"]
    assert float(lines["甲农场"][header.index("return_rate")]) == 0.2
    assert lines["甲农场"][header.index("orders")] == "5"
    for metric in ("conversion_rate", "nps"):
        chart = await api.client.get(f"/api/dashboard/charts/{metric}.svg?by=session", headers=admin)
        assert chart.status == 200 and chart.content_type == "image/svg+xml"
        svg = await chart.text()
        assert svg.startswith("<svg") and "<script" not in svg and svg.count("<rect") >= 4
    svg = await (await api.client.get("/api/dashboard/charts/conversion_rate.svg?by=session",
                                      headers=admin)).text()
    assert "30.0%" in svg and "50.0%" in svg
    assert (await api.client.get("/api/dashboard/charts/nope.svg", headers=admin)).status == 404
    # Signed chart URLs work in a plain <img> (no Authorization header), briefly, untampered.
    body = await (await api.client.get("/api/dashboard?by=farm", headers=admin)).json()
    signed = body["charts"]["return_rate"]
    img = await api.client.get(signed)
    assert img.status == 200 and "20.0%" in await img.text()
    assert (await api.client.get(signed.replace("by=farm", "by=session"))).status == 401
    assert (await api.client.get(signed[:-4] + "0000")).status == 401
    assert (await api.client.get("/api/dashboard/charts/nps.svg?by=farm")).status == 401
    assert (await api.client.get("/api/dashboard?by=planet", headers=admin)).status == 400
    _, viewer = await api.user("viewer")
    assert (await api.client.get("/api/dashboard", headers=api.auth(viewer))).status == 403
    assert (await api.client.get("/api/dashboard")).status == 401
    # A host sees only their own sessions.
    _, other_host = await api.user("host")
    mine = await (await api.client.get("/api/dashboard?by=session",
                                       headers=api.auth(other_host))).json()
    assert mine["rows"] == [] and str(ids["s1"]) not in {r["key"] for r in mine["rows"]}


# Cells a spreadsheet would run as formulas, as people could type them into a farm name or a
# session title (ASCII and full-width; after spaces; after TAB, CR and LF).
FORMULAS = ("=HYPERLINK(\"http://evil.example\",\"x\")", "+1+cmd|' /C calc'!A0", "-2+3",
            "@SUM(A1:A9)", "\t=1+1", "\r=1+1", "\n=1+1", "  =1+1", "＝1+1", "＋1", "－1", "＠A1")


async def test_csv_neutralises_every_formula_start(api: Api) -> None:
    _, host = await api.user("host")
    for text in FORMULAS:
        resp = await api.client.post("/api/sessions", json={"title": text}, headers=api.auth(host))
        assert resp.status == 201, await resp.text()
    resp = await api.client.get("/api/dashboard.csv?by=session", headers=api.auth(host))
    table = list(csv.reader(io.StringIO((await resp.read()).decode("utf-8-sig"))))
    labels = sorted(line[1] for line in table[1:])
    assert labels == sorted("'" + text for text in FORMULAS), labels


def test_spreadsheet_safe_keeps_numbers_and_plain_text() -> None:
    from trust.dashboard import spreadsheet_safe

    for kept in ("-33.3", "0.25", "12", "1e-05", "阳光花园", "a=b", "", "3号楼"):
        assert spreadsheet_safe(kept) == kept
    for text in FORMULAS:
        assert spreadsheet_safe(text) == "'" + text
