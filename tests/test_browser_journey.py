"""李阿姨's whole evening on a phone (390×844, zh-CN, Asia/Shanghai), from the link in her 小区's
WeChat group to the pickup code, with no help and no account to begin with: sign up from the
invite, land in her community, open the live room, see her community's price and the gift, take
two to the pickup point she chooses, pay, hear (in the page) that her order is ready when the
shop marks it so, and read her pickup code. A screenshot of every step is kept."""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis

from tests.browser_support import browser_kit

SUNNY = "阳光花园"
LOCKER = "3号楼快递柜"
GIFT = "前30名送桑葚一盒"


async def test_from_the_group_link_to_the_pickup_code(tmp_path: Path, redis_url: str,
                                                      redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "journey_link_to_code") as kit:
        rest = kit.rest
        host = await rest.account("laozhang", "host", "老张")
        sunny = await rest.call("POST", "/api/communities", host.token, json={"name": SUNNY})
        await rest.call("POST", f"/api/communities/{sunny['id']}/pickup-points", host.token,
                        json={"name": "南门驿站", "address": "阳光花园南门"})
        locker = await rest.call("POST", f"/api/communities/{sunny['id']}/pickup-points",
                                 host.token, json={"name": LOCKER, "address": "3号楼一层"})
        session = await rest.call("POST", "/api/sessions", host.token, json={"title": "老张的枇杷园"})
        sid = int(session["id"])
        product = await rest.call("POST", "/api/products", host.token,
                                  json={"name": "白玉枇杷 2斤装", "price_fen": 6800})
        sale = await rest.call("POST", f"/api/sessions/{sid}/sales", host.token, json={
            "product_id": product["id"], "stock": 50, "price_fen": 6800, "per_buyer_limit": 3,
            "community_ids": [sunny["id"]], "community_price_fen": 5800,
            "gift_first_n": 30, "gift_text": GIFT})
        await rest.call("POST", f"/api/sessions/{sid}/pin", host.token,
                        json={"product_id": product["id"]})
        invite = await rest.call("POST", f"/api/communities/{sunny['id']}/invites", host.token,
                                 json={"max_uses": 100})

        # 1. The link from the group chat, opened with no account.
        page = await kit.page(path=f"/join/{invite['code']}", label="liayi")
        await page.locator("#invite-community", has_text=SUNNY).wait_for(timeout=20_000)
        await kit.shot(page, "invite_link")
        await page.fill("#su-display", "李阿姨")
        await page.fill("#su-username", "li_ayi")
        await page.fill("#su-password", "枇杷熟了-sunny-garden")
        await page.click("#signup-submit")
        await page.locator("#flash", has_text=f"已加入{SUNNY}").wait_for(timeout=20_000)
        await kit.shot(page, "signed_up_and_joined")

        # 2. The live room: her community's price, the list price struck through, the gift.
        await page.goto(f"/live/{sid}")
        card = page.locator("#pin-card")
        await card.locator("#pin-price", has_text="¥58.00").wait_for(timeout=20_000)
        assert await card.locator("s#pin-list").text_content() == "¥68.00"
        assert await card.locator("#pin-gift").text_content() == f"{GIFT} · 剩30份"
        await page.wait_for_function("() => window.linliNotices && window.linliNotices.connected()",
                                     timeout=20_000)
        await kit.shot(page, "live_room_card")

        # 3. Two, to the locker she picks; the total before she pays; then paid.
        await page.locator("#open-buy").click()
        sheet = page.locator("#buy-sheet")
        await sheet.locator("#pickup-select option", has_text=LOCKER).wait_for(state="attached")
        await sheet.locator("#qty-plus").click()
        await sheet.locator("#pickup-select").select_option(label=f"{LOCKER} · 3号楼一层")
        assert await sheet.locator("#sale-total").text_content() == "¥116.00"
        await kit.shot(page, "buy_sheet")
        await sheet.locator("#buy").click()
        await sheet.locator("#pay").wait_for(timeout=20_000)
        await kit.shot(page, "hold_to_pay")
        await sheet.locator("#pay").click()
        done = sheet.locator("#confirmation")
        await done.wait_for(timeout=20_000)
        assert await done.locator("#order-amount").text_content() == "¥116.00"
        assert "含赠品" in (await done.locator("#order-gift").text_content() or "")
        await kit.shot(page, "paid")
        await sheet.locator("button[data-close]").first.click()

        # 4. The shop marks it ready on pickup day; she hears it in the page she has open.
        token = await page.evaluate("localStorage.getItem('linli.token')")
        (order,) = (await rest.call("GET", "/api/orders", token))["items"]
        assert (order["amount_fen"], order["qty"], order["pickup_point_id"]) == (
            11600, 2, locker["id"])
        assert order["sale_id"] == sale["id"]
        marked = await rest.call("POST", "/api/orders/ready", host.token,
                                 json={"order_ids": [order["id"]]})
        assert marked["ready"] == [order["id"]], marked
        toast = page.locator(".notice-toast[data-kind='order_ready']")
        await toast.wait_for(timeout=10_000)
        await kit.shot(page, "order_ready_notice")

        # 5. Her orders: the pickup code as text and as a QR code, and where to collect it.
        await page.goto("/orders")
        mine = page.locator(f"#orders .order[data-id='{order['id']}']")
        await mine.locator(".pickup-qr:not([hidden])").wait_for(timeout=20_000)
        code = await mine.locator(".code").text_content()
        detail = await rest.call("GET", f"/api/orders/{order['id']}", token)
        assert code == detail["pickup_code"] and code
        assert await mine.locator(".pickup-qr").evaluate("img => img.complete && img.naturalWidth > 0")
        assert await mine.locator(".pickup-point").text_content() == LOCKER
        await kit.shot(page, "pickup_code")
        assert await kit.axe(page, "orders") == []
        assert kit.errors == [], kit.errors
