"""The preview page in real Chromium (phone, zh-CN, Asia/Shanghai): a session scheduled for
20:00 in Shanghai shows 20:00; 预约; the host goes live (a real WHIP publisher) and the
subscriber's page shows the notification; the bell counts it; axe-core finds nothing serious."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import aiohttp
import av
from redis.asyncio import Redis

from tests.browser_support import browser_kit
from tests.media_synth import _picture
from tests.webrtc_clients import publish


def cover_jpeg() -> bytes:
    """A real JPEG picture (16:9), encoded by FFmpeg's mjpeg encoder."""
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = 640, 360, "yuvj420p"
    codec.time_base = Fraction(1, 25)
    frame = _picture(3, 640, 360).reformat(format="yuvj420p")
    packets = codec.encode(frame) + codec.encode(None)
    return bytes(packets[0])


async def test_preview_shows_local_time_and_the_go_live_notice(tmp_path: Path, redis_url: str,
                                                               redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "preview") as kit:
        rest = kit.rest
        host = await rest.account("laozhang", "host", "老张")
        fan = await rest.account("liayi", "viewer", "李阿姨")
        # Tomorrow 20:00 in Shanghai, sent as the same instant in UTC (12:00Z).
        day = (datetime.now(UTC) + timedelta(days=1)).date()
        at = datetime(day.year, day.month, day.day, 12, 0, tzinfo=UTC)
        session = await rest.call("POST", "/api/sessions", host.token, json={
            "title": "塘栖枇杷 今晚八点现摘", "scheduled_at": at.isoformat()})
        sid, key = int(session["id"]), str(session["stream_key"])
        product = await rest.call("POST", "/api/products", host.token,
                                  json={"name": "白沙枇杷", "price_fen": 6800, "unit": "斤"})
        async with rest.http.post(f"{kit.base}/api/uploads?purpose=cover", data=cover_jpeg(),
                                  headers={"Authorization": f"Bearer {host.token}",
                                           "Content-Type": "image/jpeg"}) as resp:
            assert resp.status == 201, await resp.text()
            cover = await resp.json()
        await rest.call("PUT", f"/api/sessions/{sid}/preview", host.token, json={
            "cover_upload_id": cover["id"], "product_ids": [product["id"]],
            "preview_text": "今晚八点,老张带大家看枇杷园,快检报告现场给大家看。"})

        page = await kit.page(fan, f"/preview/{sid}")
        when = page.locator("#when")
        await page.locator("#when", has_text=":").wait_for(timeout=20_000)
        assert "20:00" in (await when.text_content() or "")
        assert await when.get_attribute("datetime") == at.isoformat()
        await page.locator("#products", has_text="白沙枇杷").wait_for(timeout=20_000)
        await page.locator("#count", has_text="0 人已预约").wait_for(timeout=20_000)
        await page.wait_for_function("() => document.querySelector('#cover').complete "
                                     "&& document.querySelector('#cover').naturalWidth > 0")
        await kit.shot(page, "preview_before")
        assert await kit.axe(page, "preview") == []

        await page.click("#subscribe")
        await page.locator("#count", has_text="1 人已预约").wait_for(timeout=20_000)
        assert await page.locator("#subscribe").get_attribute("aria-pressed") == "true"
        await page.wait_for_function("() => window.linliNotices && window.linliNotices.connected()")
        await kit.shot(page, "preview_booked")

        async with aiohttp.ClientSession(base_url=kit.base) as http:
            pub = await publish(cast(Any, http), sid, key)
            try:
                assert pub.status == 201, pub.body
                # Bounded wait: the promise is "within 2 s" of going live.
                toast = page.locator(".notice-toast[data-kind='session_live']")
                await toast.wait_for(timeout=2_000)
                text = await toast.text_content() or ""
                assert "开播了" in text and "塘栖枇杷" in text
                assert await toast.get_attribute("href") == f"/live/{sid}"
                assert (await page.locator("#notice-count").text_content() or "") == "1"
                # The page itself turns into the way in.
                await page.locator("#watch").wait_for(timeout=10_000)
                await kit.shot(page, "preview_live_notice")
                assert await kit.axe(page, "preview_live") == []
                # The bell lists it; opening marks it read.
                await page.click("#notice-bell")
                await page.locator("#notice-panel", has_text="开播了").wait_for(timeout=5_000)
                await page.locator("#notice-count").wait_for(state="hidden", timeout=5_000)
                await kit.shot(page, "bell_open")
            finally:
                await pub.pc.close()
            await asyncio.sleep(0)

        # In English: the same instant, the page's own words in English only.
        english = await kit.page(fan, f"/preview/{sid}", label="english")
        await english.evaluate("localStorage.setItem('linli.lang', 'en')")
        await english.reload()
        await english.locator("#watch", has_text="Live now").wait_for(timeout=20_000)
        assert "20:00" in (await english.locator("#when").text_content() or "")
        chrome = await english.locator(
            "#top, .preview > p.muted, .when .muted, #count, h2").all_text_contents()
        # Her name is content, and the switch names the other language on purpose.
        words = "".join(chrome).replace("李阿姨", "").replace("中文", "")
        assert not any("\u4e00" <= ch <= "\u9fff" for ch in words), chrome
        await kit.shot(english, "preview_english")

        # My page: the notification in the full list, interest tags picked and kept.
        me = await kit.page(fan, "/me")
        await me.locator("#notice-items", has_text="开播了").wait_for(timeout=20_000)
        await me.click("button[data-tag='baking']")
        await me.click("button[data-tag='senior']")
        await me.click("#tags-save")
        await me.locator("#tags-status", has_text="已保存").wait_for(timeout=10_000)
        await me.reload()
        await me.locator("button[data-tag='baking'][aria-pressed='true']").wait_for(timeout=20_000)
        assert await me.locator("button[aria-pressed='true']").count() == 2
        assert "烘焙爱好者" in (await me.locator("#tags").text_content() or "")
        await kit.shot(me, "me_tags")
        assert await kit.axe(me, "me") == []
        assert kit.errors == []
