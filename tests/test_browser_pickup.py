"""Pickup day in real Chromium: 老张 opens the pickup page on his phone at the pickup point, picks
the session, community and point, marks 20 orders ready in one action, confirms three pickups
by typing the codes, prints the pick list (PDF kept as an artifact) and exports the CSV; the
same page on a laptop; a pickup QR read by the page's decoder (jsQR) from the phone camera."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from tests.browser_support import CHROMIUM_ARGS, PHONE, Account, Kit, browser_kit, chromium_path, login_script

COMMUNITY = "阳光花园"
POINT = "3号楼门卫室"
HOURS = "每天 9:00–20:00"
ORDERS = 20


async def _seed(kit: Kit, buyers_n: int = 5, per_buyer: int = 4) -> dict[str, Any]:
    rest = kit.rest
    host = await rest.account("laozhang", "host", "老张")
    buyers = [await rest.account(f"nb{i}", "viewer", f"邻居{i}") for i in range(buyers_n)]
    community = await rest.call("POST", "/api/communities", host.token, json={"name": COMMUNITY})
    for buyer in buyers:
        await rest.call("POST", f"/api/communities/{community['id']}/members", host.token,
                        json={"user_id": buyer.id})
    point = await rest.call("POST", f"/api/communities/{community['id']}/pickup-points",
                            host.token, json={"name": POINT, "address": "阳光花园3号楼",
                                              "hours": HOURS})
    session = await rest.call("POST", "/api/sessions", host.token, json={"title": "枇杷专场"})
    product = await rest.call("POST", "/api/products", host.token,
                              json={"name": "白沙枇杷", "price_fen": 3990})
    sale = await rest.call("POST", f"/api/sessions/{session['id']}/sales", host.token, json={
        "product_id": product["id"], "stock": 100, "price_fen": 3990, "per_buyer_limit": 10,
        "community_ids": [community["id"]], "community_price_fen": 2990})
    orders: list[tuple[int, Account]] = []
    for buyer in buyers:
        for _ in range(per_buyer):
            held = await rest.call("POST", f"/api/sales/{sale['id']}/holds", buyer.token,
                                   json={"qty": 1, "community_id": community["id"]},
                                   headers={"Idempotency-Key": uuid.uuid4().hex})
            paid = await rest.call("POST", f"/api/holds/{held['hold_id']}/pay", buyer.token)
            orders.append((int(paid["order_id"]), buyer))
    return {"host": host, "buyers": buyers, "community": community, "point": point,
            "session": session, "orders": orders}


async def _statuses(kit: Kit, host: Account, session_id: int) -> dict[int, str]:
    data = await kit.rest.call("GET", f"/api/orders?session_id={session_id}&limit=100", host.token)
    return {item["id"]: item["status"] for item in data["items"]}


async def _no_overflow(page: Any, width: int) -> None:
    scroll = await page.evaluate("document.scrollingElement.scrollWidth")
    assert scroll <= width, f"page is {scroll}px wide on a {width}px screen"


async def _choose_scope(page: Any, world: dict[str, Any]) -> None:
    await page.select_option("#f-session", str(world["session"]["id"]))
    await page.select_option("#f-community", str(world["community"]["id"]))
    await page.locator(f"#f-point option[value='{world['point']['id']}']").wait_for(state="attached")
    await page.select_option("#f-point", str(world["point"]["id"]))
    await page.select_option("#f-status", "paid")
    await page.wait_for_function(
        f"() => document.querySelectorAll('#orders tbody tr[data-status=paid]').length === {ORDERS}"
        " && location.search.includes('status=paid') && !document.body.dataset.loading")


async def test_pickup_day_on_a_phone(tmp_path: Path, redis_url: str,
                                     redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "pickup_day_phone") as kit:
        world = await _seed(kit)
        host, sid = world["host"], world["session"]["id"]
        page = await kit.page(host, "/pickup")
        await page.wait_for_selector("body[data-ready='1']")
        await _choose_scope(page, world)
        await kit.shot(page, "pickup_paid_orders")
        assert await kit.axe(page, "pickup_phone") == []
        await _no_overflow(page, 390)

        # Select all and mark ready in one action: one request for the 20 orders.
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url) if r.method == "POST" else None)
        await page.check("#select-all")
        assert await page.locator(".pick:checked").count() == ORDERS
        await page.click("#mark-ready")
        await page.wait_for_function("() => document.querySelectorAll("
                                     "'#orders tbody tr[data-status=paid]').length === 0")
        assert [u for u in requests if "/api/orders" in u] == [f"{kit.base}/api/orders/ready"]
        assert set((await _statuses(kit, host, sid)).values()) == {"ready_for_pickup"}
        await page.select_option("#f-status", "ready_for_pickup")
        await page.wait_for_function("() => document.querySelectorAll("
                                     f"'#orders tbody tr[data-status=ready_for_pickup]').length === {ORDERS}")
        await kit.shot(page, "pickup_all_ready")

        # Three neighbours read their codes out; the host types each one.
        picked = world["orders"][:3]
        for order_id, buyer in picked:
            code = (await kit.rest.call("GET", f"/api/orders/{order_id}", buyer.token))["pickup_code"]
            await page.fill("#code", code)
            await page.click("#confirm-form button[type=submit]")
            await page.wait_for_function(
                f"() => document.querySelector('#confirm-result').textContent.includes('#{order_id}')")
            assert "已确认取货" in await page.text_content("#confirm-result")
        await page.fill("#code", "000000")
        await page.click("#confirm-form button[type=submit]")
        await page.wait_for_function(
            "() => document.querySelector('#confirm-result').textContent.includes('取货码不正确')")
        statuses = await _statuses(kit, host, sid)
        assert sorted(i for i, s in statuses.items() if s == "picked_up") == sorted(
            i for i, _ in picked)
        await page.select_option("#f-status", "")
        await page.wait_for_function("() => document.querySelectorAll("
                                     "'#orders tbody tr[data-status=picked_up]').length === 3")
        await kit.shot(page, "pickup_three_collected")

        # The pick list on paper: controls gone, a signature column, one row per order.
        await page.emulate_media(media="print")
        hidden = await page.evaluate("""() => ['#filters', '#confirm', '.bulk', '#top']
            .map((s) => getComputedStyle(document.querySelector(s)).display)""")
        assert hidden == ["none"] * 4, hidden
        assert await page.locator("th.print-only").is_visible()
        pdf = await page.pdf(format="A4", print_background=True)
        (kit.shots / "pick_list.pdf").write_bytes(pdf)
        assert pdf.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page\b", pdf)) >= 1
        await page.emulate_media(media="screen")

        # CSV of the same scope, opened as a spreadsheet would.
        async with page.expect_download() as info:
            await page.click("#csv")
        download = await info.value
        saved = kit.shots / "orders.csv"
        await download.save_as(saved)
        rows = list(csv.reader(io.StringIO(saved.read_text(encoding="utf-8-sig"))))
        assert rows[0][:3] == ["id", "buyer_name", "product_name"] and len(rows) == ORDERS + 1
        by_id = {int(r[0]): r for r in rows[1:]}
        assert {by_id[i][5] for i, _ in picked} == {"picked_up"}  # CSV columns: id, buyer, …, status
        assert {r[2] for r in rows[1:]} == {"白沙枇杷"} and {r[6] for r in rows[1:]} == {POINT}
        assert kit.errors == []


async def test_pickup_day_on_a_laptop(tmp_path: Path, redis_url: str,
                                      redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "pickup_day_laptop") as kit:
        world = await _seed(kit)
        laptop = {"width": 1280, "height": 800}
        page = await kit.page(world["host"], "/pickup", viewport=laptop)
        await page.wait_for_selector("body[data-ready='1']")
        await _choose_scope(page, world)
        # A real table here: the header row is shown, each order one row.
        assert await page.locator("#orders thead th", has_text="买家").is_visible()
        box = await page.locator("#orders tbody tr").first.bounding_box()
        assert box is not None and box["height"] < 120
        await page.check("#select-all")
        await page.click("#mark-ready")
        await page.wait_for_function("() => document.querySelectorAll("
                                     "'#orders tbody tr[data-status=paid]').length === 0")
        # A code typed while the list shows only unprepared orders still finds its order.
        order_id, buyer = world["orders"][5]
        code = (await kit.rest.call("GET", f"/api/orders/{order_id}", buyer.token))["pickup_code"]
        await page.fill("#code", code)
        await page.press("#code", "Enter")
        await page.wait_for_function(
            f"() => document.querySelector('#confirm-result').textContent.includes('#{order_id}')")
        await page.select_option("#f-status", "")
        await page.wait_for_function(
            "() => document.querySelectorAll('#orders tbody tr[data-status=ready_for_pickup]')"
            f".length === {ORDERS - 1}")
        await kit.shot(page, "pickup_laptop_ready")
        assert await kit.axe(page, "pickup_laptop") == []
        await _no_overflow(page, 1280)

        # In English the page's own words are English only (names of places and goods aside;
        # the top bar's 中文 switch is the way back).
        await page.click("#lang-switch")
        await page.wait_for_selector("body[data-ready='1']")
        await page.wait_for_function("() => !document.body.dataset.loading")
        assert await page.text_content("h1") == "Pickup day"
        chrome = await page.evaluate("""() => [...document.querySelectorAll(
            'label > span, main button, th, #summary, .state, .when')].map((e) => e.textContent).join(' ')""")
        assert not re.search(r"[\u4e00-\u9fff]", chrome), chrome
        await kit.shot(page, "pickup_laptop_english")

        # A viewer opening the page is told it is not for her, with nothing to press.
        viewer = await kit.page(world["buyers"][0], "/pickup")
        await viewer.wait_for_function(
            "() => document.querySelector('#summary').textContent.includes('不能')")
        assert not await viewer.locator("#mark-ready").is_visible()
        assert kit.errors == []


def _qr_video(text: str, folder: Path) -> Path:
    """A Y4M clip of the QR code on white, what Chromium's fake camera plays in a loop."""
    import segno

    png = folder / "qr.png"
    segno.make(text, error="m").save(str(png), kind="png", scale=12, border=4)
    video = folder / "qr.y4m"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-loop", "1", "-i", str(png), "-t", "2", "-r",
                    "10", "-vf", "scale=640:480:force_original_aspect_ratio=decrease,"
                    "pad=640:480:(ow-iw)/2:(oh-ih)/2:white,format=yuv420p", str(video)],
                   check=True)
    return video


async def _buyer_qr(kit: Kit, buyer: Account, order_id: int) -> str:
    async with kit.rest.http.get(f"{kit.base}/api/orders/{order_id}/pickup-qr.svg",
                                 headers={"Authorization": f"Bearer {buyer.token}"}) as resp:
        assert resp.status == 200 and resp.headers["Cache-Control"] == "private, no-store"
        return await resp.text()


async def test_pickup_by_scanning_the_buyers_qr(tmp_path: Path, redis_url: str,
                                                redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "pickup_scan") as kit:
        world = await _seed(kit, buyers_n=1, per_buyer=1)
        host = world["host"]
        ((order_id, buyer),) = world["orders"]
        await kit.rest.call("POST", "/api/orders/ready", host.token, json={"order_ids": [order_id]})
        code = (await kit.rest.call("GET", f"/api/orders/{order_id}", buyer.token))["pickup_code"]

        # The buyer's QR as her orders page serves it, decoded by the page's module with jsQR.
        page = await kit.page(host, "/pickup")
        await page.wait_for_selector("body[data-ready='1']")
        decoded = await page.evaluate("""async (svg) => {
            const { decodeCanvas, parsePickupQr } = await import('/static/js/qr_scan.js');
            const img = new Image();
            img.src = URL.createObjectURL(new Blob([svg], { type: 'image/svg+xml' }));
            await img.decode();
            const canvas = document.createElement('canvas');
            canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
            const ctx = canvas.getContext('2d');
            ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, canvas.width, canvas.height);
            ctx.drawImage(img, 0, 0);
            return parsePickupQr(await decodeCanvas(canvas, { useNative: false }));
        }""", await _buyer_qr(kit, buyer, order_id))
        assert decoded == {"orderId": order_id, "code": code}

        # The phone camera: Chromium's fake capture device plays a clip of the buyer's QR; the
        # host taps 扫码 and the pickup is confirmed with nothing typed.
        video = _qr_video(f"LINLI-PICKUP:{order_id}:{code}", tmp_path)
        camera = await kit.browser.browser_type.launch(
            executable_path=chromium_path(), args=[*CHROMIUM_ARGS,
                                                    f"--use-file-for-fake-video-capture={video}"])
        try:
            context = await camera.new_context(viewport=PHONE, locale="zh-CN", has_touch=True,
                                               timezone_id="Asia/Shanghai", base_url=kit.base)
            await context.add_init_script(login_script(host))
            phone = await context.new_page()
            phone.on("pageerror", lambda err: kit.errors.append(f"camera: {err}"))
            await phone.goto("/pickup")
            await phone.wait_for_selector("body[data-ready='1']")
            await phone.click("#scan")
            await phone.wait_for_function(
                f"() => document.querySelector('#confirm-result').textContent.includes('#{order_id}')",
                timeout=20_000)
            await kit.shot(phone, "pickup_scanned")
            assert await phone.input_value("#code") == ""
        finally:
            await camera.close()
        item = (await kit.rest.call("GET", "/api/orders?mine=1", buyer.token))["items"][0]
        assert item["status"] == "picked_up" and item["picked_up_at"]
        assert kit.errors == []
