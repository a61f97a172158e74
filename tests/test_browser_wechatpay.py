"""A neighbour pays a flash-sale hold with WeChat Pay's H5 flow in Chromium: the buy sheet sends
her to the (local) WeChat Pay cashier, she confirms, WeChat Pay notifies the app and sends her
back to 我的订单, where the order is paid. With Alipay configured too, she chooses on the sheet."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from tests.alipay_server import APP_ID as ALIPAY_APP_ID
from tests.alipay_server import alipay_gateway
from tests.browser_support import Kit, browser_kit
from tests.test_browser_sale import _tiny_png
from tests.wechat_protocol import APP_ID as WECHAT_APP_ID
from tests.wechat_protocol import APP_SECRET as WECHAT_SECRET
from tests.wechat_protocol import Person as WechatPerson
from tests.wechat_protocol import wechat_server
from tests.wechatpay_server import APPID, MCHID, MERCHANT_SERIAL, WechatPayServer, wechatpay_server

PHONE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")


def _wechatpay_env(wx: WechatPayServer, tmp_path: Path) -> dict[str, str]:
    """The settings that point the app at the local WeChat Pay server."""
    return {"LINLI_WECHATPAY_MCHID": MCHID, "LINLI_WECHATPAY_APPID": APPID,
            "LINLI_WECHATPAY_APIV3_KEY": wx.merchant.apiv3_key,
            "LINLI_WECHATPAY_MERCHANT_SERIAL": MERCHANT_SERIAL,
            "LINLI_WECHATPAY_PRIVATE_KEY_FILE": str(wx.write_merchant_key(tmp_path)),
            "LINLI_WECHATPAY_API_BASE": wx.base}


async def _holding_on_a_phone(kit: Kit) -> Any:
    """老张's flash sale open; 李阿姨 on her phone's browser holds one, the pay button before her."""
    rest = kit.rest
    host = await rest.account("laozhang", "host", "老张")
    buyer = await rest.account("liayi", "viewer", "李阿姨")
    session = await rest.call("POST", "/api/sessions", host.token, json={"title": "枇杷秒杀"})
    product = await rest.call("POST", "/api/products", host.token,
                              json={"name": "白玉枇杷 2斤装", "price_fen": 3990})
    await rest.call("POST", f"/api/sessions/{session['id']}/sales", host.token,
                    json={"product_id": product["id"], "stock": 5, "price_fen": 2990,
                          "per_buyer_limit": 2})
    page = await kit.page(buyer, f"/live/{session['id']}", user_agent=PHONE_UA)
    await page.locator("#open-buy", has_text="立即抢购").click(timeout=20_000)
    await page.locator("#sale").wait_for(timeout=20_000)
    await page.click("#buy")
    await page.locator("#hold").wait_for(timeout=20_000)
    return page


async def test_a_flash_sale_hold_is_paid_through_wechat_pay_h5(tmp_path: Path, redis_url: str,
                                                               redis_client: Redis) -> None:
    async with wechatpay_server() as wx:
        env = _wechatpay_env(wx, tmp_path)
        async with browser_kit(tmp_path, redis_url, "wechatpay_h5", extra_env=env) as kit:
            page = await _holding_on_a_phone(kit)
            await kit.shot(page, "hold")
            await page.click("#pay")
            # WeChat Pay's cashier (the local server's), with the amount asked.
            await page.wait_for_url(f"{wx.base}/h5pay**", timeout=20_000)
            assert await page.locator("#amount").text_content() == "29.90"
            await kit.shot(page, "wechat_cashier")
            await page.click("#confirm")
            await page.wait_for_url(f"{kit.base}/orders**", timeout=20_000)
            row = page.locator("#orders .order").first
            await row.wait_for(timeout=20_000)
            await row.locator(".order-status", has_text="已支付").wait_for(timeout=20_000)
            await kit.shot(page, "order_paid")
            assert await kit.axe(page, "orders_after_wechatpay") == []
            assert wx.delivered and wx.delivered[-1][1] == 204
            (trade,) = wx.trades.values()
            assert (trade.state, trade.total, trade.kind) == ("SUCCESS", 2990, "h5")
            assert kit.errors == []


async def test_with_both_providers_the_buyer_chooses_wechat_pay_on_the_sheet(
        tmp_path: Path, redis_url: str, redis_client: Redis) -> None:
    """WeChat Pay and Alipay both configured: in a phone browser the sheet offers both, Alipay
    chosen first (WeChat's own browser would put WeChat Pay first); she picks 微信支付 and pays
    at WeChat Pay's cashier, and Alipay hears of nothing."""
    async with wechatpay_server() as wx, alipay_gateway() as gateway:
        (tmp_path / "app_private.pem").write_text(gateway.app_private_pem)
        (tmp_path / "alipay_public.pem").write_text(gateway.alipay_public_pem)
        env = {**_wechatpay_env(wx, tmp_path),
               "LINLI_ALIPAY_APP_ID": ALIPAY_APP_ID,
               "LINLI_ALIPAY_PRIVATE_KEY_FILE": str(tmp_path / "app_private.pem"),
               "LINLI_ALIPAY_PUBLIC_KEY_FILE": str(tmp_path / "alipay_public.pem"),
               "LINLI_ALIPAY_GATEWAY_URL": gateway.gateway_url}
        async with browser_kit(tmp_path, redis_url, "pay_choice", extra_env=env) as kit:
            page = await _holding_on_a_phone(kit)
            methods = page.locator("#pay-methods")
            await methods.wait_for(timeout=20_000)
            assert await methods.locator("legend").text_content() == "支付方式"
            assert await page.get_by_role("radio", name="支付宝").is_checked()
            await page.get_by_role("radio", name="微信支付").check()
            await kit.shot(page, "pay_choice")
            assert await kit.axe(page, "pay_choice") == []
            await page.click("#pay")
            await page.wait_for_url(f"{wx.base}/h5pay**", timeout=20_000)
            assert await page.locator("#amount").text_content() == "29.90"
            await page.click("#confirm")
            await page.wait_for_url(f"{kit.base}/orders**", timeout=20_000)
            row = page.locator("#orders .order").first
            await row.locator(".order-status", has_text="已支付").wait_for(timeout=20_000)
            await kit.shot(page, "paid_with_wechat_pay")
            (trade,) = wx.trades.values()
            assert (trade.state, trade.total) == ("SUCCESS", 2990)
            assert gateway.trades == {}
            assert kit.errors == []


async def test_a_compensation_waiting_for_an_account_is_received_after_linking_wechat(
        tmp_path: Path, redis_url: str, redis_client: Redis) -> None:
    """李阿姨 paid by WeChat Pay, but WeChat did not say from which account: her approved 坏一赔十
    compensation waits (待领取) on her order page with what to do. Pressing 领取赔付 first says
    there is still no account; she links WeChat (绑定微信: WeChat's consent, back to her
    orders), presses again, and the transfer reaches that WeChat once."""
    async with wechatpay_server() as wx, wechat_server() as wechat:
        wx.hide_payer = True
        env = {**_wechatpay_env(wx, tmp_path),
               "LINLI_WECHAT_APP_ID": WECHAT_APP_ID, "LINLI_WECHAT_APP_SECRET": WECHAT_SECRET,
               "LINLI_WECHAT_AUTHORIZE_URL": wechat.authorize_url,
               "LINLI_WECHAT_API_BASE": wechat.base}
        async with browser_kit(tmp_path, redis_url, "compensation_awaiting", extra_env=env) as kit:
            rest = kit.rest
            host = await rest.account("laozhang", "host", "老张")
            buyer = await rest.account("liayi", "viewer", "李阿姨")
            session = await rest.call("POST", "/api/sessions", host.token, json={"title": "枇杷专场"})
            batch = await rest.call("POST", "/api/batches", host.token, json={
                "code": "B-" + uuid.uuid4().hex[:8], "farm": "老张合作农场", "plot": "3号坡",
                "harvested_at": "2026-05-01T06:00:00+00:00"})
            product = await rest.call("POST", "/api/products", host.token, json={
                "name": "白沙枇杷", "price_fen": 3000, "batch_id": batch["id"]})
            await rest.call("PUT", f"/api/products/{product['id']}/claim-policy", host.token,
                            json={"full_refund_without_return": True, "multiplier": 10,
                                  "max_days_after_pickup": 2, "auto_approve_max_fen": 10_000_000,
                                  "require_photo": True, "response_hours": 2})
            sale = await rest.call("POST", f"/api/sessions/{session['id']}/sales", host.token,
                                   json={"product_id": product["id"], "stock": 5,
                                         "price_fen": 3000, "per_buyer_limit": 2})
            held = await rest.call("POST", f"/api/sales/{sale['id']}/holds", buyer.token,
                                   json={"qty": 1}, headers={"Idempotency-Key": uuid.uuid4().hex})
            pending = await rest.call("POST", f"/api/holds/{held['hold_id']}/pay", buyer.token,
                                      headers={"User-Agent": PHONE_UA})
            assert pending["status"] == "pending" and pending["provider"] == "wechatpay"
            await wx.pay(f"linli-{held['hold_id']}")
            mine = await rest.call("GET", "/api/orders?mine=1", buyer.token)
            (order,) = mine["items"]
            await rest.call("POST", f"/api/orders/{order['id']}/ready", host.token)
            await rest.call("POST", f"/api/orders/{order['id']}/picked-up", host.token,
                            json={"pickup_code": order["pickup_code"]})

            # She files the claim from her orders page; it is approved at once by the policy.
            page = await kit.page(buyer, "/orders", user_agent=PHONE_UA)
            row = page.locator(f"#orders .order[data-id='{order['id']}']")
            await row.locator("button.claim-open").click()
            form = row.locator("form.claim-form")
            await form.locator(".claim-reason").select_option("spoiled")
            await form.locator(".claim-photo").set_input_files(
                files=[{"name": "bad.png", "mimeType": "image/png", "buffer": _tiny_png()}])
            await form.locator("button[type=submit]").click()
            await form.locator(".claim-status", has_text="售后 #").wait_for()
            await page.reload()
            await page.wait_for_selector("body[data-ready='1']")
            row = page.locator(f"#orders .order[data-id='{order['id']}']")
            compensation = row.locator(".claim-compensation")
            await compensation.wait_for()
            assert await compensation.text_content() == "赔付 ¥270.00 · 待领取"
            assert await row.locator(".claim-refund").text_content() == "退款 ¥30.00 · 已到账"
            note = row.locator(".claim-receive-note")
            assert "微信" in (await note.text_content() or "")
            await kit.shot(page, "compensation_waiting")
            assert await kit.axe(page, "compensation_waiting") == []
            await row.locator("button.claim-receive").click()
            await note.filter(has_text="还没有可收款的账户").wait_for()
            assert wx.batches == {}

            # 绑定微信: WeChat's consent page (the local one agrees at once), back to her orders.
            wechat.next_person = WechatPerson("o_liayi", "李阿姨")
            await row.locator("button.link-wechat").click()
            await page.wait_for_url(f"{kit.base}/orders", timeout=20_000)
            await page.wait_for_selector("body[data-ready='1']")
            row = page.locator(f"#orders .order[data-id='{order['id']}']")
            await row.locator("button.claim-receive").click()
            await row.locator(".claim-compensation", has_text="已到账").wait_for(timeout=20_000)
            assert await row.locator(".claim-receive").count() == 0
            await kit.shot(page, "compensation_received")
            assert await kit.axe(page, "compensation_received") == []
            (paid,) = wx.batches.values()
            assert (paid["openid"], paid["total_amount"]) == ("o_liayi", 27000)
            assert kit.errors == [], kit.errors
