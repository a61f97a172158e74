"""The trace page as a neighbour who scanned the box sees it: every QC report with its photo and
PDF, who tested and against what pass mark, each cold-chain reading, one language at a time,
and a useful answer for a code that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

from redis.asyncio import Redis

from server.qr_images import qr_png
from tests.browser_support import browser_kit

CODE = "PP-2026-06-B"
# English words that would only be on the page if a bilingual stored label leaked into it.
ENGLISH_LEAKS = re.compile(r"\b(Pesticide|Brix|Tested|Packed|Cold-chain|Harvested|passed|failed)\b")


async def _upload(kit: object, token: str, body: bytes, content_type: str) -> int:
    rest = kit.rest  # type: ignore[attr-defined]
    async with rest.http.post(f"{rest.base}/api/uploads?purpose=qc", data=body, headers={
            "Authorization": f"Bearer {token}", "Content-Type": content_type}) as resp:
        assert resp.status == 201, await resp.text()
        return int((await resp.json())["id"])


async def test_trace_page_shows_reports_readings_and_pass_marks(
        tmp_path: Path, redis_url: str, redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "trace_page") as kit:
        host = await kit.rest.account("laozhang", "host", "老张")
        await kit.rest.call("POST", "/api/batches", host.token, json={
            "code": CODE, "farm": "老张合作农场", "plot": "东坡3号地"})
        photo = await _upload(kit, host.token, qr_png("质检报告照片", scale=10), "image/png")
        pdf = await _upload(kit, host.token,
                            b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n",
                            "application/pdf")
        await kit.rest.call("POST", f"/api/batches/{CODE}/qc-reports", host.token, json={
            "tester": "王检测员", "lab": "镇农检站", "tested_at": "2026-06-01T02:00:00Z",
            "conclusion": "pass", "attachments": [photo, pdf],
            "measurements": [{"kind": "pesticide_quick_test", "value": 12.5},
                             {"kind": "brix", "value": 13.5}]})
        await kit.rest.call("POST", f"/api/batches/{CODE}/trace-events", host.token, json={
            "kind": "cold_chain", "temperature_c": 3.5, "humidity_pct": 90,
            "location": "镇冷库", "occurred_at": "2026-06-01T10:00:00+08:00"})

        page = await kit.page(None, f"/trace/{CODE}")
        report = page.locator("#trace .qc-report")
        await report.wait_for(timeout=20_000)
        text = await report.inner_text()
        for expected in ("王检测员", "镇农检站", "农残快检", "12.5%", "合格线 < 50%", "糖度", "13.5°Bx"):
            assert expected in text, (expected, text)
        await page.wait_for_function(
            "() => [...document.querySelectorAll('.qc-photo img')].some((i) => i.naturalWidth > 0)",
            timeout=20_000)
        assert await page.locator(".qc-file").count() == 1
        reading = page.locator(".trace-event.trace-cold_chain")
        assert "3.5 °C" in await reading.inner_text() and "90%" in await reading.inner_text()
        assert "10:00" in await reading.inner_text()  # 10:00 in Shanghai, as it was entered
        await page.locator("#trace .verify.ok").wait_for(timeout=20_000)
        whole = await page.locator("main").inner_text()
        assert not ENGLISH_LEAKS.search(whole), ENGLISH_LEAKS.search(whole)
        assert " / " not in whole
        assert await kit.axe(page, "trace") == []
        await kit.shot(page, "trace_zh")

        # In English the labels switch wholesale; only the farm's own words stay Chinese.
        await page.evaluate("localStorage.setItem('linli.lang', 'en')")
        await page.reload()
        await page.locator("#trace .qc-report", has_text="pass below 50%").wait_for(timeout=20_000)
        english = await page.locator("#trace").inner_text()
        for own in ("老张合作农场", "东坡3号地", "王检测员", "镇农检站", "镇冷库"):
            english = english.replace(own, "")
        assert not re.search(r"[\u4e00-\u9fff]", english), english
        await kit.shot(page, "trace_en")

        await page.evaluate("localStorage.setItem('linli.lang', 'zh')")
        await page.goto("/trace/NO-SUCH-BATCH")
        await page.locator("#message", has_text="没有找到批次“NO-SUCH-BATCH”").wait_for(timeout=20_000)
        await page.locator("#message", has_text="扫描包装上的二维码").wait_for()
        await kit.shot(page, "trace_unknown")
        assert kit.errors == [], kit.errors
