"""My orders in real Chromium on a 390 px phone (zh-CN, Asia/Shanghai): 李阿姨 sees each order's
progress with local times, the pickup code as text and QR, where and when to collect it, the
gift, a refund; after pickup she answers the survey from the link on the order."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from redis.asyncio import Redis

from tests.browser_support import Account, Kit, browser_kit

POINT = "3号楼门卫室"
ADDRESS = "阳光花园3号楼东侧,快递柜旁边的门卫室(请出示取货码)"
HOURS = "每天 9:00–20:00"
SHANGHAI = ZoneInfo("Asia/Shanghai")


async def _seed(kit: Kit) -> dict[str, Any]:
    rest = kit.rest
    host = await rest.account("laozhang", "host", "老张")
    buyer = await rest.account("liayi", "viewer", "李阿姨")
    community = await rest.call("POST", "/api/communities", host.token, json={"name": "阳光花园"})
    await rest.call("POST", f"/api/communities/{community['id']}/members", host.token,
                    json={"user_id": buyer.id})
    await rest.call("POST", f"/api/communities/{community['id']}/pickup-points", host.token,
                    json={"name": POINT, "address": ADDRESS, "hours": HOURS})
    session = await rest.call("POST", "/api/sessions", host.token, json={"title": "枇杷专场"})
    product = await rest.call("POST", "/api/products", host.token,
                              json={"name": "白沙枇杷 2斤装(礼盒)", "price_fen": 12800})
    sale = await rest.call("POST", f"/api/sessions/{session['id']}/sales", host.token, json={
        "product_id": product["id"], "stock": 100, "price_fen": 12800, "per_buyer_limit": 10,
        "community_ids": [community["id"]], "community_price_fen": 9900, "gift_first_n": 30,
        "gift_text": "桑葚一盒"})

    async def buy(qty: int) -> int:
        held = await rest.call("POST", f"/api/sales/{sale['id']}/holds", buyer.token,
                               json={"qty": qty, "community_id": community["id"]},
                               headers={"Idempotency-Key": uuid.uuid4().hex})
        return int((await rest.call("POST", f"/api/holds/{held['hold_id']}/pay",
                                    buyer.token))["order_id"])

    refunded, collected, waiting = await buy(1), await buy(1), await buy(2)
    await rest.call("POST", f"/api/orders/{refunded}/refund", host.token, json={"reason": "改主意"})
    await rest.call("POST", "/api/orders/ready", host.token,
                    json={"order_ids": [collected, waiting]})
    code = (await rest.call("GET", f"/api/orders/{collected}", buyer.token))["pickup_code"]
    await rest.call("POST", f"/api/orders/{collected}/picked-up", host.token,
                    json={"pickup_code": code})
    return {"buyer": buyer, "host": host, "refunded": refunded, "collected": collected,
            "waiting": waiting}


def _local(iso: str) -> str:
    """How the page (zh-CN, Asia/Shanghai) writes a time: 2026/12/3 22:07:25."""
    t = datetime.fromisoformat(iso).astimezone(SHANGHAI)
    return f"{t.year}/{t.month}/{t.day} {t.hour:02d}:{t.minute:02d}:{t.second:02d}"


async def _no_overflow(page: Any) -> None:
    width = await page.evaluate("document.scrollingElement.scrollWidth")
    assert width <= 390, f"the page is {width}px wide on a 390px phone"


async def test_my_orders_on_a_phone(tmp_path: Path, redis_url: str,
                                    redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "my_orders_phone") as kit:
        world = await _seed(kit)
        buyer: Account = world["buyer"]
        listed = await kit.rest.call("GET", "/api/orders?mine=1", buyer.token)
        orders = {item["id"]: item for item in listed["items"]}

        page = await kit.page(buyer, "/")
        await kit.nav(page, "/orders")
        await page.wait_for_selector("body[data-ready='1']")
        await page.locator(".pickup-qr:not([hidden])").wait_for()

        # Waiting for pickup: code as text and QR, where and when, gift, progress so far.
        waiting = page.locator(f"#orders .order[data-id='{world['waiting']}']")
        item = orders[world["waiting"]]
        assert await waiting.locator(".code").text_content() == item["pickup_code"]
        assert await waiting.locator(".pickup-qr").evaluate(
            "img => img.complete && img.naturalWidth > 0")
        assert await waiting.locator(".pickup-point").text_content() == POINT
        assert await waiting.locator(".point-address").text_content() == ADDRESS
        assert HOURS in (await waiting.locator(".point-hours").text_content() or "")
        assert await waiting.locator(".badge.gift").text_content() == "含赠品"
        assert "¥198.00" in (await waiting.locator(".price").text_content() or "")
        steps = waiting.locator(".timeline li")
        assert await steps.evaluate_all("ls => ls.map(l => [l.dataset.step, l.className])") == [
            ["paid", "done"], ["ready_for_pickup", "done"], ["picked_up", "todo"]]
        assert await steps.nth(0).locator("time").text_content() == _local(item["paid_at"])
        assert await steps.nth(1).locator("time").text_content() == _local(item["ready_at"])

        # Collected: the whole line done, no code any more, the survey offered.
        collected = page.locator(f"#orders .order[data-id='{world['collected']}']")
        assert await collected.locator(".timeline li.done").count() == 3
        assert await collected.locator(".pickup-qr").count() == 0
        # Refunded: said so, with the amount, and the line ends there.
        refunded = page.locator(f"#orders .order[data-id='{world['refunded']}']")
        assert await refunded.locator(".order-status").text_content() == "已退款"
        assert "已退款 ¥99.00" in (await refunded.locator(".refund-state").text_content() or "")
        assert await refunded.locator(".timeline li").evaluate_all(
            "ls => ls.map(l => l.dataset.step)") == ["paid", "refunded"]

        await kit.shot(page, "my_orders")
        await _no_overflow(page)
        assert await kit.axe(page, "my_orders") == []

        # The survey from the collected order's link: 9 points and a word, then thanks.
        await collected.locator("a.nps-link").click()
        await page.wait_for_selector("body[data-ready='1']")
        assert page.url.endswith(f"/nps/{world['collected']}")
        assert await kit.axe(page, "nps") == []
        await _no_overflow(page)
        await page.locator("#scores label", has_text="9").first.click()
        await page.fill("#nps-comment", "枇杷很甜,门卫室取货很方便")
        await page.click("#nps-form button[type=submit]")
        await page.locator("#nps-result", has_text="谢谢").wait_for()
        await kit.shot(page, "nps_answered")
        pending = await kit.rest.call("GET", "/api/nps/pending", buyer.token)
        assert world["collected"] not in pending["order_ids"]
        await page.goto(f"/nps/{world['collected']}")
        await page.locator("#nps-result", has_text="已经评价过").wait_for()
        await kit.nav(page, "/orders")
        await page.wait_for_selector("body[data-ready='1']")
        assert await page.locator("a.nps-link").count() == 0
        assert kit.errors == []
