"""The assistant's console in real Chromium: banned words, mute, merge duplicates, pin a
question, slow mode and ban, each seen from the viewers' side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from tests.browser_support import browser_kit


async def _joined(page: Any, console: str = "linliLive", socket: str = "conn") -> None:
    await page.wait_for_function(
        f"() => window.{console} && window.{console}.{socket}.socket.connected")


async def _comment(page: Any, text: str) -> None:
    await page.fill("#comment-input", text)
    await page.click("#comment-form button[type=submit]")


async def _ask(page: Any, text: str) -> None:
    await page.fill("#ask-input", text)
    await page.click("#ask-form button[type=submit]")


async def test_moderation_console_tools(tmp_path: Path, redis_url: str,
                                        redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "moderation_tools") as kit:
        rest = kit.rest
        host = await rest.account("laozhang", "host", "老张")
        helper = await rest.account("xiaomei", "assistant", "小美")
        liayi = await rest.account("liayi", "viewer", "李阿姨")
        wangshu = await rest.account("wangshu", "viewer", "王叔")
        chenjie = await rest.account("chenjie", "viewer", "陈姐")
        sid = (await rest.call("POST", "/api/sessions", host.token, json={"title": "审核"}))["id"]
        mod = await kit.page(helper, f"/moderate/{sid}")
        li, wang, chen = [await kit.page(a, f"/live/{sid}") for a in (liayi, wangshu, chenjie)]
        await _joined(mod, "linliModerate", "mod")
        await _joined(mod, "linliModerate", "live")
        for page in (li, wang, chen):
            await _joined(page)

        # Banned words are masked for everyone.
        await mod.fill("#banned-words", "微信\n加群")
        await mod.click("#words-form button[type=submit]")
        await mod.locator("#toasts .toast", has_text="已保存").wait_for(timeout=20_000)
        await _comment(wang, "加我微信买更便宜")
        await li.locator("#comment-list .comment-text", has_text="加我**买更便宜").wait_for(timeout=20_000)

        # Mute 王叔 from his comment row: he is told, and his next comment is refused.
        row = mod.locator("#comment-list .comment", has_text="加我**买更便宜")
        await row.locator("button.mute-user").click()
        await wang.locator("#notice", has_text="你已被禁言").wait_for(timeout=20_000)
        await _comment(wang, "我还想说")
        await wang.locator("#toasts .toast-error", has_text="禁言").wait_for(timeout=20_000)
        # The console names the person (not an id) and when the mute ends, in local time.
        sanction = mod.locator("#sanctions li", has_text="王叔")
        await sanction.wait_for(timeout=20_000)
        assert f"#{wangshu.id}" not in await sanction.inner_text()
        assert "至" in await sanction.inner_text()
        await kit.shot(wang, "muted_viewer")

        # Duplicates: approve one, merge the other into it; pin it for everyone.
        await _ask(li, "枇杷能放几天?")
        first = mod.locator("#pending .question", has_text="枇杷能放几天?")
        await first.wait_for(timeout=20_000)
        first_id = int((await first.get_attribute("data-id")) or 0)
        await _ask(chen, "买回去可以放多久?")
        second = mod.locator("#pending .question", has_text="买回去可以放多久?")
        await second.wait_for(timeout=20_000)
        await first.locator("button.approve").click()
        approved = mod.locator("#approved .question", has_text="枇杷能放几天?")
        await approved.wait_for(timeout=20_000)
        await second.locator(".merge-into").fill(str(first_id))
        await second.locator(".merge-form button[type=submit]").click()
        await second.wait_for(state="detached", timeout=20_000)
        await approved.locator("button.pin-question").click()
        pinned = chen.locator("#question-list .question.pinned", has_text="枇杷能放几天?")
        await pinned.wait_for(timeout=20_000)
        assert await chen.locator("#question-list .question", has_text="买回去可以放多久?").count() == 0
        await kit.shot(mod, "console_after_merge_and_pin")

        # Every comment row shows its time; mutes can be long or permanent.
        assert await mod.locator("#comment-list .comment time.comment-time").count() > 0
        await mod.select_option("#mute-length", "")
        await _comment(li, "我也说一句")
        li_row = mod.locator("#comment-list .comment", has_text="我也说一句")
        await li_row.wait_for(timeout=20_000)
        await li_row.locator("button.mute-user").click()
        forever = mod.locator("#sanctions li", has_text="李阿姨")
        await forever.wait_for(timeout=20_000)
        assert "永久" in await forever.inner_text()
        assert await kit.axe(mod, "moderation") == []
        await kit.shot(mod, "sanctions")
        await forever.locator("button.lift").click()
        await forever.wait_for(state="detached", timeout=20_000)
        await li.locator("#notice", has_text="解除禁言").wait_for(timeout=20_000)

        # Slow mode: a second comment within the window is refused with the reason.
        await mod.fill("#slow-mode", "30")
        await mod.click("#slow-form button[type=submit]")
        await mod.locator("#toasts .toast", has_text="已保存").last.wait_for(timeout=20_000)
        await _comment(li, "第一条")
        await li.locator("#comment-list .comment-text", has_text="第一条").wait_for(timeout=20_000)
        await _comment(li, "第二条")
        await li.locator("#toasts .toast-error", has_text="慢速模式").wait_for(timeout=20_000)

        # Ban 陈姐: she is removed from the room and told so; the others carry on.
        await _comment(chen, "这是我的评论")
        chen_row = mod.locator("#comment-list .comment", has_text="这是我的评论")
        await chen_row.wait_for(timeout=20_000)
        await chen_row.locator("button.ban-user").click()
        await chen.locator("#notice", has_text="你已被移出直播间").wait_for(timeout=20_000)
        await chen.wait_for_function("() => !window.linliLive.conn.socket.connected", timeout=20_000)
        await kit.shot(chen, "banned_viewer")
        await chen.reload()
        await chen.locator("#notice", has_text="移出").wait_for(timeout=20_000)

        # A viewer who opens the console sees one sentence and none of its controls.
        snoop = await kit.page(wangshu, f"/moderate/{sid}", label="snoop")
        await snoop.locator("#mod-error", has_text="没有审核权限").wait_for(timeout=20_000)
        for control in ("#mod-console", "button.ban-user", "button.mute-user", "#slow-form"):
            assert await snoop.locator(control).count() == 0, control
        await kit.shot(snoop, "viewer_no_access")
        assert kit.errors == [], kit.errors
