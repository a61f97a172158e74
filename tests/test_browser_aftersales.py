"""After-sales and reviews in real Chromium (zh-CN, Asia/Shanghai): 李阿姨 files a claim with a
photo from her orders; the assistant works the queue on a phone, looks at the photo, approves
with 坏一赔十; 李阿姨's order then shows the refund and the compensation paid, which is what the
payment provider transferred. 老张 answers a review in public; anyone sees the reply."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from commerce.payments import SimulatedProvider
from tests.browser_support import Account, Kit, browser_kit
from tests.test_browser_sale import _tiny_png

PRICE = 3000
POLICY = {"full_refund_without_return": True, "multiplier": 10, "max_days_after_pickup": 2,
          "auto_approve_max_fen": 0, "require_photo": True, "response_hours": 2}


async def _seed(kit: Kit) -> dict[str, Any]:
    rest = kit.rest
    host = await rest.account("laozhang", "host", "老张")
    buyer = await rest.account("liayi", "viewer", "李阿姨")
    assistant = await rest.account("xiaowang", "assistant", "小王")
    session = await rest.call("POST", "/api/sessions", host.token, json={"title": "枇杷专场"})
    code = "B-" + uuid.uuid4().hex[:8]
    batch = await rest.call("POST", "/api/batches", host.token, json={
        "code": code, "farm": "老张合作农场", "plot": "3号坡",
        "harvested_at": "2026-05-01T06:00:00+00:00"})
    product = await rest.call("POST", "/api/products", host.token, json={
        "name": "白沙枇杷", "price_fen": PRICE, "batch_id": batch["id"]})
    await rest.call("PUT", f"/api/products/{product['id']}/claim-policy", host.token, json=POLICY)
    sale = await rest.call("POST", f"/api/sessions/{session['id']}/sales", host.token, json={
        "product_id": product["id"], "stock": 10, "price_fen": PRICE, "per_buyer_limit": 5})

    async def picked_up() -> int:
        held = await rest.call("POST", f"/api/sales/{sale['id']}/holds", buyer.token,
                               json={"qty": 1}, headers={"Idempotency-Key": uuid.uuid4().hex})
        order_id = int((await rest.call("POST", f"/api/holds/{held['hold_id']}/pay",
                                        buyer.token))["order_id"])
        order = await rest.call("GET", f"/api/orders/{order_id}", buyer.token)
        await rest.call("POST", f"/api/orders/{order_id}/ready", host.token)
        await rest.call("POST", f"/api/orders/{order_id}/picked-up", host.token,
                        json={"pickup_code": order["pickup_code"]})
        return order_id

    claimed, reviewed = await picked_up(), await picked_up()
    review = await rest.call("POST", "/api/reviews", buyer.token, json={
        "order_id": reviewed, "stars": 3, "text": "有一个有点软"})
    await rest.call("POST", "/api/nps", buyer.token, json={"order_id": reviewed, "score": 9})
    return {"host": host, "buyer": buyer, "assistant": assistant, "claimed": claimed,
            "review": review["id"], "product": product["id"], "batch_code": code,
            "session": session["id"]}


async def _no_overflow(page: Any) -> None:
    width = await page.evaluate("document.scrollingElement.scrollWidth")
    assert width <= 390, f"the page is {width}px wide on a 390px phone"


async def test_claim_photo_queue_approve_and_paid(tmp_path: Path, redis_url: str,
                                                 redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "aftersales") as kit:
        world = await _seed(kit)
        buyer: Account = world["buyer"]
        order_id = world["claimed"]

        # 李阿姨 files the claim with a photo from her orders page.
        page = await kit.page(buyer, "/orders")
        row = page.locator(f"#orders .order[data-id='{order_id}']")
        await row.locator("button.claim-open").click()
        form = row.locator("form.claim-form")
        await form.locator(".claim-reason").select_option("spoiled")
        await form.locator(".claim-text").fill("一箱里有一个坏了")
        await form.locator(".claim-photo").set_input_files(
            files=[{"name": "bad.png", "mimeType": "image/png", "buffer": _tiny_png()}])
        await form.locator("button[type=submit]").click()
        await form.locator(".claim-status", has_text="售后 #").wait_for()

        # The assistant opens the queue on a phone from the top bar.
        staff = await kit.page(world["assistant"], "/")
        await kit.nav(staff, "/claims")
        await staff.wait_for_selector("body[data-ready='1']")
        card = staff.locator("#claims .claim").first
        assert await card.locator(".claim-product").text_content() == "白沙枇杷"
        assert await card.locator(".claim-state").text_content() == "待处理"
        assert await card.locator(".trace-link").get_attribute("href") == \
            f"/trace/{world['batch_code']}"
        assert "×1" in (await card.locator(".claim-who").text_content() or "")
        # The private photo, fetched with the token, opens full size.
        thumb = card.locator(".claim-thumb").first
        await staff.wait_for_function(
            "() => { const i = document.querySelector('.claim-thumb'); "
            "return i && i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0; }")
        await card.locator(".photo-open").first.click()
        assert await staff.locator("#viewer").evaluate("d => d.open")
        assert await staff.locator("#viewer-img").get_attribute("src") == \
            await thumb.get_attribute("src")
        await kit.shot(staff, "claim_photo")
        await staff.locator("#viewer button[type=submit]").click()
        # The payout defaults to the policy's 坏一赔十: ¥30 × 1 × 10.
        assert await card.locator("input.payout").input_value() == "300.00"
        await kit.shot(staff, "claims_queue")
        await _no_overflow(staff)
        assert await kit.axe(staff, "claims_queue") == []
        # Rejecting needs a reason; then approve with the default payout.
        await card.locator("button.reject").click()
        await card.locator(".decision-status", has_text="原因").wait_for()
        await card.locator("button.approve").click()
        done = staff.locator("#claims .claim[data-status='approved']")
        await done.locator(".compensation-line", has_text="已支付").wait_for()
        assert "¥30.00" in (await done.locator(".refund-line").text_content() or "")
        assert "¥270.00" in (await done.locator(".compensation-line").text_content() or "")
        done_id = await done.get_attribute("data-id")
        await kit.shot(staff, "claim_approved")

        # 李阿姨's order shows the decision, the refund and the compensation paid.
        await page.reload()
        await page.wait_for_selector("body[data-ready='1']")
        row = page.locator(f"#orders .order[data-id='{order_id}']")
        refund = row.locator(".claim-refund")
        compensation = row.locator(".claim-compensation")
        assert await refund.text_content() == "退款 ¥30.00 · 已到账"
        assert await compensation.text_content() == "赔付 ¥270.00 · 已到账"
        await kit.shot(page, "order_claim_paid")
        assert await kit.axe(page, "order_claim_paid") == []
        provider = SimulatedProvider("unused", redis_client)
        assert await provider.transferred_total(f"user:{buyer.id}") == 27000

        # 老张 sees the claim on his session on a laptop, with what was paid, but does not judge.
        own = await kit.page(world["host"], "/claims", viewport={"width": 1280, "height": 800})
        await own.locator("#filters label", has_text="已处理").click()
        mine = own.locator(f"#claims .claim[data-id='{done_id}']")
        await mine.locator(".compensation-line", has_text="已支付").wait_for()
        assert await own.locator(".decision").count() == 0
        await kit.shot(own, "claims_host_laptop")
        assert await kit.axe(own, "claims_host_laptop") == []

        # The decided filter keeps it; the pending one is empty now.
        await staff.locator("#filters label", has_text="已处理").click()
        await staff.locator("#claims .claim[data-status='approved']").wait_for()
        await staff.locator("#filters label", has_text="待处理").click()
        await staff.locator("#empty").wait_for(state="visible")
        assert kit.errors == [], kit.errors


async def test_host_replies_to_a_review_in_public(tmp_path: Path, redis_url: str,
                                                  redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "review_reply") as kit:
        world = await _seed(kit)
        host = await kit.page(world["host"], "/", viewport={"width": 1280, "height": 800})
        await kit.nav(host, "/reviews")
        await host.wait_for_selector("body[data-ready='1']")
        # The whole shop's NPS (one promoter), then his product's reviews from his own list.
        await host.locator("#nps-score", has_text="NPS 100").wait_for()
        assert await host.locator("#nps-trend li").count() == 1
        await host.click(f"#mine-links a[href='/reviews?product={world['product']}']")
        await host.wait_for_selector("body[data-ready='1']")
        await host.locator("#reviews .review").first.wait_for()
        review = host.locator(f"#reviews .review[data-id='{world['review']}']")
        assert await review.locator(".review-text").text_content() == "有一个有点软"
        await review.locator(".reply-text").fill("抱歉!下次给您挑硬一点的")
        await review.locator(".reply-form button[type=submit]").click()
        await review.locator(".reply-status", has_text="回复已发布").wait_for()
        await kit.shot(host, "review_replied")
        assert await kit.axe(host, "review_replied") == []

        # Anyone (signed out, on a phone) reads the reply beside the review.
        public = await kit.page(None, f"/reviews?batch={world['batch_code']}")
        await public.wait_for_selector("body[data-ready='1']")
        shown = public.locator(f"#reviews .review[data-id='{world['review']}'] .review-reply")
        assert await shown.text_content() == "主播回复: 抱歉!下次给您挑硬一点的"
        assert await public.locator(".reply-form").count() == 0
        assert await public.locator("#average").text_content() == "3.0 分 · 1 条评价"
        await kit.shot(public, "review_public")
        await _no_overflow(public)
        assert await kit.axe(public, "review_public") == []
        # The session's list (the live room's trust sheet reads the same archive) has it too.
        await public.goto(f"/reviews?session={world['session']}")
        await public.locator(".review-reply", has_text="挑硬一点").wait_for()
        archive = await kit.rest.call("GET", f"/api/products/{world['product']}/reviews")
        assert archive["items"][0]["reply"]["text"] == "抱歉!下次给您挑硬一点的"
        assert kit.errors == [], kit.errors
