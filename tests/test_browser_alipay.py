"""Paying a flash-sale hold with Alipay in real Chromium on a phone (zh-CN, Asia/Shanghai): the
buy sheet sends 李阿姨 to Alipay's phone-web cashier (the local gateway of tests/alipay_server.py,
speaking Alipay's protocol with its own RSA2 keys), she confirms, Alipay notifies the server and
brings her back to her orders, where the order is paid."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from redis.asyncio import Redis

from tests.alipay_server import APP_ID, alipay_gateway
from tests.browser_support import REPO, browser_kit

COMMUNITY = "阳光花园"


async def test_pay_a_hold_through_alipay_phone_web(tmp_path: Path, redis_url: str,
                                                    redis_client: Redis) -> None:
    async with alipay_gateway() as gateway:
        (tmp_path / "app_private.pem").write_text(gateway.app_private_pem)
        (tmp_path / "alipay_public.pem").write_text(gateway.alipay_public_pem)
        env = {"LINLI_ALIPAY_APP_ID": APP_ID,
               "LINLI_ALIPAY_PRIVATE_KEY_FILE": str(tmp_path / "app_private.pem"),
               "LINLI_ALIPAY_PUBLIC_KEY_FILE": str(tmp_path / "alipay_public.pem"),
               "LINLI_ALIPAY_GATEWAY_URL": gateway.gateway_url}
        async with browser_kit(tmp_path, redis_url, "alipay_phone_web", env) as kit:
            rest = kit.rest
            host = await rest.account("laozhang", "host", "老张")
            buyer = await rest.account("liayi", "viewer", "李阿姨")
            community = await rest.call("POST", "/api/communities", host.token,
                                        json={"name": COMMUNITY})
            await rest.call("POST", f"/api/communities/{community['id']}/members", host.token,
                            json={"user_id": buyer.id})
            await rest.call("POST", f"/api/communities/{community['id']}/pickup-points",
                            host.token, json={"name": "3号楼门卫室", "address": "阳光花园3号楼"})
            session = await rest.call("POST", "/api/sessions", host.token,
                                      json={"title": "枇杷专场"})
            product = await rest.call("POST", "/api/products", host.token,
                                      json={"name": "白沙枇杷 2斤装", "price_fen": 3990})
            await rest.call("POST", f"/api/sessions/{session['id']}/sales", host.token, json={
                "product_id": product["id"], "stock": 20, "price_fen": 3990,
                "per_buyer_limit": 2, "community_ids": [community["id"]]})

            page = await kit.page(buyer, f"/live/{session['id']}")
            await page.locator("#open-buy", has_text="立即抢购").click(timeout=20_000)
            await page.locator("#sale").wait_for(timeout=20_000)
            await page.click("#buy")
            await page.locator("#hold").wait_for(timeout=20_000)
            await kit.shot(page, "hold_before_alipay")
            await page.click("#pay")
            # Alipay's cashier, on the gateway's host.
            await page.wait_for_url(f"{gateway.base}/gateway.do?*", timeout=20_000)
            await page.locator("#amount", has_text="39.90").wait_for()
            await kit.shot(page, "alipay_cashier")
            await page.get_by_role("button", name="确认付款").click()
            # Back on her orders: the notification made the order, and it is paid.
            await page.wait_for_url(f"{kit.server.base}/orders", timeout=20_000)
            await page.get_by_text("白沙枇杷 2斤装").first.wait_for(timeout=20_000)
            await page.get_by_text("已支付").first.wait_for(timeout=20_000)
            await kit.shot(page, "order_paid_after_alipay")
            assert gateway.notify_answers == [(200, "success")]
            (trade,) = gateway.trades.values()
            assert trade.status == "TRADE_SUCCESS" and trade.total_amount == "39.90"
            mine = await rest.call("GET", "/api/orders?mine=1", buyer.token)
            assert [o["status"] for o in mine["items"]] == ["paid"]
            assert mine["items"][0]["amount_fen"] == 3990

            # The day's reconciliation from the command line: clean, then with a planted
            # mismatch in Alipay's bill; the admin sees both on the dashboard.
            day = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
            code, out = await _reconcile(kit.server.env, day)
            assert code == 0, out
            gateway.bill_rows[day][0]["订单金额（元）"] = "39.00"
            code, out = await _reconcile(kit.server.env, day)
            assert code == 1 and '"code": "amount_mismatch"' in out, out
            admin = await rest.account("guanli", "admin", "管理员")
            board = await kit.page(admin, "/dashboard")
            rows = board.locator("#recon-table tbody tr")
            await rows.first.wait_for(timeout=20_000)
            assert await rows.count() == 2
            await rows.first.locator("li", has_text="金额不符").wait_for()
            assert "¥39.90 / ¥39.00" in (await rows.first.inner_text())
            await rows.nth(1).locator("text=一致").wait_for()
            await board.locator("#reconciliations").scroll_into_view_if_needed()
            await kit.shot(board, "dashboard_reconciliations")
            assert await kit.axe(board, "dashboard_reconciliations") == []


async def _reconcile(env: dict[str, str], day: str) -> tuple[int, str]:
    """`python -m server reconcile-payments DAY --provider alipay` against the running server's
    database and Redis (its output: one JSON line per difference)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "reconcile-payments", day, "--provider", "alipay",
        cwd=str(REPO), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return int(proc.returncode or 0), out.decode() + err.decode()[-2000:]
