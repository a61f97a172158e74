"""Referrals and commission: attribution rules, the commission ledger's moves, payouts, and the
rules that must hold under twenty identical requests at once (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
import warnings
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from commerce import commissions, referrals
from commerce.commission_payouts import CommissionPayout
from commerce.commissions import Commission
from commerce.orders import Order
from commerce.referrals import ReferralAttribution
from commerce.refunds import Refund
from server.commerce_keys import checkout_key
from server.keys import database_key
from tests.commerce_support import Shop, hold, make_shop, pay
from tests.conftest import Api
from tests.trust_support import JPEG, make_farm, upload
from tests.trust_support import buy as trust_buy
from tests.trust_support import pick_up as trust_pick_up
from trust import points
from trust.referral_points import REFERRAL_POINTS


async def ok(resp: Any, *statuses: int) -> dict[str, Any]:
    assert resp.status in (statuses or (200, 201)), f"{resp.method} {resp.url}: {await resp.text()}"
    return dict(await resp.json())


async def code_of(api: Api, token: str) -> str:
    return str((await ok(await api.client.get("/api/referrals/me", headers=api.auth(token))))["code"])


async def arrive(api: Api, token: str, code: str) -> str:
    resp = await api.client.post("/api/referrals/arrivals", json={"code": code},
                                 headers=api.auth(token))
    return str((await ok(resp))["status"])


async def set_rate(api: Api, shop: Shop, kind: str, rate_bp: int, scope: str = "session",
                   target: int | None = None) -> None:
    await ok(await api.client.put("/api/commission-rates", json={
        "scope": scope, "target_id": target or shop.session_id, "kind": kind, "rate_bp": rate_bp},
        headers=api.auth(shop.host_token)))


async def buy(api: Api, sale_id: int, token: str, qty: int = 1) -> int:
    status, held = await hold(api, sale_id, token, qty)
    assert status == 201, held
    status, paid = await pay(api, held["hold_id"], token)
    assert status == 200, paid
    return int(paid["order_id"])


async def pick_up(api: Api, shop: Shop, order_id: int, buyer_token: str) -> None:
    order = await ok(await api.client.get(f"/api/orders/{order_id}", headers=api.auth(buyer_token)))
    host = api.auth(shop.host_token)
    await ok(await api.client.post(f"/api/orders/{order_id}/ready", headers=host))
    await ok(await api.client.post(f"/api/orders/{order_id}/picked-up",
                                   json={"pickup_code": order["pickup_code"]}, headers=host))


async def rows_of(api: Api, order_id: int) -> list[Commission]:
    async with api.app[database_key].session() as db:
        return await commissions.of_order(db, order_id)


async def test_referred_first_order_earns_pending_then_due_then_paid(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    sale = (await shop.sale(price_fen=2000, per_buyer_limit=5))["id"]
    await set_rate(api, shop, "referral", 1000)  # 10%
    referrer_id, referrer = await api.user("viewer")
    _buyer_id, buyer = await api.user("viewer")
    code = await code_of(api, referrer)
    assert await code_of(api, referrer) == code and code != str(referrer_id) and len(code) == 12
    assert await arrive(api, buyer, code) == "recorded"
    assert await arrive(api, buyer, code) == "already"

    first = await buy(api, sale, buyer)
    [row] = await rows_of(api, first)
    assert (row.status, row.amount_fen, row.beneficiary_id, row.role) == (
        "pending", 200, referrer_id, "referrer")
    second = await buy(api, sale, buyer)  # not her first order: no commission
    assert await rows_of(api, second) == []

    mine = await ok(await api.client.get("/api/referrals/me", headers=api.auth(referrer)))
    assert mine["totals"]["pending_fen"] == 200 and mine["buyers"][0]["bought"] is True
    assert "order_id" not in mine["commissions"][0]
    assert mine["links"]["home"].endswith(f"/?ref={code}")

    await pick_up(api, shop, first, buyer)
    [row] = await rows_of(api, first)
    assert row.status == "due" and row.due_at is not None

    report = await ok(await api.client.get("/api/commissions/report", headers=api.auth(shop.host_token)))
    [line] = report["items"]
    assert (line["beneficiary_id"], line["due_fen"], line["pending_fen"]) == (referrer_id, 200, 0)

    resp = await api.client.post("/api/commissions/payouts", json={
        "beneficiary_id": referrer_id, "period": "2026-12"}, headers=api.auth(shop.host_token))
    payout = await ok(resp, 201)
    assert (payout["amount_fen"], payout["status"], payout["method"]) == (200, "paid", "transfer")
    [row] = await rows_of(api, first)
    assert (row.status, row.paid_fen) == ("paid", 200)
    provider = api.app[checkout_key].provider
    assert await provider.transferred_total(f"user:{referrer_id}") == 200  # type: ignore[attr-defined]
    mine = await ok(await api.client.get("/api/referrals/me", headers=api.auth(referrer)))
    assert (mine["totals"]["paid_fen"], mine["totals"]["due_fen"]) == (200, 0)


async def test_refund_reverses_and_partial_refund_takes_its_share(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    sale = (await shop.sale(price_fen=1000))["id"]
    await set_rate(api, shop, "referral", 3000)
    _rid, referrer = await api.user("viewer")
    code = await code_of(api, referrer)
    (_a, buyer_a), (_b, buyer_b) = await api.user("viewer"), await api.user("viewer")
    for token in (buyer_a, buyer_b):
        assert await arrive(api, token, code) == "recorded"
    refunded = await buy(api, sale, buyer_a)
    await ok(await api.client.post(f"/api/orders/{refunded}/refund", json={},
                                   headers=api.auth(shop.host_token)))
    [row] = await rows_of(api, refunded)
    assert (row.status, row.reversed_fen) == ("reversed", 300)

    claimed = await buy(api, sale, buyer_b, qty=2)
    await pick_up(api, shop, claimed, buyer_b)
    # Refunded twice over (a replayed event): reversed once, amount unchanged.
    async with api.app[database_key].session() as db:
        order = await db.get(Order, refunded)
        assert order is not None
        await commissions.sync(db, order)
    [row] = await rows_of(api, refunded)
    assert (row.status, row.reversed_fen, row.amount_fen) == ("reversed", 300, 300)
    [row] = await rows_of(api, claimed)
    assert (row.status, row.reversed_fen) == ("due", 0)


async def test_claim_refund_after_pickup_takes_its_share(api: Api) -> None:
    farm = await make_farm(api, price_fen=3000)
    resp = await api.client.put(f"/api/products/{farm.product_id}/claim-policy", json={
        "full_refund_without_return": True, "multiplier": 1, "max_days_after_pickup": 2,
        "auto_approve_max_fen": 100_000, "require_photo": True, "response_hours": 2},
        headers=api.auth(farm.host))
    assert resp.status == 200, await resp.text()
    await ok(await api.client.put("/api/commission-rates", json={
        "scope": "session", "target_id": farm.session_id, "kind": "referral", "rate_bp": 1000},
        headers=api.auth(farm.host)))
    _rid, referrer = await api.user("viewer")
    _bid, buyer = await api.user("viewer")
    await arrive(api, buyer, await code_of(api, referrer))
    order_id = await trust_buy(farm, buyer, qty=4)
    await trust_pick_up(farm, buyer, order_id)
    [row] = await rows_of(api, order_id)
    assert (row.status, row.amount_fen) == ("due", 1200)
    photo = (await (await upload(api, buyer, JPEG, "claim")).json())["id"]
    claim = await ok(await api.client.post("/api/claims", json={
        "order_id": order_id, "reason": "spoiled", "description": "一个坏果", "photos": [photo],
        "bad_qty": 1}, headers=api.auth(buyer)), 201)
    assert claim["status"] == "approved" and claim["refund_fen"] == 3000
    # A quarter of the price came back: the commission keeps three quarters.
    [row] = await rows_of(api, order_id)
    assert (row.status, row.reversed_fen, row.net_fen) == ("due", 300, 900)


async def test_a_referral_that_buys_earns_points_once_and_its_refund_takes_them_back(api: Api) -> None:
    farm = await make_farm(api, price_fen=3000)
    await ok(await api.client.put(f"/api/products/{farm.product_id}/claim-policy", json={
        "full_refund_without_return": True, "multiplier": 1, "max_days_after_pickup": 2,
        "auto_approve_max_fen": 100_000, "require_photo": False, "response_hours": 2},
        headers=api.auth(farm.host)))
    referrer_id, referrer = await api.user("viewer")
    _bid, buyer = await api.user("viewer")
    await arrive(api, buyer, await code_of(api, referrer))
    order_id = await trust_buy(farm, buyer, qty=1)
    assert await points_of(api, referrer_id) == 0  # paid is not enough: she must pick it up
    await trust_pick_up(farm, buyer, order_id)
    assert await points_of(api, referrer_id) == REFERRAL_POINTS
    # The pickup seen again (a replayed event, the catch-up) awards nothing more.
    async with api.app[database_key].session() as db:
        assert await referrals.note_pickup(db, order_id) is False
    assert await points_of(api, referrer_id) == REFERRAL_POINTS
    claim = await ok(await api.client.post("/api/claims", json={
        "order_id": order_id, "reason": "spoiled", "description": "坏了"},
        headers=api.auth(buyer)), 201)
    assert claim["status"] == "approved"
    assert await points_of(api, referrer_id) == 0


async def points_of(api: Api, user_id: int) -> int:
    async with api.app[database_key].session() as db:
        return (await points.balances(db, [user_id])).get(user_id, 0)


async def test_self_referral_and_old_buyers_are_refused(api: Api) -> None:
    shop = await make_shop(api)
    sale = (await shop.sale())["id"]
    await set_rate(api, shop, "referral", 1000)
    _rid, referrer = await api.user("viewer")
    code = await code_of(api, referrer)
    assert await arrive(api, referrer, code) == "self"
    _old, old = await api.user("viewer")
    await buy(api, sale, old)
    assert await arrive(api, old, code) == "not_new"
    resp = await api.client.post("/api/referrals/arrivals", json={"code": "no such!"},
                                 headers=api.auth(old))
    assert resp.status == 400
    assert await arrive(api, old, "A" * 12) == "unknown_code"
    async with api.app[database_key].session() as db:
        assert await db.scalar(select(func.count(ReferralAttribution.id))) == 0


async def test_signup_and_invite_accept_with_ref_keep_the_arrival(api: Api) -> None:
    shop = await make_shop(api)
    _rid, referrer = await api.user("viewer")
    code = await code_of(api, referrer)
    name = f"小区{uuid.uuid4().hex[:6]}"
    community = await ok(await api.client.post("/api/communities", json={"name": name},
                                               headers=api.auth(shop.host_token)))
    invite = await ok(await api.client.post(f"/api/communities/{community['id']}/invites", json={},
                                            headers=api.auth(shop.host_token)))
    made = await ok(await api.client.post("/api/signup", json={
        "username": f"new_{uuid.uuid4().hex[:8]}", "password": "a-long-Passw0rd-for-tests",
        "invite_code": invite["code"], "ref": code}), 201)
    # A neighbour with an account already follows the link and accepts the invite.
    member_id, member = await api.user("viewer")
    resp = await api.client.post(f"/api/invites/{invite['code']}/accept?ref={code}",
                                 headers=api.auth(member))
    assert resp.status == 200, await resp.text()
    async with api.app[database_key].session() as db:
        arrivals = {row.buyer_id: row.via for row in (await db.execute(
            select(referrals.ReferralArrival))).scalars()}
    assert arrivals == {made["user"]["id"]: "signup", member_id: "invite"}


async def test_leader_earns_on_community_orders_when_no_referrer(api: Api) -> None:
    shop = await make_shop(api)
    leader_id, _leader = await api.user("viewer")
    buyer_id, buyer = await api.user("viewer")
    host = api.auth(shop.host_token)
    name = f"花园{uuid.uuid4().hex[:6]}"
    community = (await ok(await api.client.post("/api/communities", json={"name": name},
                                                headers=host)))["id"]
    await ok(await api.client.post(f"/api/communities/{community}/members", json={"user_id": buyer_id},
                                   headers=host))
    await ok(await api.client.put(f"/api/communities/{community}/leaders/{leader_id}", headers=host))
    await ok(await api.client.post(f"/api/communities/{community}/pickup-points", json={"name": "门卫室"},
                                   headers=host), 201)
    sale = (await shop.sale(price_fen=1000, community_ids=[community], community_price_fen=900))["id"]
    await set_rate(api, shop, "community", 500, scope="product", target=shop.product_id)
    order = await buy(api, sale, buyer)
    [row] = await rows_of(api, order)
    assert (row.beneficiary_id, row.role, row.amount_fen) == (leader_id, "leader", 45)


async def test_rates_are_bounded_and_the_hosts_own(api: Api) -> None:
    shop = await make_shop(api)
    _other, other = await api.user("host")
    body = {"scope": "session", "target_id": shop.session_id, "kind": "referral", "rate_bp": 3001}
    resp = await api.client.put("/api/commission-rates", json=body, headers=api.auth(shop.host_token))
    assert resp.status == 400
    resp = await api.client.put("/api/commission-rates", json={**body, "rate_bp": 3000},
                                headers=api.auth(other))
    assert resp.status == 403
    await set_rate(api, shop, "referral", 3000)
    await set_rate(api, shop, "referral", 0)
    rates = await ok(await api.client.get("/api/commission-rates", headers=api.auth(shop.host_token)))
    assert [r["rate_bp"] for r in rates["items"]] == [0]


async def test_manual_payout_needs_a_note_and_csv_is_safe(api: Api) -> None:
    shop = await make_shop(api)
    sale = (await shop.sale(price_fen=1000))["id"]
    await set_rate(api, shop, "referral", 1000)
    referrer_id, referrer = await api.user("viewer", username=f"-cmd{uuid.uuid4().hex[:6]}")
    _bid, buyer = await api.user("viewer")
    await arrive(api, buyer, await code_of(api, referrer))
    order = await buy(api, sale, buyer)
    await pick_up(api, shop, order, buyer)
    host = api.auth(shop.host_token)
    body = {"beneficiary_id": referrer_id, "period": "2026-12-03", "method": "manual"}
    assert (await api.client.post("/api/commissions/payouts", json=body, headers=host)).status == 400
    text = await (await api.client.get("/api/commissions/report.csv", headers=host)).text()
    lines = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert lines[1][1].startswith("'-cmd")
    payout = await ok(await api.client.post("/api/commissions/payouts",
                                            json={**body, "note": "现金 cash"}, headers=host), 201)
    assert (payout["status"], payout["amount_fen"], payout["transfer_key"]) == ("paid", 100, None)
    again = await api.client.post("/api/commissions/payouts", json={**body, "period": "2026-12-04",
                                                                     "note": "x"}, headers=host)
    assert again.status == 409 and (await again.json())["error"]["code"] == "nothing_due"


# --- twenty at once --------------------------------------------------------------------------

@pytest.mark.slow
async def test_twenty_first_orders_make_one_attribution(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    sale = (await shop.sale(per_buyer_limit=20, stock=100))["id"]
    await set_rate(api, shop, "referral", 1000)
    _rid, referrer = await api.user("viewer")
    buyer_id, buyer = await api.user("viewer")
    await arrive(api, buyer, await code_of(api, referrer))
    holds = [await hold(api, sale, buyer) for _ in range(20)]
    paid = await asyncio.gather(*(pay(api, h["hold_id"], buyer) for _s, h in holds))
    assert all(status == 200 for status, _ in paid), paid
    async with api.app[database_key].session() as db:
        attributions = list((await db.execute(select(ReferralAttribution).where(
            ReferralAttribution.buyer_id == buyer_id))).scalars())
        rows = await db.scalar(select(func.count(Commission.id)))
    assert len(attributions) == 1 and rows == 1


@pytest.mark.slow
async def test_twenty_attributions_and_moves_of_one_order_count_once(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    sale = (await shop.sale())["id"]
    await set_rate(api, shop, "referral", 1000)
    _rid, referrer = await api.user("viewer")
    _bid, buyer = await api.user("viewer")
    await arrive(api, buyer, await code_of(api, referrer))
    order_id = await buy(api, sale, buyer)
    database = api.app[database_key]
    awarded: list[int] = []

    async def count_award(_db: Any, row: ReferralAttribution) -> None:
        awarded.append(row.order_id)

    async def replay(move: str) -> None:
        async with database.session() as db:
            order = await db.get(Order, order_id)
            assert order is not None
            if move == "paid":
                await referrals.attribute(db, order)
                await commissions.on_paid(db, order)
            else:
                await commissions.sync(db, order)

    await asyncio.gather(*(replay("paid") for _ in range(20)))
    referrals.on_referred_pickup(count_award)
    try:
        await pick_up(api, shop, order_id, buyer)
        await asyncio.gather(*(replay("sync") for _ in range(20)))
    finally:
        referrals.referred_pickup_hooks.remove(count_award)
    async with database.session() as db:
        assert await db.scalar(select(func.count(ReferralAttribution.id))) == 1
    [row] = await rows_of(api, order_id)
    assert row.status == "due" and awarded == [order_id]


@pytest.mark.slow
async def test_twenty_payout_requests_pay_once(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    sale = (await shop.sale(price_fen=1000))["id"]
    await set_rate(api, shop, "referral", 2000)
    referrer_id, referrer = await api.user("viewer")
    code = await code_of(api, referrer)
    for _ in range(3):
        _bid, buyer = await api.user("viewer")
        await arrive(api, buyer, code)
        await pick_up(api, shop, await buy(api, sale, buyer), buyer)
    body = {"beneficiary_id": referrer_id, "period": "2026-11"}
    responses = await asyncio.gather(*(api.client.post(
        "/api/commissions/payouts", json=body, headers=api.auth(shop.host_token)) for _ in range(20)))
    statuses = sorted(r.status for r in responses)
    assert statuses == [200] * 19 + [201], statuses
    ids = {(await r.json())["id"] for r in responses}
    assert len(ids) == 1
    async with api.app[database_key].session() as db:
        transfers = list((await db.execute(select(Refund).where(Refund.key.like("commission:%"))))
                         .scalars())
        payouts = await db.scalar(select(func.count(CommissionPayout.id)))
    assert len(transfers) == 1 and transfers[0].amount_fen == 600 and payouts == 1
    provider = api.app[checkout_key].provider
    assert await provider.transferred_total(f"user:{referrer_id}") == 600  # type: ignore[attr-defined]


async def test_share_card_carries_the_signed_in_sharers_code(api: Api) -> None:
    shop = await make_shop(api)
    _uid, sharer = await api.user("viewer")
    code = await code_of(api, sharer)
    anonymous = await ok(await api.client.get(f"/api/sessions/{shop.session_id}/share"))
    assert anonymous["ref"] is None and "?ref=" not in anonymous["url"]
    mine = await ok(await api.client.get(f"/api/sessions/{shop.session_id}/share?page=preview",
                                         headers=api.auth(sharer)))
    assert mine["url"].endswith(f"/preview/{shop.session_id}?ref={code}")
    qr = await api.client.get(mine["qr_svg"])
    assert qr.status == 200 and qr.headers["X-Share-Url"] == mine["url"]
    forged = await api.client.get(f"/api/sessions/{shop.session_id}/qr.svg?ref=<script>")
    assert "?ref=" not in forged.headers["X-Share-Url"]


async def test_dashboard_shows_referral_share_and_commission(api: Api) -> None:
    shop = await make_shop(api)
    sale = (await shop.sale(price_fen=1000))["id"]
    await set_rate(api, shop, "referral", 1000)
    _rid, referrer = await api.user("viewer")
    code = await code_of(api, referrer)
    (_a, referred), (_b, walk_in) = await api.user("viewer"), await api.user("viewer")
    await arrive(api, referred, code)
    order = await buy(api, sale, referred)
    await buy(api, sale, walk_in)
    await pick_up(api, shop, order, referred)
    board = await ok(await api.client.get("/api/dashboard", headers=api.auth(shop.host_token)))
    totals = board["referral_totals"]
    assert (totals["new_buyers"], totals["referred_buyers"], totals["referral_share"]) == (2, 1, 0.5)
    assert (totals["commission_due_fen"], totals["commission_pending_fen"]) == (100, 0)
    assert {"referral_share", "commission"} <= set(board["charts"]) and "commission" in board["csv"]
    text = await (await api.client.get(board["csv"]["commission"], headers=api.auth(shop.host_token))).text()
    assert "due,1,100" in text.replace("\r", "")
    chart = await api.client.get(board["charts"]["referral_share"])
    assert chart.status == 200 and "50.0%" in await chart.text()
    # Another host's figures are his own sessions': none of these.
    _other, other = await api.user("host")
    theirs = await ok(await api.client.get("/api/dashboard", headers=api.auth(other)))
    assert theirs["referral_totals"]["new_buyers"] == 0


async def test_a_free_sample_first_does_not_spend_the_attribution(api: Api) -> None:
    shop = await make_shop(api)
    sale = (await shop.sale(price_fen=1000))["id"]
    await set_rate(api, shop, "referral", 1000)
    _rid, referrer = await api.user("viewer")
    buyer_id, buyer = await api.user("viewer")
    assert await arrive(api, buyer, await code_of(api, referrer)) == "recorded"
    # A zero-price order written first, as a trial sample is: no purchase.
    async with api.app[database_key].session() as db:
        db.add(Order(hold_id=f"sample-{uuid.uuid4().hex[:12]}", sale_id=sale,
                     session_id=shop.session_id, user_id=buyer_id, qty=1, unit_price_fen=0,
                     amount_fen=0, paid_rank=0, payment_ref="sample", status="paid",
                     paid_at=datetime.now(UTC)))
    assert await arrive(api, buyer, await code_of(api, referrer)) == "already"
    order = await buy(api, sale, buyer)
    [row] = await rows_of(api, order)
    assert (row.status, row.amount_fen) == ("pending", 100)


OUR_TABLES = {"referral_codes", "referral_arrivals", "referral_attributions", "commission_rates",
              "commission_payouts", "commissions"}


def _alembic(connection: Any, action: str, target: str) -> None:
    from alembic import command
    from alembic.config import Config

    from server.database import MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    getattr(command, action)(cfg, target)


def _drift(connection: Any) -> list[Any]:
    """What the models declare for our tables that the migrated database lacks (or v.v.)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from commerce.base import Base

    context = MigrationContext.configure(connection, opts={"compare_type": True})
    with warnings.catch_warnings():
        # Older tables reference each other in a cycle; sorting them is none of this test's.
        warnings.filterwarnings("ignore", message="Cannot correctly sort tables")
        diffs = compare_metadata(context, Base.metadata)

    def table_of(diff: Any) -> str:
        op = diff[0] if isinstance(diff, list) else diff  # modify_* come as a list
        kind, target = op[0], op[1]
        if kind.endswith("_table"):
            return str(target.name)
        if kind.endswith(("_index", "_constraint")):
            return str(target.table.name)
        if kind.endswith("_fk"):
            return str(target.parent.name)
        return str(op[2])  # (kind, schema, table, ...) for columns

    return [d for d in diffs if table_of(d) in OUR_TABLES]


async def test_the_referral_migration_matches_the_models_and_goes_both_ways(any_db_api: Api) -> None:
    from sqlalchemy import inspect

    engine = any_db_api.app[database_key].engine

    def tables(connection: Any) -> set[str]:
        return set(inspect(connection).get_table_names())

    async with engine.begin() as conn:
        assert await conn.run_sync(tables) >= OUR_TABLES
        assert await conn.run_sync(_drift) == []
        await conn.run_sync(_alembic, "downgrade", "0415")
        assert not OUR_TABLES & await conn.run_sync(tables)
        await conn.run_sync(_alembic, "upgrade", "heads")
        assert await conn.run_sync(tables) >= OUR_TABLES
