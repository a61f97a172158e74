"""The dashboard as 老张 reads it on a laptop and on his phone, and as a viewer who opens it."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from tests.browser_support import Account, Kit, browser_kit

LAPTOP = {"width": 1280, "height": 800}
# Names longer than any chart or table column: they must show in full, wrapped, never cut.
COMMUNITY = "阳光花园北区三期业主自提群(3号楼快递柜旁)"
SESSION = "老张的枇杷园:现摘现发,农残快检现场看,前三十名下单再送一盒桑葚"
FIGURES_SHOWN = 18  # with the referral and the 品鉴官 figures


async def _setup(kit: Kit) -> dict[str, Any]:
    rest = kit.rest
    host = await rest.account("laozhang", "host", "老张")
    buyers = [await rest.account(name, "viewer", label) for name, label in
              (("liayi", "李阿姨"), ("wangshu", "王叔"))]
    community = await rest.call("POST", "/api/communities", host.token, json={"name": COMMUNITY})
    for buyer in buyers:
        await rest.call("POST", f"/api/communities/{community['id']}/members", host.token,
                        json={"user_id": buyer.id})
    await rest.call("POST", f"/api/communities/{community['id']}/pickup-points", host.token,
                    json={"name": "3号楼快递柜旁", "address": "阳光花园3号楼"})
    session = await rest.call("POST", "/api/sessions", host.token, json={"title": SESSION})
    product = await rest.call("POST", "/api/products", host.token,
                              json={"name": "白玉枇杷", "price_fen": 3990})
    promise = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    sale = await rest.call("POST", f"/api/sessions/{session['id']}/sales", host.token, json={
        "product_id": product["id"], "stock": 20, "price_fen": 2990, "per_buyer_limit": 2,
        "community_ids": [community["id"]], "pickup_by": promise})
    assert sale["pickup_by"] is not None
    deadline = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    await rest.call("POST", f"/api/sales/{sale['id']}/group-buys", host.token, json={
        "community_id": community["id"], "threshold": 5, "deadline": deadline,
        "group_price_fen": 2500})
    for index, buyer in enumerate(buyers):
        hold = await rest.call("POST", f"/api/sales/{sale['id']}/holds", buyer.token,
                               json={"qty": 1}, headers={"Idempotency-Key": f"dash-{index}"})
        paid = await rest.call("POST", f"/api/holds/{hold['hold_id']}/pay", buyer.token)
        if index == 0:
            await rest.call("POST", f"/api/orders/{paid['order_id']}/ready", host.token)
    return {"host": host, "viewer": buyers[1], "buyer": buyers[0], "session_id": session["id"]}


async def _loaded(page: Any) -> None:
    await page.locator("#headline .tile").first.wait_for(timeout=20_000)
    await page.wait_for_function(
        f"() => {{ const imgs = [...document.querySelectorAll('#figures img')];"
        f" return imgs.length === {FIGURES_SHOWN} && imgs.every((i) => i.complete && i.naturalWidth > 0); }}",
        timeout=30_000)


async def _chart_labels(page: Any, figure: str) -> list[str]:
    """The bar names drawn in a chart (each a <text class="label">, its lines as <tspan>s)."""
    labels: list[str] = await page.evaluate(
        """async (figure) => {
            const src = document.querySelector(`#figures img[data-figure="${figure}"]`).src;
            const svg = new DOMParser().parseFromString(await (await fetch(src)).text(), "image/svg+xml");
            return [...svg.querySelectorAll("text.label")].map(
                (t) => [...t.querySelectorAll("tspan")].map((s) => s.textContent).join(""));
        }""", figure)
    return labels


async def _check_layout(kit: Kit, page: Any, name: str, min_chart_px: int) -> None:
    # The page itself never scrolls sideways; the wide table scrolls inside its own box.
    overflow = await page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, (name, overflow)
    box = await page.evaluate("""() => { const b = document.querySelector('.table-scroll');
        return {scroll: b.scrollWidth, client: b.clientWidth, style: getComputedStyle(b).overflowX,
                right: b.getBoundingClientRect().right, width: document.documentElement.clientWidth}; }""")
    assert box["style"] == "auto" and box["right"] <= box["width"], (name, box)
    # Charts are read, not glanced at: each drawn at least this wide on screen.
    widths = await page.evaluate(
        "() => [...document.querySelectorAll('#figures img')].map((i) => i.getBoundingClientRect().width)")
    assert len(widths) == FIGURES_SHOWN and min(widths) >= min_chart_px, (name, widths)
    # Names in the table are whole (wrapped in the first column, not clipped).
    cells = await page.evaluate("""() => [...document.querySelectorAll('#metrics tbody th')].map(
        (c) => ({text: c.textContent, clipped: c.scrollWidth > c.clientWidth + 1}))""")
    assert any(c["text"] == SESSION for c in cells), cells
    assert not any(c["clipped"] for c in cells), cells
    text = await page.locator("main").inner_text()
    assert "/api/" not in text  # no list of API paths for business users
    assert await kit.axe(page, name) == []
    await kit.shot(page, name)


async def _csv(page: Any, figure: str) -> list[list[str]]:
    async with page.expect_download() as info:
        await page.locator(f'button.csv[data-figure="{figure}"]').first.click()
    download = await info.value
    path = Path(await download.path())
    raw = (await asyncio.to_thread(path.read_bytes)).decode("utf-8")
    assert raw.startswith("\ufeff")
    return list(csv.reader(io.StringIO(raw[1:])))


async def test_dashboard_on_laptop_and_phone_and_refused_to_a_viewer(
        tmp_path: Path, redis_url: str, redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "dashboard") as kit:
        people = await _setup(kit)
        host: Account = people["host"]

        # Two people watch the room: a neighbour not signed in (who reloads: still one viewer)
        # and a buyer. The dashboard's audience comes from these joins.
        live = f"/live/{people['session_id']}"
        connected = "() => window.linliLive && window.linliLive.conn.socket.connected"
        anonymous = await kit.page(None, live, label="anonymous")
        await anonymous.wait_for_function(connected, timeout=20_000)
        await anonymous.reload()
        await anonymous.wait_for_function(connected, timeout=20_000)
        buyer = await kit.page(people["buyer"], live)
        await buyer.wait_for_function(connected, timeout=20_000)

        laptop = await kit.page(host, "/dashboard", viewport=LAPTOP)
        await _loaded(laptop)
        tiles = await laptop.locator("#headline .tile").all_inner_texts()
        assert any("¥59.80" in t and "成交额" in t for t in tiles), tiles  # two orders of ¥29.90
        # Two buyers out of two distinct viewers.
        assert any("100.0%" in t and "转化率" in t for t in tiles), tiles
        assert (await _chart_labels(laptop, "conversion_rate")) == [SESSION]
        labels = await _chart_labels(laptop, "group_buys_by_community")
        assert len(labels) == 1 and labels[0].startswith(COMMUNITY), labels
        await _check_layout(kit, laptop, "laptop", 450)

        table = await _csv(laptop, "group_buys_by_community")
        assert table[0][:2] == ["community", "label"] and table[1][1] == COMMUNITY
        assert table[1][2:6] == ["0", "0", "1", "0"]  # open: neither succeeded nor failed yet
        rows = await _csv(laptop, "groups")
        header = rows[0]
        line = dict(zip(header, rows[1], strict=True))
        assert line["label"] == SESSION and line["gmv_fen"] == "5980" and line["orders"] == "2"
        headline = dict((r[0], r[1]) for r in await _csv(laptop, "headline"))
        assert headline["average_order_value_fen"] == "2990"

        # By community: the same figures regrouped, names in full.
        await laptop.select_option("#scope", "community")
        await laptop.locator("#scope-form button[type=submit]").click()
        await laptop.locator("#metrics tbody th", has_text=COMMUNITY).wait_for(timeout=20_000)

        phone = await kit.page(host, "/dashboard")
        await _loaded(phone)
        await _check_layout(kit, phone, "phone", 300)
        scroll = await phone.evaluate("() => { const b = document.querySelector('.table-scroll');"
                                      " return b.scrollWidth > b.clientWidth; }")
        assert scroll  # eleven figures do not fit a phone: the table scrolls in its box

        # English: one language at a time, the charts too.
        await phone.locator("#lang-switch").click()
        await phone.locator("h1", has_text="Shop dashboard").wait_for(timeout=20_000)
        await _loaded(phone)
        alt = await phone.locator('#figures img[data-figure="return_rate"]').get_attribute("alt")
        assert alt == "Return rate (rebates excluded)"
        svg = await phone.evaluate("""async () => (await (await fetch(
            document.querySelector('#figures img[data-figure="return_rate"]').src)).text())""")
        assert "Return rate" in svg and "退货" not in svg
        await kit.shot(phone, "phone-english")

        # A viewer who opens the dashboard: one sentence, in one language, nothing else.
        viewer = await kit.page(people["viewer"], "/dashboard")
        denied = viewer.locator("#denied")
        await denied.wait_for(timeout=20_000)
        assert (await denied.inner_text()).startswith("无权限")
        assert await viewer.locator("#board").is_hidden()
        main_text = await viewer.locator("main").inner_text()
        assert "/api/" not in main_text and "permission" not in main_text.lower()
        assert await kit.axe(viewer, "viewer") == []
        await kit.shot(viewer, "viewer-no-permission")
        assert kit.errors == [], kit.errors
