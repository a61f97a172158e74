"""The host console on a phone, and the staff menu: a host streaming from his phone reaches
讲解中, opening and closing a sale, its stock and ending the stream from the first screen (one
tab switch at most, never a scroll); the top bar stays one row, its links folded behind 菜单."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from tests.browser_support import PHONE, browser_kit

# Before the console was folded into tabs it was ~2,300 px tall on this phone; now its first
# view (three products) must fit one screen and a little.
MAX_INITIAL_HEIGHT = 900


async def _in_view(page: Any, selector: str) -> None:
    """The element is on screen now: below the sticky top bar, above the fixed action bar
    (the action bar's own buttons only need to be on screen)."""
    element = page.locator(selector)
    box = await element.bounding_box()
    assert box is not None, f"{selector} not rendered"
    top = await page.evaluate("() => document.getElementById('top').getBoundingClientRect().bottom")
    bar = await page.evaluate(
        "() => document.querySelector('.console-actions').getBoundingClientRect().top")
    in_bar = await element.evaluate("el => Boolean(el.closest('.console-actions'))")
    floor = PHONE["height"] if in_bar else bar
    assert box["y"] >= (0 if in_bar else top) and box["y"] + box["height"] <= floor, (selector, box)


async def _not_scrolled(page: Any) -> None:
    assert await page.evaluate("() => window.scrollY") == 0


async def test_host_runs_a_sale_from_the_first_screen(tmp_path: Path, redis_url: str,
                                                     redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "host_console_phone") as kit:
        rest = kit.rest
        host = await rest.account("laozhang", "host", "老张")
        session = await rest.call("POST", "/api/sessions", host.token, json={"title": "枇杷园现场"})
        sid = int(session["id"])
        products = {}
        for name, fen in (("白沙枇杷", 6800), ("初榨橄榄油 500ml", 12800), ("土鸡蛋 30枚", 4500)):
            made = await rest.call("POST", "/api/products", host.token,
                                   json={"name": name, "price_fen": fen})
            products[name] = int(made["id"])

        page = await kit.page(host, f"/host/{sid}")
        loquat = page.locator("#products li", has_text="白沙枇杷")
        await loquat.wait_for()
        await page.locator("#camera option").first.wait_for(state="attached", timeout=15_000)
        # The page's own height (the document is never shorter than the window: 844 px).
        height = await page.evaluate(
            "() => Math.ceil(document.getElementById('app').getBoundingClientRect().bottom"
            " + window.scrollY)")
        print(f"host console initial document height at 390x844: {height} px")
        assert height <= MAX_INITIAL_HEIGHT, height
        await kit.shot(page, "console_first_screen")
        assert await kit.axe(page, "console_first_screen") == []

        # Go live from the action bar: the session is live.
        await _in_view(page, "#go-live")
        await page.click("#go-live")
        await page.wait_for_function("() => document.body.dataset.publishing === 'yes'",
                                     timeout=20_000)
        assert (await rest.call("GET", f"/api/sessions/{sid}"))["status"] == "live"

        # 讲解中: pin the loquats from the product tab shown first.
        await _in_view(page, "#products li:has-text('白沙枇杷') .pin-product")
        await loquat.locator(".pin-product").click()
        await page.locator("#pin-card #pin-name", has_text="白沙枇杷").wait_for(timeout=20_000)
        await _in_view(page, "#unpin")

        # 开售 on the same row is the one tab switch: the sale form with the loquats chosen.
        await _in_view(page, "#products li:has-text('白沙枇杷') .sell-product")
        await loquat.locator(".sell-product").click()
        assert await page.locator("#tab-sales").get_attribute("aria-selected") == "true"
        assert await page.locator("#panel-products").is_hidden()
        assert await page.locator("#sale-product").input_value() == str(products["白沙枇杷"])
        assert await page.locator("#sale-price").input_value() == "68.00"
        for selector in ("#sale-stock", "#sale-price", "#sale-limit", "#open-sale"):
            await _in_view(page, selector)
        await page.fill("#sale-stock", "30")
        await page.fill("#sale-price", "58.00")
        await page.click("#open-sale")
        row = page.locator("#sales li", has_text="白沙枇杷")
        await row.locator(".sale-status", has_text="进行中").wait_for(timeout=20_000)
        await row.locator(".sale-counts", has_text="30/30").wait_for(timeout=20_000)
        await _in_view(page, "#sales li:has-text('白沙枇杷') .close-sale")
        await _not_scrolled(page)
        await kit.shot(page, "console_sale_open")
        assert await kit.axe(page, "console_sale_open") == []

        # A second sale of the loquats beside the first is refused, in Chinese.
        await page.click("#open-sale")
        await page.locator("#sale-error", has_text="已有进行中或待开始的秒杀").wait_for()
        assert await page.locator("#sales li").count() == 1

        # Close it; the end of the stream is under the thumb too (two taps).
        await row.locator(".close-sale").click()
        await row.locator(".sale-status", has_text="已关闭").wait_for(timeout=20_000)

        # 推流: the key for another app, shown on request and changed with two taps.
        await page.click("#tab-stream")
        await page.click("#stream-key-box summary")
        assert await page.locator("#whip-url").input_value() == f"{kit.base}/whip/{sid}"
        old_key = (await rest.call("GET", f"/api/sessions/{sid}", host.token))["stream_key"]
        assert await page.locator("#stream-key").get_attribute("type") == "password"
        await page.click("#show-key")
        assert await page.locator("#stream-key").get_attribute("type") == "text"
        assert await page.locator("#stream-key").input_value() == old_key
        await page.click("#rotate-key")
        await page.click("#rotate-key")
        await page.locator("#key-state", has_text="已更换").wait_for(timeout=20_000)
        new_key = (await rest.call("GET", f"/api/sessions/{sid}", host.token))["stream_key"]
        assert new_key != old_key and await page.locator("#stream-key").input_value() == new_key
        assert await kit.axe(page, "console_stream_tab") == []
        # The stream tab's key box may scroll the page; the end stays in the fixed bar.
        await _in_view(page, "#end-session")
        await page.click("#end-session")
        await page.click("#end-session")
        await page.locator("#end-state", has_text="已结束").wait_for(timeout=20_000)
        assert (await rest.call("GET", f"/api/sessions/{sid}"))["status"] == "ended"
        await kit.shot(page, "console_ended")

        # The tabs answer the keyboard: arrow keys move along them and show their panel.
        await page.focus("#tab-sales")
        await page.keyboard.press("ArrowRight")
        assert await page.evaluate("() => document.activeElement.id") == "tab-groups"
        assert await page.locator("#panel-groups").is_visible()
        await page.keyboard.press("End")
        assert await page.locator("#panel-guest").is_visible()
        await page.keyboard.press("ArrowLeft")
        assert await page.locator("#panel-stream").is_visible()
        assert await page.locator("#stat-kbps").is_visible()
        assert kit.errors == [], kit.errors


async def _menu_links(page: Any) -> list[str]:
    return list(await page.locator("#nav-links a").evaluate_all(
        "links => links.map(a => a.getAttribute('href'))"))


async def test_staff_menu_on_a_phone(tmp_path: Path, redis_url: str, redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "staff_menu_phone") as kit:
        host = await kit.rest.account("laozhang", "host", "老张")
        assistant = await kit.rest.account("xiaoli", "assistant", "小李")
        viewer = await kit.rest.account("liayi", "viewer", "李阿姨")

        page = await kit.page(host, "/studio")
        toggle = page.locator("#nav-toggle")
        await toggle.wait_for()
        # One row: the bar is no taller than its tallest control and padding.
        bar = await page.locator("#top").bounding_box()
        button = await toggle.bounding_box()
        assert bar is not None and button is not None
        assert bar["height"] <= button["height"] + 24, (bar, button)
        assert await toggle.get_attribute("aria-expanded") == "false"
        assert await page.locator("#nav-links").is_hidden()
        await kit.shot(page, "menu_closed")

        # Keyboard: Enter opens it and puts focus on the first link; Escape closes it.
        await toggle.focus()
        await page.keyboard.press("Enter")
        assert await toggle.get_attribute("aria-expanded") == "true"
        assert await page.locator("#nav-links").is_visible()
        assert await page.evaluate("() => document.activeElement.getAttribute('href')") == "/"
        await page.keyboard.press("Escape")
        assert await toggle.get_attribute("aria-expanded") == "false"
        assert await page.evaluate("() => document.activeElement.id") == "nav-toggle"

        await toggle.click()
        assert await _menu_links(page) == ["/", "/replays", "/orders", "/koc", "/invites",
                                           "/communities", "/pickup", "/studio", "/catalog",
                                           "/claims", "/reviews", "/referrals", "/commissions"]
        assert await page.locator("#nav-links a[aria-current=page]").get_attribute("href") == "/studio"
        await kit.shot(page, "menu_open")
        assert await kit.axe(page, "menu_open") == []
        # A tap elsewhere folds it; a link in it goes where it says.
        await page.mouse.click(200, 600)
        assert await toggle.get_attribute("aria-expanded") == "false"
        await toggle.click()
        await page.locator("#nav-links a[href='/catalog']").click()
        await page.wait_for_url("**/catalog")
        # In English too the bar stays one row, the menu labelled in English.
        await page.click("#lang-switch")
        await page.locator("#nav-toggle", has_text="Menu").wait_for()
        bar = await page.locator("#top").bounding_box()
        button = await page.locator("#nav-toggle").bounding_box()
        assert bar is not None and button is not None
        assert bar["height"] <= button["height"] + 24, (bar, button)
        await kit.shot(page, "menu_english")

        # Each role sees only the pages it may use.
        helper = await kit.page(assistant, "/pickup")
        await helper.locator("#nav-toggle").wait_for()
        assert await _menu_links(helper) == ["/", "/replays", "/orders", "/koc", "/pickup",
                                             "/claims", "/reviews", "/referrals"]
        neighbour = await kit.page(viewer, "/")
        await neighbour.locator("#nav-toggle").wait_for()
        assert await _menu_links(neighbour) == ["/", "/replays", "/orders", "/koc", "/referrals"]

        # A laptop shows the links inline, no menu button.
        laptop = await kit.page(host, "/studio", viewport={"width": 1280, "height": 800})
        await laptop.locator("#nav-links a[href='/catalog']").wait_for()
        assert await laptop.locator("#nav-toggle").is_hidden()
        assert kit.errors == [], kit.errors
