"""WeChat Pay v3 end to end: the app with the real `wechatpayv3` client against the local
WeChat Pay server (tests/wechatpay_server.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from commerce import refunds
from commerce.identities import WechatIdentity
from commerce.orders import Order, OrderTransition
from commerce.payments import RefundKeyReused
from infra.settings import Settings
from payments.wechatpay import (
    CHINA,
    NoWechatAccount,
    ProviderFailed,
    WechatPayProvider,
    sweep_started,
    trade_no,
)
from server.commerce_keys import checkout_key
from server.keys import database_key
from tests.commerce_support import bulk_buyers, hold, make_shop
from tests.conftest import Api, AppFactory
from tests.wechatpay_server import APPID, MCHID, MERCHANT_SERIAL, WechatPayServer, wechatpay_server

PHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
         "(KHTML, like Gecko) Mobile/15E148 Safari/604.1")
DESKTOP = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120 Safari/537.36"
WECHAT = PHONE + " MicroMessenger/8.0.47(0x18002f2f) NetType/WIFI Language/zh_CN"


@pytest.fixture
async def wx() -> AsyncIterator[WechatPayServer]:
    async with wechatpay_server() as server:
        yield server


def with_wechatpay(settings: Settings, wx: WechatPayServer, folder: Path) -> Settings:
    return settings.with_(
        wechatpay_mchid=MCHID, wechatpay_appid=APPID,
        wechatpay_apiv3_key=wx.merchant.apiv3_key, wechatpay_merchant_serial=MERCHANT_SERIAL,
        wechatpay_private_key_file=wx.write_merchant_key(folder), wechatpay_api_base=wx.base,
        public_url="https://linli.example")


@pytest.fixture
async def wapi(make_api: AppFactory, any_db_settings: Settings, wx: WechatPayServer,
               tmp_path: Path) -> Api:
    api = await make_api(with_wechatpay(any_db_settings, wx, tmp_path))
    wx.route_to = str(api.client.make_url("")).rstrip("/")
    return api


def provider(api: Api) -> WechatPayProvider:
    found = api.app[checkout_key].provider
    assert isinstance(found, WechatPayProvider)
    return found


async def started(api: Api, agent: str = PHONE, qty: int = 1) -> tuple[int, str, str,
                                                                        dict[str, Any]]:
    """A buyer holds one unit of a 12.34 yuan sale and starts paying: (user, token, hold, answer)."""
    shop = await make_shop(api)
    sale = await shop.sale(stock=10, price_fen=1234, per_buyer_limit=5)
    ((uid, token),) = await bulk_buyers(api, 1)
    status, held = await hold(api, sale["id"], token, qty)
    assert status == 201, held
    resp = await api.client.post(f"/api/holds/{held['hold_id']}/pay",
                                 headers={**api.auth(token), "User-Agent": agent})
    assert resp.status == 200, await resp.text()
    return uid, token, held["hold_id"], dict(await resp.json())


async def orders_of(api: Api, hold_id: str) -> list[Order]:
    async with api.app[database_key].session() as db:
        return list((await db.execute(select(Order).where(Order.hold_id == hold_id))).scalars())


async def notes(api: Api, order_id: int) -> list[str]:
    async with api.app[database_key].session() as db:
        rows = await db.execute(select(OrderTransition.note).where(
            OrderTransition.order_id == order_id))
        return [str(n or "") for (n,) in rows]


async def test_h5_payment_end_to_end_and_duplicate_notifications_change_nothing(
        wapi: Api, wx: WechatPayServer) -> None:
    api = wapi
    _uid, token, hold_id, answer = await started(api)
    assert answer["status"] == "pending" and answer["channel"] == "h5"
    assert answer["redirect_url"].startswith(wx.base + "/h5pay?prepay_id=")
    assert "redirect_url=https%3A%2F%2Flinli.example%2Forders" in answer["redirect_url"]
    assert await orders_of(api, hold_id) == []
    trade = await wx.pay(trade_no(hold_id))
    assert wx.delivered[-1][1] == 204
    (order,) = await orders_of(api, hold_id)
    assert (order.status, order.payment_ref, order.amount_fen) == ("paid", trade.transaction_id,
                                                                   1234)
    # WeChat repeats a notification until it hears 2xx: 20 copies at once make nothing more.
    url, headers, body = wx.notification(trade_no(hold_id))
    statuses = await asyncio.gather(*(wx.deliver(url, headers, body) for _ in range(20)))
    assert set(statuses) == {204}
    assert len(await orders_of(api, hold_id)) == 1
    assert wx.trades[trade_no(hold_id)].refunded == 0
    mine = await (await api.client.get("/api/orders?mine=1", headers=api.auth(token))).json()
    assert [o["status"] for o in mine["items"]] == ["paid"]


async def test_forged_stale_or_wrong_amount_notifications_are_refused_and_logged_once(
        wapi: Api, wx: WechatPayServer, caplog: pytest.LogCaptureFixture) -> None:
    api = wapi
    _uid, _token, hold_id, _answer = await started(api)
    wx.mark_paid(trade_no(hold_id))
    forger = wx.merchant.__class__().private_key
    cases = {"forged": wx.notification(trade_no(hold_id), key=forger),
             "stale": wx.notification(trade_no(hold_id), stamp=1_700_000_000),
             "wrong amount": wx.notification(trade_no(hold_id), total=1)}
    for name, (url, headers, body) in cases.items():
        caplog.clear()
        with caplog.at_level(logging.INFO):
            status = await wx.deliver(url, headers, body)
        assert status == 400, name
        refused = [r for r in caplog.records if "wechatpay notification refused" in r.getMessage()]
        assert len(refused) == 1, (name, [r.getMessage() for r in caplog.records])
        assert body not in caplog.text and wx.merchant.apiv3_key not in caplog.text
    url, headers, body = wx.notification(trade_no(hold_id))
    tampered = body.replace('"summary": "支付成功"', '"summary": "x"')
    assert await wx.deliver(url, headers, tampered) == 400
    assert await orders_of(api, hold_id) == []
    # The real one still goes through.
    assert await wx.deliver(url, headers, body) == 204
    assert len(await orders_of(api, hold_id)) == 1


async def test_a_late_notification_is_found_by_the_active_query(wapi: Api,
                                                                 wx: WechatPayServer) -> None:
    api = wapi
    _uid, _token, hold_id, answer = await started(api, agent=DESKTOP)
    assert answer["channel"] == "native" and answer["qr_text"].startswith("weixin://wxpay/")
    assert answer["qr_svg"].startswith("data:image/svg+xml;base64,")
    await wx.pay(trade_no(hold_id), notify=False)
    checkout = api.app[checkout_key]
    assert await sweep_started(checkout, provider(api), older_than_s=0) == 1
    (order,) = await orders_of(api, hold_id)
    assert order.status == "paid"
    # The notification arriving after all changes nothing.
    url, headers, body = wx.notification(trade_no(hold_id))
    assert await wx.deliver(url, headers, body) == 204
    assert len(await orders_of(api, hold_id)) == 1
    assert await provider(api).started(0) == []


async def test_a_payment_landing_on_a_lapsed_hold_is_refunded_and_lapsed_orders_are_closed(
        wapi: Api, wx: WechatPayServer) -> None:
    api = wapi
    _uid, token, hold_id, _answer = await started(api)
    # Paid at WeChat just before the hold was given back (too late to close the order there);
    # the notification arrives after.
    trade = await wx.pay(trade_no(hold_id), notify=False)
    resp = await api.client.delete(f"/api/holds/{hold_id}", headers=api.auth(token))
    assert resp.status == 200
    url, headers, body = wx.notification(trade_no(hold_id))
    # handled: the money goes back, WeChat stops repeating
    assert await wx.deliver(url, headers, body) == 204
    assert await orders_of(api, hold_id) == []
    assert trade.refunded == trade.total == 1234
    url, headers, body = wx.notification(trade_no(hold_id))
    statuses = await asyncio.gather(*(wx.deliver(url, headers, body) for _ in range(20)))
    assert set(statuses) == {204} and len(wx.refunds) == 1 and trade.refunded == 1234
    # A second buyer's hold lapses before paying: the sweep closes WeChat's order.
    _uid2, token2, other, _a = await started(api)
    await api.client.delete(f"/api/holds/{other}", headers=api.auth(token2))
    assert await sweep_started(api.app[checkout_key], provider(api), older_than_s=0) == 1
    assert wx.trades[trade_no(other)].state == "CLOSED"
    assert await provider(api).started(0) == []


async def test_refund_partial_refund_and_refund_notification(wapi: Api,
                                                             wx: WechatPayServer) -> None:
    api = wapi
    _uid, _token, hold_id, _answer = await started(api)
    trade = await wx.pay(trade_no(hold_id))
    (order,) = await orders_of(api, hold_id)
    wechat = provider(api)
    key = f"refund:order:{order.id}:group-7"
    refs = await asyncio.gather(*(wechat.refund(trade.transaction_id, 234, "团购价", key)
                                  for _ in range(20)))
    assert len(set(refs)) == 1 and trade.refunded == 234
    assert f"refund|order|{order.id}|group-7" in wx.refunds
    with pytest.raises(RefundKeyReused):
        await wechat.refund(trade.transaction_id, 235, "团购价", key)
    # Both through the money-out ledger (a row first, then the provider): the first answers
    # with the refund the 20 calls above made under its key.
    uow = api.app[database_key].session
    assert await refunds.pay_out(uow, wechat, key, trade.transaction_id, 234, "团购价",
                                 order.id) == refs[0]
    await refunds.pay_out(uow, wechat, f"refund:order:{order.id}:refunded", trade.transaction_id,
                          1000, "退货", order.id)
    assert trade.refunded == 1234
    with pytest.raises(ProviderFailed):  # WeChat refuses more than was paid (NOT_ENOUGH)
        await wechat.refund(trade.transaction_id, 1, "x", f"refund:order:{order.id}:extra")
    sent = await wx.deliver_refund_notices()
    assert sent == [204, 204]
    assert await wx.deliver_refund_notices() == []
    history = await notes(api, order.id)
    assert sum("退款成功" in n for n in history) == 2, history
    # A repeated refund notification adds nothing.
    headers, body = wx.refund_notification(wx.refunds[f"refund|order|{order.id}|group-7"])
    assert await wx.deliver(wechat.refund_notify_url, headers, body) == 204
    assert sum("退款成功" in n for n in await notes(api, order.id)) == 2


async def test_compensation_is_a_transfer_to_the_buyers_wechat(wapi: Api,
                                                               wx: WechatPayServer) -> None:
    api = wapi
    ((uid, _t), (stranger, _s)) = await bulk_buyers(api, 2)
    async with api.app[database_key].session() as db:
        db.add(WechatIdentity(user_id=uid, app_id=APPID, openid="o_neighbour_1"))
    wechat = provider(api)
    key = f"transfer:claim:{uuid.uuid4().int % 10**6}"
    refs = await asyncio.gather(*(wechat.transfer(f"user:{uid}", 12340, "坏一赔十", key)
                                  for _ in range(20)))
    assert len(set(refs)) == 1 and len(wx.batches) == 1
    (batch,) = wx.batches.values()
    assert (batch["openid"], batch["total_amount"]) == ("o_neighbour_1", 12340)
    with pytest.raises(RefundKeyReused):
        await wechat.transfer(f"user:{uid}", 99, "坏一赔十", key)
    with pytest.raises(NoWechatAccount):
        await wechat.transfer(f"user:{stranger}", 100, "坏一赔十", key + "x")


async def test_the_trade_bill_reads_as_bill_lines(wapi: Api, wx: WechatPayServer) -> None:
    api = wapi
    _uid, _token, hold_id, _answer = await started(api)
    trade = await wx.pay(trade_no(hold_id))
    (order,) = await orders_of(api, hold_id)
    key = f"refund:order:{order.id}:group-9"
    refund_ref = await provider(api).refund(trade.transaction_id, 100, "团购价", key)
    lines = await provider(api).bill(datetime.now(CHINA).date())
    assert [(ln.kind, ln.key, ln.provider_ref, ln.amount_fen) for ln in lines] == [
        ("payment", hold_id, trade.transaction_id, 1234), ("refund", key, refund_ref, 100)]
    assert all(ln.at.utcoffset() is not None for ln in lines)
    assert await provider(api).bill(datetime(2020, 1, 1).date()) == []


async def test_jsapi_inside_wechat_with_the_sign_in_openid(wapi: Api, wx: WechatPayServer) -> None:
    api = wapi
    shop = await make_shop(api)
    sale = await shop.sale(stock=10, price_fen=500, per_buyer_limit=5)
    ((uid, token),) = await bulk_buyers(api, 1)
    async with api.app[database_key].session() as db:
        db.add(WechatIdentity(user_id=uid, app_id=APPID, openid="o_in_wechat"))
    _s, held = await hold(api, sale["id"], token)
    resp = await api.client.post(f"/api/holds/{held['hold_id']}/pay",
                                 headers={**api.auth(token), "User-Agent": WECHAT})
    answer = await resp.json()
    assert answer["channel"] == "jsapi" and answer["jsapi"]["package"].startswith("prepay_id=wx")
    assert answer["jsapi"]["appId"] == APPID and answer["jsapi"]["signType"] == "RSA"
    assert wx.trades[trade_no(held["hold_id"])].openid == "o_in_wechat"


async def test_wechatpay_is_off_unless_configured(api: Api) -> None:
    resp = await api.client.post("/api/payments/wechatpay/notify", data=b"{}")
    assert resp.status == 404
    assert api.app[checkout_key].provider.name != "wechatpay"


def test_half_a_wechatpay_configuration_refuses_to_start(tmp_path: Path) -> None:
    """Never the simulated provider (which pays everything at once) by a forgotten variable."""
    from infra.settings import SettingsError

    with pytest.raises(SettingsError, match="LINLI_WECHATPAY_PRIVATE_KEY_FILE"):
        Settings.from_env({"LINLI_DATA_DIR": str(tmp_path), "LINLI_WECHATPAY_MCHID": MCHID,
                           "LINLI_WECHATPAY_APPID": APPID,
                           "LINLI_WECHATPAY_APIV3_KEY": "k" * 32,
                           "LINLI_WECHATPAY_MERCHANT_SERIAL": MERCHANT_SERIAL})
    assert not Settings.from_env({"LINLI_DATA_DIR": str(tmp_path)}).wechatpay_enabled
