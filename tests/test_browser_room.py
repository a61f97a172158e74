"""The live room on a phone, in real Chromium (390×844, zh-CN, Asia/Shanghai): 李阿姨, a member of
阳光花园, sees the community price with the list price struck through and the gift with how many
are left, picks 2 and her pickup point, sees the total, pays, and is charged exactly what the card
said; her own question shows 待审核 and a rejection reaches her. Portrait and landscape streams
sit in a box reserved before the first frame (no layout shift); desktop gets two columns; pages of
sessions not live yet or ended never ask for WHEP or HLS; axe finds nothing serious."""

from __future__ import annotations

import asyncio
import contextlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from tests.browser_support import Account, Kit, browser_kit, free_port
from tests.media_synth import rtmp_publish_argv
from tests.realtime_support import connect

SUNNY = "阳光花园"
GATE = "南门驿站"
LOCKER = "3号楼快递柜"
GIFT = "前30名送桑葚一盒"


async def _shop(kit: Kit) -> dict[str, Any]:
    rest = kit.rest
    host = await rest.account("laozhang", "host", "老张")
    liayi = await rest.account("liayi", "viewer", "李阿姨")
    sunny = await rest.call("POST", "/api/communities", rest.admin_token, json={"name": SUNNY})
    await rest.call("POST", f"/api/communities/{sunny['id']}/members", rest.admin_token,
                    json={"user_id": liayi.id})
    gate = await rest.call("POST", f"/api/communities/{sunny['id']}/pickup-points", rest.admin_token,
                           json={"name": GATE, "address": "阳光花园南门"})
    locker = await rest.call("POST", f"/api/communities/{sunny['id']}/pickup-points",
                             rest.admin_token, json={"name": LOCKER, "address": "3号楼一层"})
    session = await rest.call("POST", "/api/sessions", host.token, json={"title": "老张的桑葚园"})
    sid = int(session["id"])
    batch = await rest.call("POST", "/api/batches", host.token,
                            json={"code": "SS-2026-01", "farm": "老张桑葚园", "plot": "东坡"})
    product = await rest.call("POST", "/api/products", host.token,
                              json={"name": "白玉枇杷 2斤装", "price_fen": 6800, "batch_id": batch["id"]})
    other = await rest.call("POST", "/api/products", host.token,
                            json={"name": "土鸡蛋 30枚", "price_fen": 4500})
    # Two sales: the room must open on the one being explained, not the first one.
    await rest.call("POST", f"/api/sessions/{sid}/sales", host.token, json={
        "product_id": other["id"], "stock": 20, "price_fen": 4500, "per_buyer_limit": 2})
    sale = await rest.call("POST", f"/api/sessions/{sid}/sales", host.token, json={
        "product_id": product["id"], "stock": 50, "price_fen": 6800, "per_buyer_limit": 3,
        "community_ids": [sunny["id"]], "community_price_fen": 5800,
        "gift_first_n": 30, "gift_text": GIFT})
    await rest.call("POST", f"/api/sales/{sale['id']}/group-buys", host.token, json={
        "community_id": sunny["id"], "threshold": 40, "unit": "people", "group_price_fen": 5000,
        "deadline": (datetime.now(UTC) + timedelta(hours=2)).isoformat()})
    await rest.call("POST", f"/api/sessions/{sid}/pin", host.token, json={"product_id": product["id"]})
    return {"host": host, "liayi": liayi, "sid": sid, "sale": sale, "sunny": sunny, "gate": gate,
            "locker": locker, "stream_key": session.get("stream_key")}


def _media_requests(page: Any) -> list[str]:
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url)
            if "/whep/" in request.url or "/hls/" in request.url else None)
    return seen


async def test_member_buys_two_at_the_price_the_card_shows(tmp_path: Path, redis_url: str,
                                                           redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "room_buy_sheet") as kit:
        world = await _shop(kit)
        liayi: Account = world["liayi"]
        page = await kit.page(liayi)
        media = _media_requests(page)
        await page.goto(f"/live/{world['sid']}")
        await page.wait_for_function("() => window.linliLive && window.linliLive.conn.socket.connected")

        # The floating card is the sale being explained: her price, the list price struck through.
        card = page.locator("#pin-card")
        await card.locator("#pin-name", has_text="白玉枇杷").wait_for(timeout=20_000)
        await card.locator("#pin-price", has_text="¥58.00").wait_for(timeout=20_000)
        assert await card.locator("s#pin-list").text_content() == "¥68.00"
        assert await card.locator("#pin-basis").text_content() == "小区价"
        assert await card.locator("#pin-gift").text_content() == f"{GIFT} · 剩30份"
        mine = page.locator("#group-list .group.mine")
        await mine.wait_for()
        assert f"{SUNNY} 0/40 · 再有40位成团" in (await mine.text_content() or "")
        assert await mine.locator("button.join-group").text_content() == "参团"
        await kit.shot(page, "room_card_community_price")

        # The card's trust archive: QC, trace, the moment it was explained, reviews.
        await card.locator("#open-trust").click()
        trust = page.locator("#trust-sheet")
        await trust.locator("h3", has_text="买家评价").wait_for(timeout=20_000)
        for words in ("质检报告", "在直播中讲解的时刻", "开始讲解", "还没有评价"):
            await trust.get_by_text(words).first.wait_for()
        assert await trust.locator("a[href='/trace/SS-2026-01']").count() == 1
        await kit.shot(page, "trust_sheet")
        assert await kit.axe(page, "trust_sheet") == []
        await trust.locator("button[data-close]").click()
        await trust.wait_for(state="hidden")

        # 参团 opens the buy sheet on the same sale.
        await mine.locator("button.join-group").click()
        sheet = page.locator("#buy-sheet")
        await sheet.wait_for()
        assert await sheet.locator("#sale-price").text_content() == "¥58.00"
        assert await sheet.locator("s#sale-list").text_content() == "¥68.00"
        assert await sheet.locator("#sale-gift").text_content() == f"{GIFT} · 剩30份"
        assert "每人限购3份,还可买3份" in (await sheet.locator("#qty-limit").text_content() or "")
        await sheet.locator("#pickup-select option", has_text=LOCKER).wait_for(state="attached")
        await sheet.locator("#qty-plus").click()
        assert await sheet.locator("#qty").text_content() == "2"
        await sheet.locator("#pickup-select").select_option(label=f"{LOCKER} · 3号楼一层")
        assert await sheet.locator("#sale-total").text_content() == "¥116.00"
        await kit.shot(page, "buy_sheet_qty2_locker")
        assert await kit.axe(page, "buy_sheet") == []

        await sheet.locator("#buy").click()
        await sheet.locator("#hold").wait_for(timeout=20_000)
        assert await sheet.locator("#hold-total").text_content() == "¥116.00"
        assert await sheet.locator("#pay").text_content() == "确认支付 ¥116.00"
        assert LOCKER in (await sheet.locator("#hold-pickup").text_content() or "")
        await kit.shot(page, "hold_confirm_total")
        await sheet.locator("#pay").click()
        done = sheet.locator("#confirmation")
        await done.wait_for(timeout=20_000)
        assert await done.locator("#order-amount").text_content() == "¥116.00"
        assert LOCKER in (await done.locator("#pickup-point").text_content() or "")
        assert "含赠品" in (await done.locator("#order-gift").text_content() or "")
        assert (await done.locator("#pickup-code").text_content() or "").isdigit()
        await kit.shot(page, "paid_with_gift")

        # What she was charged is the card's price × 2, at the point she chose.
        (order,) = (await kit.rest.call("GET", "/api/orders", liayi.token))["items"]
        assert (order["unit_price_fen"], order["qty"], order["amount_fen"]) == (5800, 2, 11600)
        assert order["pickup_point_id"] == world["locker"]["id"] and order["gift"] is True

        # Her community's progress moved, and the next visit remembers her pickup point.
        await mine.filter(has_text=f"{SUNNY} 1/40 · 再有39位成团").wait_for(timeout=20_000)
        await page.reload()
        again = page
        await again.locator("#open-buy").click()
        await again.locator("#qty-limit", has_text="还可买1份").wait_for(timeout=20_000)
        assert await again.locator("#pickup-select").input_value() == str(world["locker"]["id"])

        # A scheduled session's room never asked for video.
        assert media == []
        assert kit.errors == []


async def test_her_question_is_pending_then_she_hears_it_was_rejected(
        tmp_path: Path, redis_url: str, redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "room_pending_question") as kit:
        world = await _shop(kit)
        assistant = await kit.rest.account("xiaomei", "assistant", "小美")
        page = await kit.page(world["liayi"], f"/live/{world['sid']}")
        await page.wait_for_function("() => window.linliLive && window.linliLive.conn.socket.connected")
        await page.fill("#ask-input", "能送到小区门口吗")
        await page.click("#ask-form button[type=submit]")
        row = page.locator("#question-list .question.pending", has_text="能送到小区门口吗")
        await row.wait_for(timeout=20_000)
        assert await row.locator(".pending-badge").text_content() == "待审核"
        await kit.shot(page, "question_pending")

        # Sharing: the room's link and its QR poster (drawn by the server) with the title.
        await page.click("#share")
        share = page.locator("#share-sheet")
        await share.locator("#poster-title", has_text="老张的桑葚园").wait_for()
        # Signed in, her link carries her share code (docs/REFERRALS.md).
        assert f"/live/{world['sid']}?ref=" in await share.locator("#share-url").input_value()
        await page.wait_for_function(
            "() => { const i = document.querySelector('#poster-qr img');"
            " return i && i.complete && i.naturalWidth > 0; }")
        await kit.shot(page, "share_poster")
        await share.locator("button[data-close]").click()
        # Only she sees it: another neighbour's room lists nothing.
        other = await kit.page(None, f"/live/{world['sid']}")
        await other.wait_for_function("() => window.linliLive && window.linliLive.conn.socket.connected")
        assert await other.locator("#question-list .question").count() == 0

        mod = await connect(kit.base, "/moderation", {"session_id": world["sid"], "token": assistant.token})
        try:
            await mod.wait(lambda: mod.of("questions") is not None and mod.of("questions"))
            asked = [q for batch in mod.of("questions") for q in batch] + mod.of("question")
            question_id = next(q["id"] for q in asked if q["text"] == "能送到小区门口吗")
            assert (await mod.call("reject", {"question_id": question_id}))["ok"]
        finally:
            await mod.close()
        told = page.locator("#notice", has_text="你的问题「能送到小区门口吗」未通过审核")
        await told.wait_for(timeout=20_000)
        assert await page.locator("#question-list .question.pending").count() == 0
        await kit.shot(page, "question_rejected_told")


async def test_scheduled_and_ended_rooms_never_poll_media(tmp_path: Path, redis_url: str,
                                                          redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "room_no_media_polling") as kit:
        world = await _shop(kit)
        ended = await kit.rest.call("POST", "/api/sessions", world["host"].token,
                                    json={"title": "昨天的直播"})
        await kit.rest.call("POST", f"/api/sessions/{ended['id']}/end", world["host"].token)
        for sid, words in ((world["sid"], "即将开播"), (ended["id"], "直播已结束")):
            page = await kit.page()
            media = _media_requests(page)
            favicons: list[int] = []
            page.on("response", lambda r, f=favicons: f.append(r.status)
                    if r.url.endswith("/favicon.ico") else None)
            await page.goto(f"/live/{sid}")
            await page.locator("main", has_text=words).wait_for(timeout=20_000)
            # The player's first retry would come after 3 s: wait past two of them.
            await page.wait_for_timeout(7000)
            assert media == [], media
            assert await page.evaluate("window.linliLive.playing") is False
            assert 404 not in favicons
            await kit.shot(page, f"not_live_{sid}")
            assert await kit.axe(page, f"room_not_live_{sid}") == []


CONTENT = ("老张的桑葚园", "白玉枇杷 2斤装", "土鸡蛋 30枚", "老张桑葚园", "东坡", GIFT, SUNNY, "李阿姨",
           GATE, "阳光花园南门", LOCKER, "3号楼一层", "中文")


async def test_english_room_shows_one_language(tmp_path: Path, redis_url: str,
                                               redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "room_english") as kit:
        world = await _shop(kit)
        page = await kit.page(world["liayi"])
        await page.add_init_script("localStorage.setItem('linli.lang', 'en')")
        await page.goto(f"/live/{world['sid']}")
        await page.locator("#pin-price", has_text="¥58.00").wait_for(timeout=20_000)
        await page.locator("#open-buy").click()
        await page.locator("#sale-total", has_text="¥58.00").wait_for()
        await kit.shot(page, "room_english_sheet")
        text = await page.evaluate("document.body.innerText")
        for content in sorted(CONTENT, key=len, reverse=True):  # what people wrote stays theirs
            text = text.replace(content, "")
        assert not re.search(r"[\u4e00-\u9fff]", text), text


async def _box(page: Any) -> dict[str, float]:
    return dict(await page.evaluate(
        "() => { const r = document.getElementById('video-box').getBoundingClientRect();"
        " return {x: r.x, y: r.y, w: r.width, h: r.height}; }"))


async def test_portrait_and_landscape_streams_fill_a_reserved_box(tmp_path: Path, redis_url: str,
                                                                  redis_client: Redis) -> None:
    rtmp_port = free_port()
    env = {"LINLI_RTMP_PORT": str(rtmp_port)}
    async with browser_kit(tmp_path, redis_url, "room_layout", env) as kit:
        world = await _shop(kit)
        host: Account = world["host"]
        for size, orientation in (("240x426", "portrait"), ("426x240", "landscape")):
            session = await kit.rest.call("POST", "/api/sessions", host.token,
                                          json={"title": f"{orientation} 直播"})
            key = (await kit.rest.call("GET", f"/api/sessions/{session['id']}", host.token))["stream_key"]
            page = await kit.page(world["liayi"], f"/live/{session['id']}")
            await page.wait_for_function("() => window.linliLive && window.linliLive.conn.socket.connected")
            before = await _box(page)
            # A phone-shaped box under the top bar, sized before any frame arrived.
            assert before["w"] == 390 and before["h"] > 390
            publisher = await asyncio.create_subprocess_exec(
                *rtmp_publish_argv(f"rtmp://127.0.0.1:{rtmp_port}/live/{key}", 40, size=size),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            try:
                await page.wait_for_function(
                    "() => { const v = document.getElementById('video');"
                    " return v.videoWidth > 0 && v.currentTime > 0.3; }",
                    timeout=60_000)
                await page.wait_for_function(
                    f"() => document.getElementById('video-box').dataset.orientation === '{orientation}'")
                after = await _box(page)
                assert after == before, (before, after)  # no layout shift when the video starts
                fit = await page.evaluate("getComputedStyle(document.getElementById('video')).objectFit")
                assert fit == ("cover" if orientation == "portrait" else "contain")
                await kit.shot(page, f"room_{orientation}_stream")
                if orientation == "landscape":
                    assert await kit.axe(page, "live_room") == []
                    desk = await kit.page(world["liayi"], f"/live/{session['id']}",
                                          viewport={"width": 1280, "height": 800})
                    await desk.wait_for_function(
                        "() => document.getElementById('video').videoWidth > 0", timeout=60_000)
                    columns = await desk.evaluate(
                        "getComputedStyle(document.getElementById('app'))"
                        ".gridTemplateColumns.split(' ').length")
                    assert columns == 2
                    await kit.shot(desk, "room_desktop")
            finally:
                with contextlib.suppress(ProcessLookupError):
                    publisher.kill()
                await publisher.wait()
        assert kit.errors == []


async def test_a_neighbour_outside_the_community_is_shown_the_way_in(
        tmp_path: Path, redis_url: str, redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "room_not_member") as kit:
        world = await _shop(kit)
        host: Account = world["host"]
        stranger = await kit.rest.account("xiaoliu", "viewer", "小刘")
        session = await kit.rest.call("POST", "/api/sessions", host.token, json={"title": "小区专享"})
        product = await kit.rest.call("POST", "/api/products", host.token,
                                      json={"name": "小区专享土蜂蜜", "price_fen": 9900})
        await kit.rest.call("POST", f"/api/sessions/{session['id']}/sales", host.token, json={
            "product_id": product["id"], "stock": 10, "price_fen": 9900, "per_buyer_limit": 1,
            "community_ids": [world["sunny"]["id"]], "members_only": True})
        await kit.rest.call("POST", f"/api/sessions/{session['id']}/pin", host.token,
                            json={"product_id": product["id"]})
        page = await kit.page(stranger, f"/live/{session['id']}")
        await page.locator("#open-buy", has_text="立即抢购").click(timeout=20_000)
        await page.locator("#buy").click()
        error = page.locator("#sale-error")
        await error.get_by_text("仅限本小区邻居购买").wait_for(timeout=20_000)
        join = error.locator("#join-community")
        assert await join.text_content() == f"申请加入{SUNNY}"
        await kit.shot(page, "not_member_offer")
        await join.click()
        await error.get_by_text("已申请,团长通过后即可购买").wait_for(timeout=20_000)
        assert await page.locator("#hold").is_hidden()
        await kit.shot(page, "join_requested")
