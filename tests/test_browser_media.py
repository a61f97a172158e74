"""Media in real Chromium: the host goes live from the fake camera over WHIP, viewers watch over
WHEP and (when the WebRTC seats are full) over HLS through hls.js; after the end, the replay page
plays and a chapter jump lands on the product the host was explaining."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from tests.browser_support import Kit, browser_kit

PLAYING = """(min) => {
  const v = document.querySelector('#video');
  if (!v || v.videoWidth === 0 || v.readyState < 2) return false;
  window.__t0 ??= v.currentTime;
  return v.currentTime - window.__t0 >= min;
}"""


async def _live_session(kit: Kit) -> tuple[int, Any]:
    host = await kit.rest.account("laozhang", "host", "老张")
    session = await kit.rest.call("POST", "/api/sessions", host.token, json={"title": "枇杷园现场"})
    return int(session["id"]), host


async def _go_live(kit: Kit, host: Any, sid: int) -> Any:
    page = await kit.page(host, f"/host/{sid}")
    # The fake camera shows up in the picker and in the preview.
    await page.locator("#camera option").first.wait_for(state="attached", timeout=15_000)
    await page.wait_for_function(
        "() => document.querySelector('#preview').videoWidth > 0", timeout=15_000)
    await page.click("#go-live")
    await page.wait_for_function("() => document.body.dataset.publishing === 'yes'", timeout=20_000)
    kbps = await page.locator("#stat-kbps").text_content() or ""
    assert kbps.endswith("kbps") and int(kbps.split()[0]) > 0, kbps
    await kit.shot(page, "host_live")
    return page


async def _assert_playing(page: Any, seconds: float = 1.5) -> None:
    await page.wait_for_function(PLAYING, arg=seconds, timeout=60_000)
    size = await page.evaluate("() => [document.querySelector('#video').videoWidth, "
                               "document.querySelector('#video').videoHeight]")
    assert size[0] > 0 and size[1] > 0, size


async def test_host_goes_live_and_viewers_play(tmp_path: Path, redis_url: str,
                                               redis_client: Redis) -> None:
    # One WebRTC seat: the first viewer takes it, the second is sent to HLS (hls.js).
    async with browser_kit(tmp_path, redis_url, "flow1_go_live",
                           {"LINLI_WEBRTC_VIEWER_CAP": "1"}) as kit:
        sid, host = await _live_session(kit)
        await _go_live(kit, host, sid)

        first = await kit.page(None, f"/live/{sid}", label="viewer-webrtc")
        await _assert_playing(first)
        assert await first.locator("#video-status").get_attribute("data-mode") == "webrtc"
        await kit.shot(first, "viewer_webrtc_playing")

        second = await kit.page(None, f"/live/{sid}", label="viewer-hls")
        await _assert_playing(second)
        assert await second.locator("#video-status").get_attribute("data-mode") == "hls"
        await kit.shot(second, "viewer_hls_playing")
        assert kit.errors == [], kit.errors


async def test_replay_plays_and_chapter_jump_lands_on_product(tmp_path: Path, redis_url: str,
                                                             redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "flow4_replay") as kit:
        sid, host_account = await _live_session(kit)
        batch = await kit.rest.call("POST", "/api/batches", host_account.token, json={
            "code": "PP-2026-05-A", "farm": "老张合作农场", "plot": "东坡3号地"})
        product = await kit.rest.call("POST", "/api/products", host_account.token, json={
            "name": "白玉枇杷", "price_fen": 3990, "batch_id": batch["id"]})
        await kit.rest.call("POST", "/api/batches/PP-2026-05-A/qc-reports", host_account.token, json={
            "tester": "镇农检站", "lab": "镇农检站", "tested_at": "2026-05-20T02:00:00Z",
            "conclusion": "pass", "measurements": [
                {"kind": "pesticide_quick_test", "value": 12.5, "passed": True},
                {"kind": "brix", "value": 13.5, "passed": True}]})
        neighbour = await kit.rest.account("liayi", "viewer", "李阿姨")
        helper = await kit.rest.account("xiaomei", "assistant", "小美")
        host = await _go_live(kit, host_account, sid)
        viewer = await kit.page(neighbour, f"/live/{sid}")
        assistant = await kit.page(helper, f"/moderate/{sid}")
        await _assert_playing(viewer, 1.0)

        # Before any product is shown, a question the assistant answers and pins for everyone:
        # it belongs to no chapter, and the replay still keeps it.
        await viewer.fill("#ask-input", "几点可以自提?")
        await viewer.click("#ask-form button[type=submit]")
        early = assistant.locator("#pending .question", has_text="几点可以自提?")
        await early.wait_for(timeout=20_000)
        await early.locator("button.approve").click()
        early = assistant.locator("#approved .question", has_text="几点可以自提?")
        await early.locator(".answer-input").fill("明天下午三点后")
        await early.locator(".answer-submit").click()
        await early.locator(".answer-text").wait_for(timeout=20_000)
        await early.locator("button.pin-question").click()
        await viewer.locator("#question-list .question.pinned", has_text="几点可以自提?").wait_for(
            timeout=20_000)
        # A few seconds of stream, then the host explains the loquats for a few more.
        await host.wait_for_timeout(3000)
        await host.locator("#products li", has_text="白玉枇杷").locator("button.pin-product").click()
        await viewer.locator("#pin-card #pin-name", has_text="白玉枇杷").wait_for(timeout=20_000)
        await viewer.locator("#pin-batch", has_text="PP-2026-05-A").wait_for(timeout=20_000)
        await viewer.locator("#pin-qc", has_text="13.5").wait_for(timeout=20_000)
        await kit.shot(viewer, "viewer_sees_pin")
        # A question asked while the loquats are pinned belongs to their chapter.
        await viewer.fill("#ask-input", "枇杷核能泡水吗?")
        await viewer.click("#ask-form button[type=submit]")
        pending = assistant.locator("#pending .question", has_text="枇杷核能泡水吗?")
        await pending.wait_for(timeout=20_000)
        await pending.locator("button.approve").click()
        approved = assistant.locator("#approved .question", has_text="枇杷核能泡水吗?")
        await approved.locator(".answer-input").fill("不建议,核有微毒")
        await approved.locator(".answer-submit").click()
        await viewer.locator("#question-list .answer-text", has_text="不建议").wait_for(timeout=20_000)
        # The host's console lists it as approved and answered, with the live counters.
        await host.click("#tab-questions")
        hosted = host.locator("#question-list .question", has_text="枇杷核能泡水吗?")
        await hosted.locator(".answer-text").wait_for(timeout=20_000)
        assert "已回答" in (await hosted.text_content() or "")
        assert int(await host.locator("#c-viewers").text_content() or 0) >= 1
        await viewer.fill("#comment-input", "画面很清楚")
        await viewer.click("#comment-form button[type=submit]")
        await host.click("#tab-comments")
        await host.locator("#comment-list .comment", has_text="画面很清楚").wait_for(timeout=20_000)
        await host.wait_for_timeout(4000)

        # Two taps end the session; the viewer is told and sent to the replay.
        await host.click("#end-session")
        await host.click("#end-session")
        await host.locator("#end-state", has_text="已结束").wait_for(timeout=15_000)
        await kit.shot(host, "host_ended")

        replay = await kit.page(None, f"/replays/{sid}")
        chapter = replay.locator("#chapters .chapter", has_text="白玉枇杷")
        await chapter.wait_for(timeout=120_000)  # the replay build runs ffmpeg
        await replay.locator("#processing").wait_for(state="hidden", timeout=120_000)
        await chapter.locator(".chapter-batch", has_text="PP-2026-05-A").wait_for(timeout=20_000)
        await chapter.locator(".chapter-qc", has_text="13.5").wait_for(timeout=20_000)
        qa = chapter.locator(".chapter-qa .question", has_text="枇杷核能泡水吗?")
        await qa.wait_for(timeout=20_000)
        assert await qa.locator(".answer-text").text_content() == "不建议,核有微毒"
        loose = replay.locator("#qa .question", has_text="几点可以自提?")
        await loose.wait_for(timeout=20_000)
        assert await loose.locator(".answer-text").text_content() == "明天下午三点后"
        assert await replay.locator("#qa .question", has_text="枇杷核能泡水吗?").count() == 0
        data = await kit.rest.call("GET", f"/api/sessions/{sid}/replay")
        assert data["status"] == "ready", data
        target = next(c for c in data["chapters"] if c["product_id"] == product["id"])
        assert target["start_s"] >= 1.0, target

        await replay.wait_for_function(
            "() => document.querySelector('#video').readyState >= 1", timeout=30_000)
        await chapter.locator("button.jump").click()
        await _assert_playing(replay, 0.5)
        at = await replay.evaluate("() => document.querySelector('#video').currentTime")
        assert target["start_s"] <= at <= target["end_s"], (at, target)
        assert await replay.evaluate("() => document.body.dataset.chapterProduct") == str(product["id"])
        assert "current" in (await chapter.get_attribute("class") or "")
        await kit.shot(replay, "replay_chapter_jump")

        # The list of replays offers it with its poster.
        await replay.goto("/replays")
        await replay.locator(f'#replay-list a[href="/replays/{sid}"]').wait_for(timeout=20_000)
        await kit.shot(replay, "replay_list")
        assert kit.errors == [], kit.errors


async def test_host_console_shows_the_demo_then_takes_it_over(tmp_path: Path, redis_url: str,
                                                             redis_client: Redis) -> None:
    # The demo session streams the synthetic picture: the console says so (not 未推流), and
    # 开始直播 takes the stream over instead of failing with publisher_active.
    from tests.browser_support import ADMIN_PASSWORD, Account

    async with browser_kit(tmp_path, redis_url, "flow1_take_over_demo", {"LINLI_DEMO": "1"}) as kit:
        live = await kit.rest.call("GET", "/api/sessions?status=live")
        sid = int(live[0]["id"])
        data = await kit.rest.login("admin", ADMIN_PASSWORD)
        admin = Account(int(data["user"]["id"]) if data.get("user") else 1, "admin", data["token"],
                        "admin", "admin", data.get("user") or {})
        page = await kit.page(admin, f"/host/{sid}")
        await page.wait_for_function(
            "() => !document.querySelector('#publisher-source').hidden", timeout=20_000)
        source = await page.locator("#publisher-source").text_content() or ""
        assert "演示画面" in source or "demo picture" in source, source
        state = await page.locator("#live-state").text_content() or ""
        assert state in ("直播中", "Live"), state
        await page.locator("#camera option").first.wait_for(state="attached", timeout=15_000)
        await page.click("#go-live")
        await page.wait_for_function("() => document.body.dataset.publishing === 'yes'", timeout=20_000)
        await page.wait_for_function(
            "() => /WHIP/.test(document.querySelector('#publisher-source').textContent)",
            timeout=10_000)
        await kit.shot(page, "host_took_over_demo")
        assert kit.errors == [], kit.errors
