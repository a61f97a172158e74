"""品鉴官 in real Chromium on a phone (zh-CN, Asia/Shanghai), against the real server:

1. 老张 opens a programme in his back office; 李阿姨 applies on the programme page; 老张 selects
   her; in his live room her comment carries the 品鉴官 badge, for her and for 王叔.
2. 老张 sets aside samples of a batch and sends one to 李阿姨; she finds it in My orders, writes
   a 晒单 with a photo; the assistant approves it; it shows in the batch's trace page, and she
   earns the points once (a retried approval and a retried post change nothing).
3. A 晒单 from a paid, picked-up order earns points; the order's refund (an approved claim)
   takes them back, and her programme page shows the balance.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.browser_support import Account, Kit, browser_kit
from tests.test_browser_sale import _tiny_png

pytestmark = [pytest.mark.slow]
PRICE = 3000


async def _joined(page: Any) -> None:
    await page.wait_for_function("() => window.linliLive && window.linliLive.conn.socket.connected")


async def _no_overflow(page: Any) -> None:
    width = await page.evaluate("document.scrollingElement.scrollWidth")
    assert width <= 390, f"the page is {width}px wide on a 390px phone"


async def _farm(kit: Kit) -> dict[str, Any]:
    rest = kit.rest
    host = await rest.account("laozhang", "host", "老张")
    liayi = await rest.account("liayi", "viewer", "李阿姨")
    assistant = await rest.account("xiaowang", "assistant", "小王")
    session = await rest.call("POST", "/api/sessions", host.token, json={"title": "老张的枇杷园"})
    code = "B-" + uuid.uuid4().hex[:8]
    batch = await rest.call("POST", "/api/batches", host.token, json={
        "code": code, "farm": "老张合作农场", "plot": "3号坡",
        "harvested_at": "2026-05-01T06:00:00+00:00"})
    product = await rest.call("POST", "/api/products", host.token, json={
        "name": "白沙枇杷", "price_fen": PRICE, "batch_id": batch["id"]})
    return {"host": host, "liayi": liayi, "assistant": assistant, "session": int(session["id"]),
            "code": code, "batch": batch["id"], "product": product["id"]}


async def _member_by_rest(kit: Kit, world: dict[str, Any]) -> None:
    rest, host, liayi = kit.rest, world["host"], world["liayi"]
    programme = await rest.call("POST", "/api/koc/programmes", host.token, json={
        "title": "枇杷品鉴官", "quota": 3})
    applied = await rest.call("POST", f"/api/koc/programmes/{programme['id']}/apply", liayi.token,
                              json={})
    await rest.call("POST", f"/api/koc/applications/{applied['id']}/select", host.token)


async def _points(kit: Kit, who: Account) -> int:
    me = await kit.rest.call("GET", "/api/points/me", who.token)
    return int(me["balance"])


async def test_apply_selected_badge_in_live_comments(tmp_path: Path, redis_url: str,
                                                     redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "koc_badge") as kit:
        world = await _farm(kit)
        host: Account = world["host"]
        liayi: Account = world["liayi"]
        wangshu = await kit.rest.account("wangshu", "viewer", "王叔")

        # 老张 opens the programme in his back office.
        admin = await kit.page(host, "/koc/admin")
        await admin.locator("#owner-only").wait_for()
        await admin.fill("#p-title", "枇杷品鉴官")
        await admin.fill("#p-rules", "每月至少晒单一次")
        await admin.fill("#p-quota", "2")
        await admin.click("#programme-form button[type=submit]")
        await admin.locator("#message", has_text="计划已开设").wait_for()
        await kit.shot(admin, "host_opened_programme")
        assert await kit.axe(admin, "koc_admin") == []

        # 李阿姨 reads the rules and applies.
        page = await kit.page(liayi, "/koc")
        card = page.locator(".koc-programme", has_text="枇杷品鉴官")
        await card.locator(".koc-rules", has_text="每月至少晒单一次").wait_for()
        await card.locator("button.koc-apply").click()
        await card.locator(".koc-status", has_text="已申请").wait_for()
        await _no_overflow(page)
        await kit.shot(page, "liayi_applied")
        assert await kit.axe(page, "koc") == []

        # 老张 selects her: the seat is taken and she is a member.
        await admin.reload()
        row = admin.locator(".koc-app", has_text="李阿姨")
        await row.locator("button.koc-select").click()
        await admin.locator(".koc-app", has_text="李阿姨").locator(
            ".koc-app-status", has_text="品鉴官").wait_for()
        await admin.locator(".koc-programme", has_text="已选 1 / 名额 2").wait_for()
        await kit.shot(admin, "host_selected_liayi")
        await page.reload()
        await page.locator(".koc-status", has_text="你已是品鉴官").wait_for()
        # In English the page speaks English only, apart from what the host wrote.
        await page.evaluate("localStorage.setItem('linli.lang', 'en')")
        await page.reload()
        await page.locator(".koc-status", has_text="You are a taster").wait_for()
        text = str(await page.locator("main").inner_text())
        for content in ("枇杷品鉴官", "每月至少晒单一次", "品鉴官"):
            text = text.replace(content, "")
        assert not re.search(r"[\u3400-\u9fff]", text), text
        await kit.shot(page, "koc_in_english")
        await page.evaluate("localStorage.setItem('linli.lang', 'zh')")

        # In 老张's live room her comment carries the badge, for everyone; 王叔's does not.
        room = await kit.page(liayi, f"/live/{world['session']}")
        watcher = await kit.page(wangshu, f"/live/{world['session']}")
        await _joined(room)
        await _joined(watcher)
        await room.fill("#comment-input", "今年的枇杷好甜")
        await room.click("#comment-form button[type=submit]")
        for viewer in (room, watcher):
            comment = viewer.locator("#comment-list .comment", has_text="今年的枇杷好甜")
            await comment.wait_for(timeout=20_000)
            assert await comment.locator(".comment-user").text_content() == "李阿姨"
            assert await comment.locator(".koc-badge").text_content() == "品鉴官"
        await watcher.fill("#comment-input", "我也想尝尝")
        await watcher.click("#comment-form button[type=submit]")
        theirs = room.locator("#comment-list .comment", has_text="我也想尝尝")
        await theirs.wait_for(timeout=20_000)
        assert await theirs.locator(".koc-badge").count() == 0
        await kit.shot(watcher, "badge_in_live_comments")
        assert kit.errors == []


async def test_sample_post_approved_in_trace_points_once(tmp_path: Path, redis_url: str,
                                                         redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "koc_sample_post") as kit:
        world = await _farm(kit)
        host: Account = world["host"]
        liayi: Account = world["liayi"]
        assistant: Account = world["assistant"]
        await _member_by_rest(kit, world)

        # 老张 sets aside 3 samples of the batch and sends one to 李阿姨.
        admin = await kit.page(host, "/koc/admin")
        await admin.locator("#owner-only").wait_for()
        await admin.fill("#s-units", "3")
        await admin.click("#stock-form button[type=submit]")
        await admin.locator("#stock-line", has_text="已寄出 0 / 预留 3").wait_for()
        await admin.locator(".koc-app", has_text="李阿姨").locator("button.koc-send").click()
        await admin.locator("#message", has_text="已给 李阿姨 寄出试用装").wait_for()
        await admin.locator("#stock-line", has_text="已寄出 1 / 预留 3").wait_for()
        await kit.shot(admin, "sample_sent")

        # 李阿姨 finds the zero-price sample in her orders and writes the 晒单.
        orders = await kit.page(liayi, "/orders")
        sample = orders.locator("#samples .sample", has_text="白沙枇杷")
        await sample.locator(".price", has_text="0.00").wait_for()
        await sample.locator(".sample-due", has_text="前晒单").wait_for()
        await kit.shot(orders, "sample_in_my_orders")
        await sample.locator("a.ugc-link").click()
        await orders.locator("#ugc-form").wait_for()
        await orders.locator("#ugc-photos").set_input_files(
            files=[{"name": "loquat.png", "mimeType": "image/png", "buffer": _tiny_png()}])
        await orders.fill("#ugc-text", "试吃了,汁水很多,推荐给邻居")
        await orders.click("#ugc-form button[type=submit]")
        await orders.locator("#ugc-result", has_text="已提交").wait_for()
        await _no_overflow(orders)
        await kit.shot(orders, "post_sent")
        assert await kit.axe(orders, "ugc_new") == []
        # A retried post of the same sample is refused: one 晒单 per sample.
        mine = await kit.rest.call("GET", "/api/koc/me", liayi.token)
        post_id = mine["posts"][0]["id"]
        await kit.rest.call("POST", "/api/ugc/posts", liayi.token, expect=409, json={
            "sample_id": mine["samples"][0]["id"], "text": "再来一次", "photos": [1]})

        # The assistant approves it on her phone.
        moderation = await kit.page(assistant, "/ugc/moderate")
        item = moderation.locator(f".ugc-post[data-id='{post_id}']")
        await item.locator(".ugc-text", has_text="汁水很多").wait_for()
        # The photo is private until approval: the assistant's page fetches it with her token.
        photo = f".ugc-post[data-id='{post_id}'] .ugc-photos img"
        await moderation.wait_for_function(
            f"() => {{ const img = document.querySelector(\"{photo}\");"
            " return img && img.complete && img.naturalWidth > 0; }")
        await kit.shot(moderation, "moderation_queue")
        assert await kit.axe(moderation, "ugc_moderate") == []
        await item.locator("button.ugc-approve").click()
        await moderation.locator("#message", has_text="已通过").wait_for()
        assert await _points(kit, liayi) == 20
        # Approving again (a retried request) awards nothing more.
        await kit.rest.call("POST", f"/api/ugc/posts/{post_id}/approve", assistant.token,
                            expect=409)
        assert await _points(kit, liayi) == 20

        # The 晒单 is in the batch's trust archive, with her badge and the photo, for anyone.
        trace = await kit.page(None, f"/trace/{world['code']}")
        post = trace.locator(".ugc-post", has_text="汁水很多")
        await post.wait_for()
        assert await post.locator(".koc-badge").text_content() == "品鉴官"
        assert "李" in (await post.locator(".ugc-author").text_content() or "")
        assert await post.locator(".ugc-photos img").evaluate("img => img.complete && img.naturalWidth > 0")
        await _no_overflow(trace)
        await kit.shot(trace, "post_in_trace")

        # And on the product's card in 老张's live room, in its trust sheet.
        await kit.rest.call("POST", f"/api/sessions/{world['session']}/pin", host.token,
                            json={"product_id": world["product"]})
        room = await kit.page(None, f"/live/{world['session']}")
        await room.locator("#pin-card #open-trust").click(timeout=20_000)
        sheet = room.locator("#trust-sheet")
        await sheet.locator(".ugc-post", has_text="汁水很多").wait_for(timeout=20_000)
        assert await sheet.locator(".ugc-post .koc-badge").text_content() == "品鉴官"
        await kit.shot(room, "post_in_trust_sheet")

        # Her public page shows the post and the badge, nothing private.
        profile = await kit.page(None, f"/u/{liayi.id}")
        await profile.locator(".ugc-post", has_text="汁水很多").wait_for()
        assert await profile.locator("#name").text_content() == "李**"
        await kit.shot(profile, "public_profile")
        assert await kit.axe(profile, "profile") == []
        assert kit.errors == []


async def test_refund_takes_the_points_back(tmp_path: Path, redis_url: str,
                                            redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "koc_refund") as kit:
        world = await _farm(kit)
        rest = kit.rest
        host: Account = world["host"]
        liayi: Account = world["liayi"]
        assistant: Account = world["assistant"]
        await rest.call("PUT", f"/api/products/{world['product']}/claim-policy", host.token, json={
            "auto_approve_max_fen": 0, "require_photo": False})
        sale = await rest.call("POST", f"/api/sessions/{world['session']}/sales", host.token, json={
            "product_id": world["product"], "stock": 10, "price_fen": PRICE, "per_buyer_limit": 5})
        held = await rest.call("POST", f"/api/sales/{sale['id']}/holds", liayi.token,
                               json={"qty": 1}, headers={"Idempotency-Key": uuid.uuid4().hex})
        order_id = int((await rest.call("POST", f"/api/holds/{held['hold_id']}/pay",
                                        liayi.token))["order_id"])
        order = await rest.call("GET", f"/api/orders/{order_id}", liayi.token)
        await rest.call("POST", f"/api/orders/{order_id}/ready", host.token)
        await rest.call("POST", f"/api/orders/{order_id}/picked-up", host.token,
                        json={"pickup_code": order["pickup_code"]})

        # 李阿姨 writes the 晒单 from her picked-up order.
        page = await kit.page(liayi, "/orders")
        row = page.locator(f"#orders .order[data-id='{order_id}']")
        await row.locator("a.ugc-link").click()
        await page.locator("#ugc-photos").set_input_files(
            files=[{"name": "loquat.png", "mimeType": "image/png", "buffer": _tiny_png()}])
        await page.fill("#ugc-text", "个头大,很新鲜")
        await page.click("#ugc-form button[type=submit]")
        await page.locator("#ugc-result", has_text="已提交").wait_for()
        post_id = (await rest.call("GET", "/api/koc/me", liayi.token))["posts"][0]["id"]
        await rest.call("POST", f"/api/ugc/posts/{post_id}/approve", assistant.token)
        await page.goto("/koc")
        await page.locator("#points-balance", has_text="20 分").wait_for()
        await kit.shot(page, "points_earned")

        # The order is refunded through an approved claim: the points go back, once.
        claim = await rest.call("POST", "/api/claims", liayi.token, json={
            "order_id": order_id, "reason": "spoiled", "description": "有两个坏了"})
        await rest.call("POST", f"/api/claims/{claim['id']}/approve", assistant.token, json={})
        await page.reload()
        await page.locator("#points-balance", has_text=re.compile(r"^0 分$")).wait_for()
        await kit.shot(page, "points_reversed")
        me = await rest.call("GET", "/api/points/me", liayi.token)
        assert sorted(r["kind"] for r in me["rows"]) == ["earn", "reverse"]
        assert kit.errors == []
