"""WeChat Pay and Alipay configured at once, in one app, against both local provider servers
(tests/wechatpay_server.py, tests/alipay_server.py) on SQLite and PostgreSQL: the buyer chooses,
each payment is recorded under the provider that took it, and every refund and compensation goes
back through that provider only, once however many requests race; reconciliation runs per
provider and reads WeChat's transfer records; a compensation no account can receive waits
(待领取) until the buyer links WeChat."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from commerce import refunds
from commerce.identities import WechatIdentity
from commerce.orders import Order
from commerce.payment_records import Payment
from commerce.refunds import Refund
from infra.settings import Settings
from payments.wechatpay import refund_no, trade_no
from server.cli_payments import reconcile_payments
from server.commerce_keys import checkout_key
from server.keys import database_key
from tests.alipay_server import AlipayGateway, alipay_gateway
from tests.conftest import Api, AppFactory
from tests.test_alipay import cashier, today, with_alipay
from tests.test_money_concurrency import POLICY, N, _photo
from tests.test_wechat_login import consent, finish, with_wechat
from tests.test_wechatpay import PHONE, WECHAT, with_wechatpay
from tests.trust_support import Farm, make_farm, pick_up
from tests.wechat_protocol import Person, WechatProtocolServer, wechat_server
from tests.wechatpay_server import APPID, WechatPayServer, wechatpay_server

# Two provider servers, a farm, claims and N-at-once requests per test: out of the fast lane.
pytestmark = pytest.mark.slow
PRICE = 3000


@pytest.fixture
async def wx() -> AsyncIterator[WechatPayServer]:
    async with wechatpay_server() as server:
        yield server


@pytest.fixture
async def gateway() -> AsyncIterator[AlipayGateway]:
    async with alipay_gateway() as server:
        yield server


@pytest.fixture
async def wechat() -> AsyncIterator[WechatProtocolServer]:
    async with wechat_server() as server:
        yield server


@pytest.fixture
async def both(make_api: AppFactory, any_db_settings: Settings, wx: WechatPayServer,
               gateway: AlipayGateway, wechat: WechatProtocolServer, tmp_path: Path) -> Api:
    """Both providers, and WeChat sign-in under the same app id (a buyer may link WeChat)."""
    api = await make_api(with_wechat(with_alipay(with_wechatpay(any_db_settings, wx, tmp_path),
                                                 gateway, tmp_path), wechat))
    wx.route_to = str(api.client.make_url("")).rstrip("/")
    gateway.deliver_to = str(api.client.make_url("/"))
    assert api.app[checkout_key].payments.names == ("wechatpay", "alipay")
    return api


async def farm(api: Api) -> Farm:
    """A host's sale of a product with a 坏一赔十 claim policy (auto-approved)."""
    found = await make_farm(api, price_fen=PRICE)
    resp = await api.client.put(f"/api/products/{found.product_id}/claim-policy", json=POLICY,
                                headers=api.auth(found.host))
    assert resp.status == 200, await resp.text()
    return found


async def buy_with(api: Api, where: Farm, token: str, provider: str,
                   wx: WechatPayServer) -> Order:
    """The buyer holds one unit, chooses `provider` on the pay sheet and pays at its cashier."""
    resp = await api.client.post(f"/api/sales/{where.sale_id}/holds", json={"qty": 1},
                                 headers=api.auth(token))
    assert resp.status == 201, await resp.text()
    hold_id = (await resp.json())["hold_id"]
    resp = await api.client.post(f"/api/holds/{hold_id}/pay", json={"provider": provider},
                                 headers={**api.auth(token), "User-Agent": PHONE})
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert answer["status"] == "pending" and answer["provider"] == provider
    if provider == "wechatpay":
        await wx.pay(trade_no(hold_id))
    else:
        await cashier(answer["redirect_url"])
    async with api.app[database_key].session() as db:
        (order,) = (await db.execute(select(Order).where(Order.hold_id == hold_id))).scalars()
    assert order.status == "paid"
    return order


async def rows_of(api: Api, order_id: int) -> list[Refund]:
    async with api.app[database_key].session() as db:
        return await refunds.refunds_of_order(db, order_id)


async def claim(api: Api, token: str, order_id: int) -> dict[str, Any]:
    resp = await api.client.post("/api/claims", json={
        "order_id": order_id, "reason": "spoiled", "photos": [await _photo(api, token)]},
        headers=api.auth(token))
    assert resp.status == 201, await resp.text()
    filed = await resp.json()
    # As the buyer's order page reads it: with the ledger state of its money.
    resp = await api.client.get(f"/api/claims/{filed['id']}", headers=api.auth(token))
    found = dict(await resp.json())
    assert found["status"] == "approved", found
    return found


async def test_the_buyer_chooses_and_each_refund_lands_on_its_own_provider_once(
        both: Api, wx: WechatPayServer, gateway: AlipayGateway) -> None:
    api = both
    _u, token = await api.user("viewer")
    # Inside WeChat, WeChat Pay comes first; in another phone browser Alipay does; both offered.
    for agent, first in ((WECHAT, "wechatpay"), (PHONE, "alipay")):
        resp = await api.client.get("/api/payments/methods",
                                    headers={**api.auth(token), "User-Agent": agent})
        items = (await resp.json())["items"]
        other = ({"wechatpay", "alipay"} - {first}).pop()
        assert [(m["name"], m["preferred"]) for m in items] == [(first, True), (other, False)]
    where = await farm(api)
    _a, anna = await api.user("viewer")
    _b, bo = await api.user("viewer")
    by_wechat = await buy_with(api, where, anna, "wechatpay", wx)
    by_alipay = await buy_with(api, where, bo, "alipay", wx)
    async with api.app[database_key].session() as db:
        taken = {(p.provider, p.provider_ref) for p in (await db.execute(select(Payment))).scalars()}
    assert taken == {("wechatpay", by_wechat.payment_ref), ("alipay", by_alipay.payment_ref)}
    # A provider nobody configured is refused.
    resp = await api.client.post(f"/api/sales/{where.sale_id}/holds", json={"qty": 1},
                                 headers=api.auth(anna))
    hold_id = (await resp.json())["hold_id"]
    resp = await api.client.post(f"/api/holds/{hold_id}/pay", json={"provider": "paypal"},
                                 headers=api.auth(anna))
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid_input"

    # N refunds of each order at once, all in flight together.
    _s, assistant = await api.user("assistant")

    async def refund(order_id: int) -> int:
        resp = await api.client.post(f"/api/orders/{order_id}/refund", json={"reason": "缺货"},
                                     headers=api.auth(assistant))
        return resp.status

    statuses = await asyncio.gather(*(refund(o.id) for o in (by_wechat, by_alipay)
                                      for _ in range(N)))
    assert sorted(statuses).count(200) == 2 and set(statuses) <= {200, 409}, statuses
    # WeChat Pay returned the WeChat order's money once and nothing of the Alipay order's.
    assert list(wx.refunds) == [refund_no(f"refund:order:{by_wechat.id}:refunded")]
    assert wx.trades[trade_no(by_wechat.hold_id)].refunded == PRICE
    # Alipay returned the Alipay order's once and nothing of the WeChat order's.
    alipay_key = f"{by_alipay.payment_ref}/refund:order:{by_alipay.id}:refunded"
    assert list(gateway.refunds) == [alipay_key]
    assert gateway.refunds[alipay_key]["refund_amount"] == "30.00"
    for order, provider in ((by_wechat, "wechatpay"), (by_alipay, "alipay")):
        (row,) = await rows_of(api, order.id)
        assert (row.provider, row.status, row.amount_fen) == (provider, "done", PRICE)
    # Reconciled per provider: each bill agrees with its own ledger lines.
    assert await reconcile_payments(api.app, today(), None) == 0
    resp = await api.client.get("/api/payments/reconciliations", headers=api.auth(api.admin_token))
    runs = (await resp.json())["items"]
    assert sorted((r["provider"], r["ledger_lines"], r["issue_count"]) for r in runs) == [
        ("alipay", 2, 0), ("wechatpay", 2, 0)]


async def test_compensation_goes_through_the_provider_that_took_the_money_and_is_reconciled(
        both: Api, wx: WechatPayServer, gateway: AlipayGateway) -> None:
    api = both
    where = await farm(api)
    _a, anna = await api.user("viewer")
    _b, bo = await api.user("viewer")
    by_wechat = await buy_with(api, where, anna, "wechatpay", wx)
    by_alipay = await buy_with(api, where, bo, "alipay", wx)
    for order, token in ((by_wechat, anna), (by_alipay, bo)):
        await pick_up(where, token, order.id)
    wechat_claim = await claim(api, anna, by_wechat.id)
    alipay_claim = await claim(api, bo, by_alipay.id)
    owed = PRICE * POLICY["multiplier"] - PRICE  # type: ignore[operator]
    # Anna paid by WeChat in her phone's browser (no WeChat sign-in): the openid that paid.
    (batch,) = wx.batches.values()
    assert (batch["openid"], batch["total_amount"]) == ("o_h5_buyer", owed)
    (sent,) = gateway.transfers.values()
    trade = next(t for t in gateway.trades.values() if t.trade_no == by_alipay.payment_ref)
    assert sent["payee"] == trade.buyer_id and sent["amount"] == f"{owed // 100}.00"
    for found, provider in ((wechat_claim, "wechatpay"), (alipay_claim, "alipay")):
        assert found["compensation_status"] == "paid"
        assert found["compensation_provider"] == provider
    assert await reconcile_payments(api.app, today(), None) == 0

    # WeChat's transfer records say the transfer failed after all: found as missing.
    batch["detail_status"] = "FAIL"
    assert await reconcile_payments(api.app, today(), "wechatpay") == 1
    resp = await api.client.get("/api/payments/reconciliations", headers=api.auth(api.admin_token))
    latest = (await resp.json())["items"][0]
    assert latest["provider"] == "wechatpay"
    assert [(i["code"], i["kind"], i["key"]) for i in latest["issues"]] == [
        ("missing", "transfer", f"transfer:claim:{wechat_claim['id']}")]
    # … or paid another amount than our ledger says: an amount mismatch.
    batch["detail_status"], batch["detail_amount"] = "SUCCESS", owed - 1
    assert await reconcile_payments(api.app, today(), "wechatpay") == 1
    resp = await api.client.get("/api/payments/reconciliations", headers=api.auth(api.admin_token))
    latest = (await resp.json())["items"][0]
    assert [(i["code"], i["ledger_fen"], i["bill_fen"]) for i in latest["issues"]] == [
        ("amount_mismatch", owed, owed - 1)]
    assert await reconcile_payments(api.app, today(), "alipay") == 0


async def test_compensation_with_no_account_waits_until_the_buyer_links_wechat(
        both: Api, wx: WechatPayServer, wechat: WechatProtocolServer) -> None:
    api = both
    where = await farm(api)
    wx.hide_payer = True  # WeChat does not say who paid: no account to transfer to
    uid, anna = await api.user("viewer")
    order = await buy_with(api, where, anna, "wechatpay", wx)
    await pick_up(where, anna, order.id)
    filed = await claim(api, anna, order.id)
    # Refunded in full onto the payment; the compensation beyond it waits, and says why.
    assert wx.trades[trade_no(order.hold_id)].refunded == PRICE and wx.batches == {}
    assert (filed["compensation_status"], filed["compensation_waiting_reason"]) == (
        "awaiting_payee", "no_wechat_account")
    resp = await api.client.get("/api/claims?status=all", headers=api.auth(api.admin_token))
    (queued,) = [c for c in await resp.json() if c["id"] == filed["id"]]
    assert queued["compensation_status"] == "awaiting_payee"
    # The refund worker leaves it alone (it is not a provider failure to retry).
    await refunds.settle_pending(api.app[checkout_key].uow, api.app[checkout_key].payments)
    assert wx.batches == {}
    # Asking before linking an account: still nothing to pay it to.
    path = f"/api/claims/{filed['id']}/compensation"
    resp = await api.client.post(path, headers=api.auth(anna))
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "no_payee_account"
    _o, other = await api.user("viewer")
    assert (await api.client.post(path, headers=api.auth(other))).status == 403
    # From her order page she links WeChat (绑定微信: WeChat's consent, back to us), then asks N
    # times at once.
    wechat.next_person = Person("o_anna", "安娜")
    resp = await api.client.post("/api/auth/wechat/start", json={"link": True},
                                 headers=api.auth(anna))
    assert resp.status == 200, await resp.text()
    started = await resp.json()
    code, state = await consent(started)
    status, linked = await finish(api, code, state, started["browser_key"])
    assert status == 200 and linked["linked"] and linked["user"]["id"] == uid, linked
    async with api.app[database_key].session() as db:
        bound = (await db.execute(select(WechatIdentity).where(
            WechatIdentity.user_id == uid))).scalar_one()
    assert (bound.app_id, bound.openid) == (APPID, "o_anna")
    # The same WeChat cannot be linked to another account.
    started = await (await api.client.post("/api/auth/wechat/start", json={"link": True},
                                           headers=api.auth(other))).json()
    code, state = await consent(started)
    status, refused = await finish(api, code, state, started["browser_key"])
    assert status == 409 and refused["error"]["code"] == "conflict", refused

    async def receive() -> tuple[int, dict[str, Any]]:
        resp = await api.client.post(path, headers=api.auth(anna))
        return resp.status, dict(await resp.json())

    answers = await asyncio.gather(*(receive() for _ in range(N)))
    assert {status for status, _b in answers} == {200}, answers
    (batch,) = wx.batches.values()
    owed = PRICE * POLICY["multiplier"] - PRICE  # type: ignore[operator]
    assert (batch["openid"], batch["total_amount"]) == ("o_anna", owed)
    mine = await (await api.client.get(f"/api/claims/{filed['id']}", headers=api.auth(anna))).json()
    assert mine["compensation_status"] == "paid" and mine["compensation_waiting_reason"] is None


async def test_a_compensation_the_order_can_still_refund_goes_back_onto_the_payment(
        both: Api, wx: WechatPayServer) -> None:
    """No account to transfer to, but the order still has that much to refund: it is paid back
    onto the payment at once rather than waiting, under its unchanged key."""
    api = both
    where = await farm(api)
    wx.hide_payer = True
    _u, anna = await api.user("viewer")
    order = await buy_with(api, where, anna, "wechatpay", wx)
    key = refunds.compensation_key(order.id + 10_000)
    uow = api.app[checkout_key].uow
    async with uow() as db:
        row = await refunds.record_transfer(db, key, refunds.payee_of(order.user_id), 500, "补偿",
                                            order.id, order.payment_ref)
    await asyncio.gather(*(refunds.execute(uow, api.app[checkout_key].payments, row)
                           for _ in range(N)), return_exceptions=True)
    await refunds.settle_pending(uow, api.app[checkout_key].payments)
    assert list(wx.refunds) == [refund_no(key)] and wx.batches == {}
    assert wx.trades[trade_no(order.hold_id)].refunded == 500
    (done,) = await rows_of(api, order.id)
    assert (done.kind, done.status, done.provider) == ("refund", "done", "wechatpay")
    async with api.app[database_key].session() as db:
        fresh = await db.get(Order, order.id)
    assert fresh is not None and fresh.refunded_fen == 500
