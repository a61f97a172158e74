"""Alipay end to end against the local gateway (tests/alipay_server.py) speaking Alipay's wire
protocol with its own RSA2 keys, driven through the real `python-alipay-sdk` client: phone-web
pay, notifications (late, duplicate, forged, wrong amount), payment after expiry refunded,
refunds, compensation transfer, the ledger and the daily reconciliation against the bill."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from sqlalchemy import select

from commerce import money_ledger, refunds
from commerce.orders import Order
from commerce.payment_records import Payment
from infra.settings import Settings
from payments.alipay import AlipayProvider
from server.cli_payments import reconcile_payments
from server.commerce_keys import checkout_key
from server.keys import database_key
from tests.alipay_server import APP_ID, AlipayGateway, alipay_gateway, keypair
from tests.commerce_support import Shop, hold, make_shop
from tests.conftest import Api, AppFactory


def today() -> date:
    """The bill day now (Asia/Shanghai)."""
    return datetime.now(ZoneInfo("Asia/Shanghai")).date()


@pytest.fixture
async def gateway() -> AsyncIterator[AlipayGateway]:
    async with alipay_gateway() as server:
        yield server


def with_alipay(settings: Settings, gateway: AlipayGateway, folder: Path) -> Settings:
    private, public = folder / "app_private.pem", folder / "alipay_public.pem"
    private.write_text(gateway.app_private_pem)
    public.write_text(gateway.alipay_public_pem)
    return settings.with_(alipay_app_id=APP_ID, alipay_private_key_file=private,
                          alipay_public_key_file=public, alipay_gateway_url=gateway.gateway_url)


async def alipay_api(make_api: AppFactory, settings: Settings, gateway: AlipayGateway,
                     tmp_path: Path) -> Api:
    api = await make_api(with_alipay(settings, gateway, tmp_path))
    gateway.deliver_to = str(api.client.make_url("/"))
    assert isinstance(api.app[checkout_key].provider, AlipayProvider)
    return api


async def held(shop: Shop, price_fen: int = 1000, qty: int = 1) -> tuple[str, str, int]:
    """(hold id, buyer token, buyer id) for a fresh sale."""
    sale = await shop.sale(price_fen=price_fen)
    buyer_id, token = await shop.api.user("viewer")
    status, body = await hold(shop.api, sale["id"], token, qty)
    assert status == 201, body
    return body["hold_id"], token, buyer_id


async def start_pay(api: Api, hold_id: str, token: str) -> dict[str, Any]:
    resp = await api.client.post(f"/api/holds/{hold_id}/pay", headers=api.auth(token))
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def cashier(url: str) -> str:
    """What the phone browser does on Alipay: open the cashier, press 确认付款."""
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 200
            page = await resp.text()
        assert "确认付款" in page
        trade = parse_qs(urlsplit(url).query)
        out_trade_no = json.loads(trade["biz_content"][0])["out_trade_no"]
        base = url.split("/gateway.do")[0]
        async with http.post(f"{base}/cashier/pay", data={"out_trade_no": out_trade_no},
                             allow_redirects=False) as resp:
            assert resp.status == 302
            return resp.headers["Location"]


async def orders_of_hold(api: Api, hold_id: str) -> list[Order]:
    async with api.app[database_key].session() as db:
        return list((await db.execute(select(Order).where(Order.hold_id == hold_id))).scalars())


async def payments_of_hold(api: Api, hold_id: str) -> list[Payment]:
    async with api.app[database_key].session() as db:
        return list((await db.execute(select(Payment).where(Payment.hold_id == hold_id)))
                    .scalars())


async def test_phone_web_pay_end_to_end_and_duplicate_notify_changes_nothing(
        make_api: AppFactory, any_db_settings: Settings, gateway: AlipayGateway,
        tmp_path: Path) -> None:
    api = await alipay_api(make_api, any_db_settings, gateway, tmp_path)
    shop = await make_shop(api)
    hold_id, token, buyer_id = await held(shop, price_fen=1234, qty=2)
    started = await start_pay(api, hold_id, token)
    assert started["status"] == "pending"
    url = started["redirect_url"]
    assert url.startswith(gateway.gateway_url) and "alipay.trade.wap.pay" in url
    back = await cashier(url)
    assert back.endswith("/orders")
    assert gateway.notify_answers == [(200, "success")]
    orders = await orders_of_hold(api, hold_id)
    assert len(orders) == 1 and orders[0].user_id == buyer_id and orders[0].amount_fen == 2468
    trade = gateway.trades[hold_id]
    assert orders[0].payment_ref == trade.trade_no
    # Alipay retries: the same notification again, and a fresh one for the same trade.
    assert await gateway.notify(trade) == (200, "success")
    assert len(await orders_of_hold(api, hold_id)) == 1
    assert [p.amount_fen for p in await payments_of_hold(api, hold_id)] == [2468]
    assert gateway.refused_requests == 0


async def test_qr_flow_pays_when_scanned(
        make_api: AppFactory, settings: Settings, gateway: AlipayGateway, tmp_path: Path) -> None:
    api = await alipay_api(make_api, settings, gateway, tmp_path)
    hold_id, token, _ = await held(await make_shop(api), price_fen=2500)
    resp = await api.client.post(f"/api/holds/{hold_id}/pay", json={"qr": True},
                                 headers=api.auth(token))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    trade = gateway.trades[hold_id]
    assert body["status"] == "pending" and body["qr_code"].endswith(trade.trade_no)
    assert trade.total_amount == "25.00"
    await gateway.pay(trade)  # the buyer scans and pays in the Alipay app
    assert gateway.notify_answers == [(200, "success")]
    (order,) = await orders_of_hold(api, hold_id)
    assert order.payment_ref == trade.trade_no and order.amount_fen == 2500


async def test_answers_not_signed_by_alipay_are_not_trusted(
        make_api: AppFactory, settings: Settings, gateway: AlipayGateway, tmp_path: Path) -> None:
    """Someone between us and Alipay answering "paid" with another key moves nothing."""
    api = await alipay_api(make_api, settings, gateway, tmp_path)
    hold_id, token, _ = await held(await make_shop(api))
    gateway.hold_notifications = True
    await cashier((await start_pay(api, hold_id, token))["redirect_url"])
    gateway.alipay_key = keypair()[0]  # answers now signed by a key we do not know
    again = await start_pay(api, hold_id, token)
    assert again["status"] == "pending" and await orders_of_hold(api, hold_id) == []


async def test_late_notification_found_by_query(
        make_api: AppFactory, settings: Settings, gateway: AlipayGateway, tmp_path: Path) -> None:
    api = await alipay_api(make_api, settings, gateway, tmp_path)
    hold_id, token, _ = await held(await make_shop(api))
    gateway.hold_notifications = True
    await cashier((await start_pay(api, hold_id, token))["redirect_url"])
    assert await orders_of_hold(api, hold_id) == []
    # Back from Alipay, the buyer presses pay again: the active query finds the trade paid.
    again = await start_pay(api, hold_id, token)
    assert again["status"] == "paid" and again["order_id"]
    # The notification arrives at last: a duplicate, answered, nothing new.
    assert await gateway.notify(gateway.trades[hold_id]) == (200, "success")
    assert len(await orders_of_hold(api, hold_id)) == 1
    assert len(await payments_of_hold(api, hold_id)) == 1


async def test_forged_notification_refused_and_logged_once(
        make_api: AppFactory, settings: Settings, gateway: AlipayGateway, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    api = await alipay_api(make_api, settings, gateway, tmp_path)
    hold_id, token, _ = await held(await make_shop(api))
    gateway.hold_notifications = True
    await cashier((await start_pay(api, hold_id, token))["redirect_url"])
    trade = gateway.trades[hold_id]
    forged = gateway.notification(trade)
    forged["total_amount"] = "0.01"  # changed after signing
    caplog.set_level(logging.WARNING)
    assert await gateway.notify(trade, forged) == (400, "fail")
    refused = [r for r in caplog.records if r.getMessage() == "alipay notification refused"]
    assert len(refused) == 1 and getattr(refused[0], "reason", "") == "bad_signature"
    assert await orders_of_hold(api, hold_id) == []
    assert await payments_of_hold(api, hold_id) == []


async def test_wrong_amount_refused(
        make_api: AppFactory, settings: Settings, gateway: AlipayGateway, tmp_path: Path) -> None:
    api = await alipay_api(make_api, settings, gateway, tmp_path)
    hold_id, token, _ = await held(await make_shop(api), price_fen=1000)
    gateway.hold_notifications = True
    await cashier((await start_pay(api, hold_id, token))["redirect_url"])
    trade = gateway.trades[hold_id]
    # Correctly signed by Alipay, but for an amount this hold never asked for.
    assert await gateway.notify(trade, gateway.notification(trade, total_amount="1.00")) \
        == (400, "fail")
    assert await orders_of_hold(api, hold_id) == []


async def test_payment_after_expiry_is_refunded(
        make_api: AppFactory, settings: Settings, gateway: AlipayGateway, tmp_path: Path) -> None:
    api = await alipay_api(make_api, settings.with_(hold_ttl_s=1), gateway, tmp_path)
    hold_id, token, _ = await held(await make_shop(api), price_fen=800)
    gateway.hold_notifications = True
    gateway.ignore_time_expire = True  # the payment lands late all the same
    url = (await start_pay(api, hold_id, token))["redirect_url"]
    await asyncio.sleep(1.6)
    await api.app[checkout_key].expire(int(hold_id.split("-")[0]))
    await cashier(url)
    trade = gateway.trades[hold_id]
    first = gateway.notification(trade)
    assert await gateway.notify(trade, first) == (200, "success")
    assert await orders_of_hold(api, hold_id) == []
    assert str(trade.refunded) == "8.00"
    async with api.app[database_key].session() as db:
        rows = await refunds.refunds_of_order(db, 0)
        back = await refunds.find(db, refunds.refund_key("payment", trade.trade_no))
    assert rows == [] and back is not None and back.status == "done"
    # Alipay's retry of that notification returns nothing twice; nor does its TRADE_CLOSED.
    assert await gateway.notify(trade, first) == (200, "success")
    assert await gateway.notify(trade) == (200, "success")
    assert str(trade.refunded) == "8.00"


async def test_trade_lapses_with_its_hold_and_closes_when_released(
        make_api: AppFactory, settings: Settings, gateway: AlipayGateway, tmp_path: Path) -> None:
    api = await alipay_api(make_api, settings.with_(hold_ttl_s=1), gateway, tmp_path)
    shop = await make_shop(api)
    hold_id, token, _ = await held(shop)
    url = (await start_pay(api, hold_id, token))["redirect_url"]
    assert "time_expire" in parse_qs(urlsplit(url).query)["biz_content"][0]
    await asyncio.sleep(2.1)  # time_expire has whole seconds
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert "交易已关闭" in await resp.text()
    assert gateway.trades[hold_id].status == "TRADE_CLOSED"
    assert gateway.notify_answers == [] and await orders_of_hold(api, hold_id) == []
    # A hold given back closes its trade at once.
    api2 = await alipay_api(make_api, settings, gateway, tmp_path)
    shop2 = await make_shop(api2)
    other, token2, _ = await held(shop2)
    opened = (await start_pay(api2, other, token2))["redirect_url"]
    async with aiohttp.ClientSession() as http, http.get(opened) as resp:
        assert "确认付款" in await resp.text()  # the trade exists at Alipay, unpaid
    resp = await api2.client.delete(f"/api/holds/{other}", headers=api2.auth(token2))
    assert resp.status == 200, await resp.text()
    assert gateway.trades[other].status == "TRADE_CLOSED"


@pytest.mark.races
async def test_twenty_identical_notifications_make_one_order(
        make_api: AppFactory, any_db_settings: Settings, gateway: AlipayGateway,
        tmp_path: Path) -> None:
    api = await alipay_api(make_api, any_db_settings, gateway, tmp_path)
    hold_id, token, _ = await held(await make_shop(api))
    gateway.hold_notifications = True
    await cashier((await start_pay(api, hold_id, token))["redirect_url"])
    trade = gateway.trades[hold_id]
    form = gateway.notification(trade)
    answers = await asyncio.gather(*(gateway.notify(trade, form) for _ in range(20)))
    assert set(answers) == {(200, "success")}
    assert len(await orders_of_hold(api, hold_id)) == 1
    assert len(await payments_of_hold(api, hold_id)) == 1


async def paid_order(api: Api, gateway: AlipayGateway, price_fen: int = 1000) -> Order:
    hold_id, token, _ = await held(await make_shop(api), price_fen=price_fen)
    await cashier((await start_pay(api, hold_id, token))["redirect_url"])
    (order,) = await orders_of_hold(api, hold_id)
    return order


async def test_refund_partial_refund_and_compensation_transfer(
        make_api: AppFactory, any_db_settings: Settings, gateway: AlipayGateway,
        tmp_path: Path) -> None:
    api = await alipay_api(make_api, any_db_settings, gateway, tmp_path)
    checkout = api.app[checkout_key]
    order = await paid_order(api, gateway, price_fen=1000)
    trade = next(t for t in gateway.trades.values() if t.trade_no == order.payment_ref)
    # A partial refund (a group-buy price difference), then the same fact again: once.
    key = refunds.rebate_key(order.id, 7)
    for _ in range(2):
        await refunds.pay_out(checkout.uow, checkout.provider, key, order.payment_ref, 300,
                              "group price", order.id)
    assert str(trade.refunded) == "3.00"
    # The rest back, under its own key; twenty at once still move it once.
    rest = refunds.refund_key("order", order.id, "refunded")
    await asyncio.gather(*(refunds.pay_out(checkout.uow, checkout.provider, rest,
                                           order.payment_ref, 700, "cancelled", order.id)
                           for _ in range(20)), return_exceptions=True)
    assert str(trade.refunded) == "10.00"
    # Compensation beyond the price goes to the buyer's Alipay account that paid.
    async with checkout.uow() as db:
        row = await refunds.record_transfer(db, refunds.compensation_key(99),
                                            refunds.payee_of(order.user_id), 5000, "坏一赔十",
                                            order.id, order.payment_ref)
    ref = await refunds.execute(checkout.uow, checkout.provider, row)
    assert ref and len(gateway.transfers) == 1
    (sent,) = gateway.transfers.values()
    assert sent["payee"] == trade.buyer_id and sent["amount"] == "50.00"
    assert await refunds.execute(checkout.uow, checkout.provider, row) == ref
    assert len(gateway.transfers) == 1
    async with api.app[database_key].session() as db:
        ledger = await money_ledger.order_ledger(db, await db.get(Order, order.id))
    assert sorted((e["kind"], e["amount_fen"]) for e in ledger) == [
        ("payment", 1000), ("refund", 300), ("refund", 700), ("transfer", 5000)]
    # The same, for an admin, by order and by Alipay's trade number.
    for query in (f"order_id={order.id}", f"provider_ref={trade.trade_no}"):
        resp = await api.client.get(f"/api/payments/ledger?{query}",
                                    headers=api.auth(api.admin_token))
        assert resp.status == 200, await resp.text()
        shown = (await resp.json())["items"]
        assert sorted((e["kind"], e["amount_fen"]) for e in shown) == [
            ("payment", 1000), ("refund", 300), ("refund", 700), ("transfer", 5000)]
    # The day's bill agrees with the ledger to the fen.
    run = await money_ledger.reconcile_day(checkout.uow, checkout.provider, today())
    assert run.issue_count == 0, run.issues_json
    assert run.ledger_lines == run.bill_lines == 4


async def test_reconciliation_finds_each_planted_mismatch(
        make_api: AppFactory, any_db_settings: Settings, gateway: AlipayGateway,
        tmp_path: Path) -> None:
    api = await alipay_api(make_api, any_db_settings, gateway, tmp_path)
    checkout = api.app[checkout_key]
    orders = [await paid_order(api, gateway, price_fen=500 + i) for i in range(3)]
    day = today()
    clean = await money_ledger.reconcile_day(checkout.uow, checkout.provider, day)
    assert clean.issue_count == 0 and clean.ledger_lines == 3
    assert await reconcile_payments(api.app, day, None) == 0
    rows = gateway.bill_rows[day.isoformat()]
    missing = rows.pop(0)  # a payment Alipay's bill lacks
    rows[0]["订单金额（元）"] = "9.99"  # a payment billed at another amount
    rows.append({"支付宝交易号": "2026extra", "商户订单号": "999-1", "业务类型": "交易",
                 "订单金额（元）": "1.00", "完成时间": rows[0]["完成时间"]})  # one we never saw
    run = await money_ledger.reconcile_day(checkout.uow, checkout.provider, day)
    found = sorted((i["code"], i["key"]) for i in run.public_dict()["issues"])
    assert found == sorted([("missing", missing["商户订单号"]),
                            ("amount_mismatch", orders[1].hold_id), ("extra", "999-1")])
    mismatch = next(i for i in run.public_dict()["issues"] if i["code"] == "amount_mismatch")
    assert mismatch["ledger_fen"] == 501 and mismatch["bill_fen"] == 999
    # The command's answer: non-zero on any difference, 2 for a provider not configured.
    assert await reconcile_payments(api.app, day, "alipay") == 1
    assert await reconcile_payments(api.app, day, "wechatpay") == 2
    # The dashboard shows the runs, newest first, to admins only.
    _, host = await api.user("host")
    resp = await api.client.get("/api/payments/reconciliations", headers=api.auth(host))
    assert resp.status == 403
    resp = await api.client.get("/api/payments/reconciliations",
                                headers=api.auth(api.admin_token))
    items = (await resp.json())["items"]
    assert [i["issue_count"] for i in items[:4]] == [3, 3, 0, 0]
    assert items[0]["day"] == day.isoformat() and items[0]["provider"] == "alipay"


async def test_simulated_provider_bill_reconciles(api: Api) -> None:
    """The embedded provider keeps a bill too, so reconciliation works without Alipay."""
    checkout = api.app[checkout_key]
    shop = await make_shop(api)
    hold_id, token, _ = await held(shop)
    assert (await start_pay(api, hold_id, token))["status"] == "paid"
    run = await money_ledger.reconcile_day(checkout.uow, checkout.provider, today())
    assert run.issue_count == 0 and run.ledger_lines >= 1
    assert run.provider == "simulated"
