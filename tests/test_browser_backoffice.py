"""The shop's back office in real Chromium (zh-CN, Asia/Shanghai), on a laptop and a phone:
老张 schedules tonight's 20:00 session with a cover and products and the preview page shows
20:00 and the cover; he registers a batch, lists a product with a photo, files a QC report with
a photo and a pesticide value, adds a cold-chain reading, sets 坏一赔十 and prints the batch's QR
label, and the public trace page shows the report and its photo. A viewer who opens these
pages is told plainly that they are not for her and sees no controls."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from redis.asyncio import Redis

from server.qr_images import qr_png
from tests.browser_support import Kit, browser_kit
from tests.test_browser_preview import cover_jpeg

LAPTOP = {"width": 1280, "height": 800}
SHANGHAI = ZoneInfo("Asia/Shanghai")
CODE = "PIPA-2026-05"
# The browser's print dialog, not our code: headless Chromium would otherwise wait on it.
NO_PRINT_DIALOG = "window.print = () => { window.__printed = (window.__printed || 0) + 1; };"


async def _no_overflow(page: Any, width: int) -> None:
    scroll = await page.evaluate("document.scrollingElement.scrollWidth")
    assert scroll <= width, f"page is {scroll}px wide on a {width}px screen"


async def _small_targets(page: Any) -> list[str]:
    """Visible controls in the page's main area smaller than 44px, or text under 16px."""
    found: list[str] = await page.evaluate("""() => {
        const bad = [];
        const targets = 'main button, main a, main select, main textarea, '
            + 'main input:not([type=checkbox]):not([type=file])';
        for (const el of document.querySelectorAll(targets)) {
            const box = el.getBoundingClientRect();
            if (box.width === 0 || getComputedStyle(el).visibility === 'hidden') continue;
            if (box.height < 44) bad.push(`${el.tagName}#${el.id}.${el.className} h=${box.height}`);
        }
        for (const el of document.querySelectorAll('main label, main p, main li, main button, main dd')) {
            if (el.getBoundingClientRect().width === 0) continue;
            const size = parseFloat(getComputedStyle(el).fontSize);
            if (size < 16) bad.push(`${el.tagName}#${el.id}.${el.className} font=${size}`);
        }
        return bad;
    }""")
    return found


def _tomorrow_20_shanghai() -> datetime:
    day = (datetime.now(SHANGHAI) + timedelta(days=1)).date()
    return datetime(day.year, day.month, day.day, 20, 0, tzinfo=SHANGHAI)


async def test_schedule_a_session_with_cover_and_products(tmp_path: Path, redis_url: str,
                                                          redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "backoffice_sessions") as kit:
        rest = kit.rest
        host = await rest.account("laozhang", "host", "老张")
        community = await rest.call("POST", "/api/communities", host.token, json={"name": "阳光花园"})
        loquat = await rest.call("POST", "/api/products", host.token,
                                 json={"name": "白沙枇杷", "price_fen": 6800, "unit": "斤"})
        await rest.call("POST", "/api/products", host.token, json={"name": "土鸡蛋", "price_fen": 2500})
        at = _tomorrow_20_shanghai()

        page = await kit.page(host, "/studio", viewport=LAPTOP)
        await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
        await page.locator("#s-products input[name=product]").first.wait_for(timeout=20_000)
        assert "Asia/Shanghai" in (await page.text_content("#s-zone") or "")
        await page.fill("#s-title", "塘栖枇杷 今晚八点现摘")
        await page.fill("#s-when", at.strftime("%Y-%m-%dT%H:%M"))
        await page.set_input_files("#s-cover", files=[
            {"name": "cover.jpg", "mimeType": "image/jpeg", "buffer": cover_jpeg()}])
        await page.fill("#s-text", "老张带大家看枇杷园,快检报告现场给大家看。")
        await page.check(f"#s-products input[value='{loquat['id']}']")
        await kit.shot(page, "studio_form_filled")
        await page.click("#s-save")
        card = page.locator("#sessions li.session", has_text="塘栖枇杷")
        await card.wait_for(timeout=20_000)
        await page.locator("#s-status.ok").wait_for()

        sessions = await rest.call("GET", f"/api/sessions?host_id={host.id}")
        assert len(sessions) == 1
        sid = sessions[0]["id"]
        assert datetime.fromisoformat(sessions[0]["scheduled_at"]) == at
        assert sessions[0]["scheduled_at"].endswith("+00:00")
        assert sessions[0]["preview_product_ids"] == [loquat["id"]]
        assert str(sessions[0]["cover_url"]).startswith("/api/uploads/")
        assert "20:00" in (await card.locator("time").text_content() or "")
        await page.wait_for_function("() => { const i = document.querySelector('#sessions img.thumb');"
                                     " return i && i.complete && i.naturalWidth > 0; }")
        assert await card.locator(f"a[href='/host/{sid}']").count() == 1
        poster = card.locator(f"a[href='/invites?community={community['id']}']")
        assert "阳光花园" in (await poster.text_content() or "")
        await card.locator("button.copy").click()
        await card.locator("button.copy", has_text="已复制").wait_for()
        assert await page.evaluate("navigator.clipboard.readText()") == f"{kit.base}/live/{sid}"
        await _no_overflow(page, LAPTOP["width"])
        assert await _small_targets(page) == []
        assert await kit.axe(page, "studio_laptop") == []
        await kit.shot(page, "studio_scheduled")

        # Edit: a new title; time, cover and products stay as they were.
        await card.locator("button.edit").click()
        # The form is filled from the session's preview once it has been fetched.
        await page.wait_for_function("(v) => document.querySelector('#s-when').value === v",
                                     arg=at.strftime("%Y-%m-%dT%H:%M"), timeout=20_000)
        assert await page.is_checked(f"#s-products input[value='{loquat['id']}']")
        await page.fill("#s-title", "塘栖白沙枇杷 八点开摘")
        await page.click("#s-save")
        await page.locator("#sessions li.session", has_text="塘栖白沙枇杷").wait_for(timeout=20_000)
        edited = await rest.call("GET", f"/api/sessions/{sid}/preview")
        assert edited["title"] == "塘栖白沙枇杷 八点开摘"
        assert datetime.fromisoformat(edited["scheduled_at"]) == at
        assert edited["cover_url"] == sessions[0]["cover_url"]
        assert [p["id"] for p in edited["products"]] == [loquat["id"]]

        # The preview link a neighbour gets: 20:00 in her zone and the cover.
        await page.locator("#sessions a.preview-link").click()
        await page.wait_for_url(f"**/preview/{sid}")
        await page.locator("#when", has_text=":").wait_for(timeout=20_000)
        assert "20:00" in (await page.text_content("#when") or "")
        await page.wait_for_function("() => document.querySelector('#cover').complete "
                                     "&& document.querySelector('#cover').naturalWidth > 0")
        await page.locator("#products", has_text="白沙枇杷").wait_for()
        await kit.shot(page, "preview_from_studio")

        # The invite poster link opens /invites with that community chosen.
        await page.goto("/studio")
        await page.locator(f"a[href='/invites?community={community['id']}']").click()
        await page.wait_for_url("**/invites?community=*")
        await page.locator("#invite-maker").wait_for(timeout=20_000)
        assert await page.input_value("#inv-community") == str(community["id"])

        # The same page on a phone: nothing wider than the screen, nothing too small to tap.
        phone = await kit.page(host, "/studio")
        await phone.locator("#sessions li.session").wait_for(timeout=20_000)
        await _no_overflow(phone, 390)
        assert await _small_targets(phone) == []
        assert await kit.axe(phone, "studio_phone") == []
        await kit.shot(phone, "studio_phone")
        assert kit.errors == []


async def _catalog_page(kit: Kit, host: Any, viewport: dict[str, int] | None = None) -> Any:
    page = await kit.page(host, None, viewport=viewport)
    await page.context.add_init_script(NO_PRINT_DIALOG)
    await page.goto("/catalog")
    await page.locator("#owner-only").wait_for(timeout=20_000)
    return page


async def test_catalog_batch_qc_trace_policy_and_label_on_a_phone(
        tmp_path: Path, redis_url: str, redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "backoffice_catalog") as kit:
        rest = kit.rest
        host = await rest.account("laozhang", "host", "老张")
        page = await _catalog_page(kit, host)

        # A batch: origin, plot, harvest time.
        await page.fill("#b-code", CODE)
        await page.fill("#b-farm", "塘栖 老张果园")
        await page.fill("#b-plot", "东坡3号地")
        await page.fill("#b-harvest", "2026-05-20T06:30")
        await page.click("#b-save")
        await page.locator(f"#batches li.batch[data-code='{CODE}']").wait_for(timeout=20_000)
        batch = await rest.call("GET", f"/api/batches/{CODE}")
        assert (batch["farm"], batch["plot"]) == ("塘栖 老张果园", "东坡3号地")
        assert datetime.fromisoformat(batch["harvested_at"]) == datetime(
            2026, 5, 20, 6, 30, tzinfo=SHANGHAI)

        # A product with a photo, priced in yuan, sold from that batch.
        await page.fill("#p-name", "白沙枇杷")
        await page.fill("#p-price", "39.90")
        await page.fill("#p-unit", "斤")
        await page.select_option("#p-batch", str(batch["id"]))
        await page.set_input_files("#p-photos", files=[
            {"name": "pipa.jpg", "mimeType": "image/jpeg", "buffer": cover_jpeg()}])
        await page.click("#p-save")
        product_card = page.locator("#products li.product", has_text="白沙枇杷")
        await product_card.wait_for(timeout=20_000)
        (product,) = await rest.call("GET", "/api/products", host.token)
        assert (product["price_fen"], product["unit"], product["batch_id"]) == (3990, "斤", batch["id"])
        assert len(product["photos"]) == 1
        assert "¥39.90" in (await product_card.text_content() or "")

        # 坏一赔十, 3 days after pickup, photo required.
        pid = product["id"]
        await page.fill(f"#pol-days-{pid}", "3")
        await page.select_option(f"#pol-mult-{pid}", "10")
        assert "坏一赔十" in (await page.locator(f"#pol-mult-{pid} option:checked").text_content() or "")
        await product_card.locator("form.policy button[type=submit]").click()
        await page.locator(f"#pol-status-{pid}", has_text="坏一赔十").wait_for(timeout=20_000)
        policy = await rest.call("GET", f"/api/products/{pid}/claim-policy")
        assert (policy["multiplier"], policy["max_days_after_pickup"], policy["require_photo"]) == (
            10, 3, True)

        # A QC report with its photo and a pesticide value.
        assert await page.input_value("#qc-batch") == CODE
        await page.fill("#qc-tester", "王检测")
        await page.fill("#qc-lab", "塘栖农检站")
        await page.fill("#qc-when", "2026-05-21T09:00")
        await page.fill("#qc-pesticide", "12.5")
        await page.fill("#qc-brix", "14.2")
        await page.set_input_files("#qc-files", files=[
            {"name": "report.png", "mimeType": "image/png", "buffer": qr_png("质检报告照片", scale=10)}])
        await page.click("#qc-save")
        await page.locator("#qc-status.ok").wait_for(timeout=20_000)
        (report,) = await rest.call("GET", f"/api/batches/{CODE}/qc-reports")
        assert report["tester"] == "王检测" and len(report["attachments"]) == 1
        values = {m["kind"]: m["value"] for m in report["measurements"]}
        assert values == {"pesticide_quick_test": 12.5, "brix": 14.2}

        # A cold-chain reading with temperature and humidity.
        await page.select_option("#tr-kind", "cold_chain")
        await page.fill("#tr-location", "杭州冷库")
        await page.fill("#tr-temp", "4.5")
        await page.fill("#tr-hum", "85")
        await page.click("#tr-save")
        await page.locator("#tr-status.ok").wait_for(timeout=20_000)
        await _no_overflow(page, 390)
        assert await _small_targets(page) == []
        assert await kit.axe(page, "catalog_phone") == []
        await kit.shot(page, "catalog_phone")

        # The batch's QR label, printed alone.
        label = page.locator(f"#batches li.batch[data-code='{CODE}']")
        await page.wait_for_function("() => { const i = document.querySelector('.qr-label img');"
                                     " return i && i.complete && i.naturalWidth > 0; }")
        await label.locator("button.print-label-btn").click()
        assert await page.evaluate("window.__printed") == 1
        await page.emulate_media(media="print")
        seen = await page.evaluate("""() => ['#product-form', '#qc-form', '#batches h3',
            '.qr-label.printing img'].map((s) => getComputedStyle(document.querySelector(s)).visibility)""")
        assert seen == ["hidden", "hidden", "hidden", "visible"], seen
        pdf = await page.pdf(width="100mm", height="60mm", print_background=True)
        (kit.shots / "batch_label.pdf").write_bytes(pdf)
        assert pdf.startswith(b"%PDF")
        await page.emulate_media(media="screen")

        # What a neighbour who scans the label sees: the report, its photo, the reading.
        trace = await kit.page(None, f"/trace/{CODE}")
        await trace.locator("#trace .qc-report", has_text="王检测").wait_for(timeout=20_000)
        assert "12.5" in (await trace.locator("#trace .qc-report").inner_text())
        await trace.wait_for_function(
            "() => [...document.querySelectorAll('.qc-photo img')].some((i) => i.naturalWidth > 0)",
            timeout=20_000)
        reading = trace.locator(".trace-event.trace-cold_chain")
        assert "4.5" in (await reading.inner_text())
        await kit.shot(trace, "trace_after_qc")

        # The same page on a laptop, and editing the product's price there.
        laptop = await _catalog_page(kit, host, LAPTOP)
        await laptop.locator("#products li.product").wait_for(timeout=20_000)
        await laptop.locator("#products li.product button", has_text="编辑").click()
        assert await laptop.input_value("#p-price") == "39.90"
        await laptop.fill("#p-price", "45")
        await laptop.click("#p-save")
        await laptop.locator("#products li.product", has_text="¥45.00").wait_for(timeout=20_000)
        assert (await rest.call("GET", f"/api/products/{pid}"))["price_fen"] == 4500
        await _no_overflow(laptop, LAPTOP["width"])
        assert await kit.axe(laptop, "catalog_laptop") == []
        await kit.shot(laptop, "catalog_laptop")

        # In English the page's own words are English only (names the host typed stay his).
        await laptop.click("#lang-switch")
        await laptop.locator("#products li.product h4", has_text="After-sales promise").wait_for(
            timeout=20_000)
        assert "10× the price" in (await laptop.locator(f"#pol-mult-{pid} option:checked").inner_text())
        text = await laptop.locator("main").inner_text()
        for typed in ("白沙枇杷", "塘栖 老张果园", "东坡3号地", "斤"):
            text = text.replace(typed, "")
        assert re.findall(r"[\u4e00-\u9fff]+", text) == []
        await kit.shot(laptop, "catalog_laptop_en")
        assert kit.errors == []


async def test_a_viewer_is_told_these_pages_are_not_hers(tmp_path: Path, redis_url: str,
                                                         redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "backoffice_denied") as kit:
        viewer = await kit.rest.account("liayi", "viewer", "李阿姨")
        for path in ("/studio", "/catalog"):
            for viewport in (None, LAPTOP):
                page = await kit.page(viewer, path, viewport=viewport)
                denied = page.locator("#denied")
                await denied.wait_for(timeout=20_000)
                assert "没有权限" in (await denied.text_content() or "")
                assert await page.locator("#owner-only").is_hidden()
                controls = await page.evaluate("""() => [...document.querySelectorAll(
                    'main button, main input, main select, main textarea')]
                    .filter((el) => el.getBoundingClientRect().width > 0).length""")
                assert controls == 0
                assert await kit.axe(page, f"denied{path.replace('/', '_')}") == []
                await kit.shot(page, f"denied{path.replace('/', '_')}")
        # In English, the same refusal in English only.
        page = await kit.page(viewer, None)
        await page.context.add_init_script("localStorage.setItem('linli.lang', 'en');")
        await page.goto("/catalog")
        await page.locator("#denied").wait_for(timeout=20_000)
        assert "no permission" in (await page.text_content("#denied") or "")
        assert await page.text_content("h1") == "Catalog and evidence"
        assert kit.errors == []
