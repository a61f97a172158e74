"""The live page in real Chromium when its host ends the session: 直播已结束 with a link to the
replay, no 讲解中, the buy button disabled; a hold made before the end can still be paid."""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis

from tests.browser_support import browser_kit


async def test_the_live_page_shows_an_ended_session(tmp_path: Path, redis_url: str,
                                                    redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "session_end") as kit:
        rest = kit.rest
        host = await rest.account("laozhang", "host", "老张")
        buyer = await rest.account("liayi", "viewer", "李阿姨")
        session = await rest.call("POST", "/api/sessions", host.token, json={"title": "枇杷专场"})
        sid = int(session["id"])
        product = await rest.call("POST", "/api/products", host.token,
                                  json={"name": "白沙枇杷", "price_fen": 6800})
        await rest.call("POST", f"/api/sessions/{sid}/sales", host.token, json={
            "product_id": product["id"], "stock": 5, "price_fen": 3990, "per_buyer_limit": 2})
        await rest.call("POST", f"/api/sessions/{sid}/pin", host.token,
                        json={"product_id": product["id"]})
        viewer = await kit.page(buyer, f"/live/{sid}")
        anonymous = await kit.page(None, f"/live/{sid}")
        for page in (viewer, anonymous):
            await page.wait_for_function(
                "() => window.linliLive && window.linliLive.conn.socket.connected")
            await page.locator("#pin-card", has_text="讲解中").wait_for(timeout=20_000)
            await page.locator("#open-buy", has_text="立即抢购").wait_for(timeout=20_000)
            assert await page.locator("#open-buy").is_enabled()
            assert await page.locator("#ended").is_hidden()
        # 李阿姨 holds a portion just before the end.
        await viewer.click("#open-buy")
        await viewer.click("#buy")
        await viewer.locator("#hold").wait_for(timeout=20_000)

        await rest.call("POST", f"/api/sessions/{sid}/end", host.token)
        for page in (viewer, anonymous):
            ended = page.locator("#ended")
            await ended.wait_for(timeout=20_000)
            assert "直播已结束" in (await ended.text_content() or "")
            link = page.locator("#replay-link")
            assert await link.get_attribute("href") == f"/replays/{sid}"
            await page.locator("#pin-card").wait_for(state="hidden", timeout=20_000)
            await page.locator("#buy", has_text="已结束").wait_for(state="attached", timeout=20_000)
            assert await page.locator("#buy").is_disabled()
        await kit.shot(anonymous, "live_after_end")
        # Her hold keeps its payment window.
        await viewer.click("#pay")
        await viewer.locator("#confirmation").wait_for(timeout=20_000)
        assert await viewer.locator("#buy").is_disabled()

        # Coming back later shows the same.
        await anonymous.reload()
        await anonymous.locator("#ended").wait_for(timeout=20_000)
        await anonymous.locator(f"#preview a[href='/replays/{sid}']").wait_for(timeout=20_000)
        assert await anonymous.locator("#pin-card").is_hidden()
        await anonymous.locator("#buy", has_text="已结束").wait_for(state="attached", timeout=20_000)
        assert await anonymous.locator("#buy").is_disabled()
        await kit.shot(anonymous, "live_reloaded_after_end")
        assert kit.errors == [], kit.errors
