"""A neighbour pays a flash-sale hold with WeChat Pay's H5 flow in Chromium: the buy sheet sends
her to the (local) WeChat Pay cashier, she confirms, WeChat Pay notifies the app and sends her
back to 我的订单, where the order is paid. With Alipay configured too, she chooses on the sheet."""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis

from tests.alipay_server import APP_ID as ALIPAY_APP_ID
from tests.alipay_server import alipay_gateway
from tests.browser_support import browser_kit
from tests.wechatpay_server import APPID, MCHID, MERCHANT_SERIAL, wechatpay_server

PHONE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")


async def test_a_flash_sale_hold_is_paid_through_wechat_pay_h5(tmp_path: Path, redis_url: str,
                                                               redis_client: Redis) -> None:
    async with wechatpay_server() as wx:
        env = {"LINLI_WECHATPAY_MCHID": MCHID, "LINLI_WECHATPAY_APPID": APPID,
               "LINLI_WECHATPAY_APIV3_KEY": wx.merchant.apiv3_key,
               "LINLI_WECHATPAY_MERCHANT_SERIAL": MERCHANT_SERIAL,
               "LINLI_WECHATPAY_PRIVATE_KEY_FILE": str(wx.write_merchant_key(tmp_path)),
               "LINLI_WECHATPAY_API_BASE": wx.base}
        async with browser_kit(tmp_path, redis_url, "wechatpay_h5", extra_env=env) as kit:
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
        env = {"LINLI_WECHATPAY_MCHID": MCHID, "LINLI_WECHATPAY_APPID": APPID,
               "LINLI_WECHATPAY_APIV3_KEY": wx.merchant.apiv3_key,
               "LINLI_WECHATPAY_MERCHANT_SERIAL": MERCHANT_SERIAL,
               "LINLI_WECHATPAY_PRIVATE_KEY_FILE": str(wx.write_merchant_key(tmp_path)),
               "LINLI_WECHATPAY_API_BASE": wx.base,
               "LINLI_ALIPAY_APP_ID": ALIPAY_APP_ID,
               "LINLI_ALIPAY_PRIVATE_KEY_FILE": str(tmp_path / "app_private.pem"),
               "LINLI_ALIPAY_PUBLIC_KEY_FILE": str(tmp_path / "alipay_public.pem"),
               "LINLI_ALIPAY_GATEWAY_URL": gateway.gateway_url}
        async with browser_kit(tmp_path, redis_url, "pay_choice", extra_env=env) as kit:
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
