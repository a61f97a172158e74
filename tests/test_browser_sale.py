"""Flash sale in real Chromium: the host opens a 3-unit sale and a group-buy from the console,
three neighbours buy (hold → payment countdown → pay → pickup code), the fourth is told 已售罄,
and the community's group-buy bar moves on every screen."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from tests.browser_support import Kit, browser_kit

COMMUNITY = "阳光花园"
PICKUP = "3号楼快递柜旁"


async def _setup(kit: Kit) -> tuple[int, dict[str, Any]]:
    rest = kit.rest
    host = await rest.account("laozhang", "host", "老张")
    buyers = [await rest.account(name, "viewer", label) for name, label in
              (("liayi", "李阿姨"), ("wangshu", "王叔"), ("chenjie", "陈姐"), ("zhaoge", "赵哥"))]
    community = await rest.call("POST", "/api/communities", rest.admin_token, json={"name": COMMUNITY})
    for buyer in buyers:
        await rest.call("POST", f"/api/communities/{community['id']}/members", rest.admin_token,
                        json={"user_id": buyer.id})
    await rest.call("POST", f"/api/communities/{community['id']}/pickup-points", rest.admin_token,
                    json={"name": PICKUP, "address": "阳光花园3号楼"})
    session = await rest.call("POST", "/api/sessions", host.token, json={"title": "枇杷秒杀"})
    return int(session["id"]), {"host": host, "buyers": buyers}


async def test_flash_sale_three_buy_fourth_sees_sold_out(tmp_path: Path, redis_url: str,
                                                         redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "flow3_flash_sale") as kit:
        sid, people = await _setup(kit)
        host = await kit.page(people["host"], f"/host/{sid}")
        viewers = [await kit.page(b, f"/live/{sid}") for b in people["buyers"]]
        for page in viewers:
            await page.wait_for_function("() => window.linliLive && window.linliLive.conn.socket.connected")

        # The host adds the product and opens a 3-unit sale for the community from the console.
        await host.click("#add-product summary")
        await host.fill("#product-name", "白玉枇杷 2斤装")
        await host.fill("#product-price", "39.90")
        await host.click("#product-form button[type=submit]")
        await host.locator("#products li", has_text="白玉枇杷").wait_for()
        await host.click("#tab-sales")
        await host.select_option("#sale-product", label="白玉枇杷 2斤装 ¥39.90")
        await host.fill("#sale-stock", "3")
        await host.fill("#sale-price", "29.90")
        await host.fill("#sale-limit", "1")
        await host.click("#sale-more summary")
        await host.select_option("#sale-communities", label=COMMUNITY)
        await host.click("#open-sale")
        sale_row = host.locator("#sales li").first
        await sale_row.wait_for()
        # ...and a group-buy for 阳光花园: 4 neighbours.
        await sale_row.locator(".group-more summary").click()
        await sale_row.locator(".group-threshold").fill("4")
        await sale_row.locator(".group-form button[type=submit]").click()
        await kit.shot(host, "host_opened_sale")

        for page in viewers:
            # The floating card offers the sale; its button opens the buy sheet.
            await page.locator("#open-buy", has_text="立即抢购").click(timeout=20_000)
            await page.locator("#sale").wait_for(timeout=20_000)
            await page.locator("#sale-remaining", has_text="3").wait_for(timeout=20_000)
            await page.locator("#group-list .group", has_text=f"{COMMUNITY} 0/4").wait_for(timeout=20_000)
        assert await viewers[0].locator("#sale-price").text_content() == "¥29.90"
        await kit.shot(viewers[0], "viewer_sees_sale")

        # Three neighbours hold a unit each: the payment countdown is visible.
        for page in viewers[:3]:
            await page.click("#buy")
            await page.locator("#hold").wait_for(timeout=20_000)
            assert re.fullmatch(r"\d+:\d\d", await page.locator("#hold-countdown").text_content() or "")
        await kit.shot(viewers[0], "hold_with_countdown")

        # The fourth is refused while the three holds are alive.
        fourth = viewers[3]
        await fourth.click("#buy")
        await fourth.locator("#sale-error", has_text="已售罄").wait_for(timeout=20_000)
        await fourth.locator("#buy", has_text="已售罄").wait_for()
        assert await fourth.locator("#buy").is_disabled()
        assert await fourth.locator("#hold").is_hidden()
        await kit.shot(fourth, "fourth_sold_out")

        # They pay: each gets an order with its pickup point and a 6-digit pickup code.
        codes = []
        for page in viewers[:3]:
            await page.click("#pay")
            await page.locator("#confirmation").wait_for(timeout=20_000)
            await page.locator("#pickup-point", has_text=PICKUP).wait_for(timeout=20_000)
            code = await page.locator("#pickup-code").text_content() or ""
            assert re.fullmatch(r"\d{6}", code), code
            codes.append(code)
        await kit.shot(viewers[0], "paid_confirmation")

        # The group-buy bar moved to 3/4 for everyone, and says one more neighbour is needed.
        for page in viewers:
            bar = page.locator("#group-list .group", has_text=f"{COMMUNITY} 3/4")
            await bar.wait_for(timeout=20_000)
            assert "再有1位成团" in (await bar.text_content() or "")
            assert await bar.locator("progress").get_attribute("value") == "3"
        await fourth.locator("#sale-remaining", has_text="0").wait_for(timeout=20_000)
        await kit.shot(fourth, "group_bar_moved")

        sale_id = int(await host.locator("#sales li").first.get_attribute("data-sale-id") or 0)
        sale = await kit.rest.call("GET", f"/api/sales/{sale_id}")
        assert (sale["initial"], sale["remaining"], sale["held"], sale["sold"]) == (3, 0, 0, 3)

        # 王叔 changes his mind before pickup: his orders page says to ask the staff, the host
        # refunds it, and the unit returns to the sale: the fourth neighbour may buy again.
        await viewers[1].goto("/orders")
        order_row = viewers[1].locator("#orders .order").first
        await order_row.locator(".refund-hint").wait_for(timeout=20_000)
        order_id = int(await order_row.get_attribute("data-id") or 0)
        await kit.rest.call("POST", f"/api/orders/{order_id}/refund", people["host"].token,
                            json={"reason": "买家改主意"})
        await viewers[1].reload()
        await viewers[1].locator("#orders .order .order-status", has_text="已退款").wait_for(timeout=20_000)
        await kit.shot(viewers[1], "refunded")
        await fourth.locator("#sale-remaining", has_text="1").wait_for(timeout=20_000)
        await fourth.locator("#buy", has_text="立即抢购").wait_for(timeout=20_000)
        assert await fourth.locator("#buy").is_enabled()

        # The host closes the sale: every room shows it ended.
        await host.locator("#sales li").first.locator("button.close-sale").click()
        await fourth.locator("#buy", has_text="已结束").wait_for(timeout=20_000)

        # The buyer's orders page shows the order, its pickup point and code.
        await viewers[0].goto("/orders")
        order = viewers[0].locator("#orders .order").first
        await order.wait_for(timeout=20_000)
        await order.locator(".code", has_text=codes[0]).wait_for()
        await order.locator(".pickup-point", has_text=PICKUP).wait_for(timeout=20_000)
        await order.locator(".order-product", has_text="白玉枇杷").wait_for(timeout=20_000)
        await kit.shot(viewers[0], "orders_page")
        assert kit.errors == [], kit.errors


async def test_several_open_sales_show_as_tabs_with_their_own_groups(
        tmp_path: Path, redis_url: str, redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "sale_tabs") as kit:
        sid, people = await _setup(kit)
        host = people["host"]
        loquat = await kit.rest.call("POST", "/api/products", host.token,
                                     json={"name": "白沙枇杷", "price_fen": 6800})
        oil = await kit.rest.call("POST", "/api/products", host.token,
                                  json={"name": "初榨橄榄油", "price_fen": 12800})
        communities = await kit.rest.call("GET", "/api/communities")
        community_id = next(c["id"] for c in communities if c["name"] == COMMUNITY)
        first = await kit.rest.call("POST", f"/api/sessions/{sid}/sales", host.token, json={
            "product_id": loquat["id"], "stock": 50, "price_fen": 5800, "per_buyer_limit": 2,
            "community_ids": [community_id]})
        await kit.rest.call("POST", f"/api/sales/{first['id']}/group-buys", host.token, json={
            "community_id": community_id, "threshold": 40, "deadline": "2099-01-01T00:00:00Z",
            "group_price_fen": 4800})
        await kit.rest.call("POST", f"/api/sessions/{sid}/sales", host.token, json={
            "product_id": oil["id"], "stock": 500, "price_fen": 9900, "per_buyer_limit": 1})

        page = await kit.page(people["buyers"][0], f"/live/{sid}")
        tabs = page.locator("#sale-tabs button")
        await tabs.nth(1).wait_for(timeout=20_000)
        # The newest sale is shown; the loquats' group-buy belongs to the other one.
        await page.locator("#sale-product", has_text="初榨橄榄油").wait_for(state="attached")
        assert await page.locator("#groups").is_hidden()
        await tabs.filter(has_text="白沙枇杷").click()
        await page.locator("#sale-product", has_text="白沙枇杷").wait_for()
        await page.locator("#group-list .group", has_text=f"{COMMUNITY} 0/40").wait_for(timeout=20_000)
        assert await page.locator("#sale-price").text_content() == "¥58.00"
        await kit.shot(page, "two_sales")
        assert kit.errors == [], kit.errors


def _tiny_png() -> bytes:
    """A real 2×2 PNG (uploads are checked by content, not by name)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\xc0\x40\x30" * 2 for _ in range(2))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


async def test_after_sales_claim_with_photo_from_orders_page(
        tmp_path: Path, redis_url: str, redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "after_sales") as kit:
        sid, people = await _setup(kit)
        host, buyer = people["host"], people["buyers"][0]
        product = await kit.rest.call("POST", "/api/products", host.token,
                                      json={"name": "白玉枇杷", "price_fen": 3990})
        sale = await kit.rest.call("POST", f"/api/sessions/{sid}/sales", host.token, json={
            "product_id": product["id"], "stock": 10, "price_fen": 2990, "per_buyer_limit": 2})
        hold = await kit.rest.call("POST", f"/api/sales/{sale['id']}/holds", buyer.token,
                                   json={"qty": 1}, headers={"Idempotency-Key": "claim-test-1"})
        paid = await kit.rest.call("POST", f"/api/holds/{hold['hold_id']}/pay", buyer.token)
        order = await kit.rest.call("GET", f"/api/orders/{paid['order_id']}", buyer.token)
        await kit.rest.call("POST", f"/api/orders/{order['id']}/ready", host.token)
        await kit.rest.call("POST", f"/api/orders/{order['id']}/picked-up", host.token,
                            json={"pickup_code": order["pickup_code"]})

        page = await kit.page(buyer, "/orders")
        row = page.locator("#orders .order").first
        await row.locator(".order-status", has_text="已取货").wait_for(timeout=20_000)
        await row.locator("button.claim-open").click()
        form = row.locator("form.claim-form")
        await form.locator(".claim-reason").select_option("spoiled")
        await form.locator(".claim-text").fill("有两个枇杷坏了")
        await form.locator(".claim-photo").set_input_files(
            files=[{"name": "bad.png", "mimeType": "image/png", "buffer": _tiny_png()}])
        await form.locator("button[type=submit]").click()
        status = form.locator(".claim-status")
        await status.filter(has_text="售后 #").wait_for(timeout=20_000)
        await kit.shot(page, "claim_filed")
        claims = await kit.rest.call("GET", "/api/claims/mine", buyer.token)
        items = claims if isinstance(claims, list) else claims.get("items", claims.get("claims", []))
        assert any(c["order_id"] == order["id"] and c["photos"] for c in items), claims
        # After a reload the order still shows its claim (no second "售后" button to trap the
        # buyer with claim_exists); while it waits, a photo can be added to it.
        await page.reload()
        line = page.locator("#orders .order").first.locator(".claim-line")
        await line.filter(has_text="售后 #").wait_for(timeout=20_000)
        assert await page.locator("#orders .order").first.locator("button.claim-open").count() == 0
        (claim,) = [c for c in items if c["order_id"] == order["id"]]
        if claim["status"] == "pending":
            more = page.locator("#orders .order").first.locator("form.claim-photo-form")
            await more.locator(".claim-more-photo").set_input_files(
                files=[{"name": "more.png", "mimeType": "image/png", "buffer": _tiny_png()}])
            await more.locator("button[type=submit]").click()
            await line.locator(".claim-photo-count").filter(has_text="2").wait_for(timeout=20_000)
            again = await kit.rest.call("GET", f"/api/claims/{claim['id']}", buyer.token)
            assert len(again["photos"]) == 2, again
        assert kit.errors == [], kit.errors
