"""Live room in real Chromium, against the real server and the official socket.io client:
comments between viewers, the moderated Q&A round trip, and user text that must stay text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from tests.browser_support import Account, Kit, browser_kit

XSS_SCRIPT = "<script>window.__xss = 1</script>坏人"
XSS_IMG = '<img src=x onerror="window.__xss = 2">'


async def _room(kit: Kit) -> tuple[int, dict[str, Account]]:
    rest = kit.rest
    people = {
        "host": await rest.account("laozhang", "host", "老张"),
        "assistant": await rest.account("xiaomei", "assistant", "小美"),
        "liayi": await rest.account("liayi", "viewer", "李阿姨"),
        "wangshu": await rest.account("wangshu", "viewer", "王叔"),
    }
    session = await rest.call("POST", "/api/sessions", people["host"].token,
                              json={"title": "老张的枇杷园"})
    return int(session["id"]), people


async def _comment(page: Any, text: str) -> None:
    await page.fill("#comment-input", text)
    await page.click("#comment-form button[type=submit]")


async def _joined(page: Any, console: str = "linliLive", socket: str = "conn") -> None:
    await page.wait_for_function(
        f"() => window.{console} && window.{console}.{socket}.socket.connected")


async def test_comment_and_moderated_question_round_trip(tmp_path: Path, redis_url: str,
                                                         redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "flow2_comments_qa") as kit:
        sid, people = await _room(kit)
        liayi = await kit.page(people["liayi"], f"/live/{sid}")
        # Not live yet: the room shows the session as scheduled instead of a black box.
        await liayi.locator("#preview", has_text="即将开播").wait_for()
        wangshu = await kit.page(people["wangshu"], f"/live/{sid}")
        anonymous = await kit.page(None, f"/live/{sid}")
        assistant = await kit.page(people["assistant"], f"/moderate/{sid}")
        for page in (liayi, wangshu, anonymous):
            await _joined(page)
        await _joined(assistant, "linliModerate", "mod")

        # 1. A comment from 李阿姨 reaches 王叔 and the anonymous watcher, with her name.
        await _comment(liayi, "枇杷甜不甜?")
        for page in (wangshu, anonymous):
            row = page.locator("#comment-list .comment", has_text="枇杷甜不甜?")
            await row.wait_for(timeout=20_000)
            assert await row.locator(".comment-user").text_content() == "李阿姨"
        assert await liayi.locator("#comment-input").input_value() == ""
        await kit.shot(wangshu, "viewer2_sees_comment")
        # The assistant's console shows it too, with moderation tools.
        await assistant.locator("#comment-list .comment", has_text="枇杷甜不甜?").wait_for()

        # 2. 李阿姨 asks; it waits for review (viewers do not see it yet).
        await liayi.fill("#ask-input", "孩子能吃吗?")
        await liayi.click("#ask-form button[type=submit]")
        pending = assistant.locator("#pending .question", has_text="孩子能吃吗?")
        await pending.wait_for(timeout=20_000)
        await kit.shot(assistant, "question_pending")
        assert await wangshu.locator("#question-list .question").count() == 0

        # 3. The assistant approves: every viewer sees the question.
        await pending.locator("button.approve").click()
        for page in (liayi, wangshu):
            await page.locator("#question-list .question", has_text="孩子能吃吗?").wait_for(timeout=20_000)
        approved = assistant.locator("#approved .question", has_text="孩子能吃吗?")
        await approved.wait_for()

        # 4. She answers: the asker sees the answer under her question.
        await approved.locator(".answer-input").fill("可以,农残快检合格,三岁以上放心吃")
        await approved.locator(".answer-submit").click()
        answer = liayi.locator("#question-list .question", has_text="孩子能吃吗?").locator(".answer-text")
        await answer.wait_for(timeout=20_000)
        assert await answer.text_content() == "可以,农残快检合格,三岁以上放心吃"
        await kit.shot(liayi, "viewer_sees_answer")
        await kit.shot(assistant, "assistant_console")

        # 5. 王叔 upvotes the question; the count reaches every screen through `state`.
        await wangshu.locator("#question-list .question button.upvote").click()
        await liayi.locator("#question-list .question .votes", has_text="1").wait_for(timeout=20_000)

        # 6. The assistant deletes a comment: it disappears for everyone.
        await _comment(wangshu, "广告:加我微信")
        spam = liayi.locator("#comment-list .comment", has_text="广告:加我微信")
        await spam.wait_for(timeout=20_000)
        await assistant.locator("#comment-list .comment", has_text="广告:加我微信").locator(
            "button.delete-comment").click()
        await spam.wait_for(state="detached", timeout=20_000)

        # 7. Likes add up on everyone's screen (coalesced through `state`).
        for _ in range(3):
            await wangshu.click("#like")
        await liayi.locator("#likes", has_text="3").wait_for(timeout=20_000)

        # 8. An anonymous watcher who tries to comment is sent to the login page.
        await anonymous.click("#comment-input")
        await anonymous.wait_for_url("**/login?next=*")
        assert kit.errors == [], kit.errors


async def test_comment_markup_renders_as_text_and_never_runs(tmp_path: Path, redis_url: str,
                                                             redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "xss_comments") as kit:
        sid, people = await _room(kit)
        attacker = await kit.page(people["wangshu"], f"/live/{sid}")
        victim = await kit.page(people["liayi"], f"/live/{sid}")
        assistant = await kit.page(people["assistant"], f"/moderate/{sid}")
        for page in (attacker, victim):
            await _joined(page)
        await _joined(assistant, "linliModerate", "mod")
        await _comment(attacker, XSS_SCRIPT)
        await attacker.locator("#comment-list .comment").first.wait_for(timeout=20_000)
        await _comment(attacker, XSS_IMG)
        # A question with markup, approved, so it reaches viewers' Q&A too.
        await attacker.fill("#ask-input", XSS_IMG)
        await attacker.click("#ask-form button[type=submit]")
        pending = assistant.locator("#pending .question")
        await pending.first.wait_for(timeout=20_000)
        await pending.first.locator("button.approve").click()

        for page in (victim, assistant):
            texts = page.locator("#comment-list .comment .comment-text")
            await texts.nth(1).wait_for(timeout=20_000)
            shown = await texts.all_text_contents()
            # Exactly the characters that were typed, shown as text...
            assert XSS_SCRIPT in shown and XSS_IMG in shown, shown
            # ...and no element was created from them anywhere in the page.
            assert await page.evaluate(
                "() => document.querySelectorAll('script:not([src]), img').length") == 0
        await victim.locator("#question-list .question .q").wait_for(timeout=20_000)
        assert await victim.locator("#question-list .question .q").text_content() == XSS_IMG
        assert await victim.locator("#question-list img").count() == 0
        await victim.wait_for_timeout(500)  # give an onerror handler every chance to fire
        for page in (victim, assistant, attacker):
            assert await page.evaluate("window.__xss") is None
        await kit.shot(victim, "markup_as_text")
        await kit.shot(assistant, "markup_in_console")
        assert kit.errors == [], kit.errors


async def test_reconnect_catches_up_what_was_missed(tmp_path: Path, redis_url: str,
                                                    redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "reconnect_catch_up") as kit:
        sid, people = await _room(kit)
        talker = await kit.page(people["wangshu"], f"/live/{sid}")
        # Two talkers: one person may send only a few comments per 10 s (the hub's rate limit).
        other = await kit.page(people["host"], f"/live/{sid}")
        away = await kit.page(people["liayi"], f"/live/{sid}")
        for page in (talker, other, away):
            await _joined(page)
        await _comment(talker, "第0条")
        await away.locator("#comment-list .comment", has_text="第0条").wait_for(timeout=20_000)

        # Drop 李阿姨's connection (as a train tunnel would) and keep her away for a few seconds.
        # (Automatic reconnection is held off until the others have talked, then let go.)
        await away.evaluate("""() => {
            const manager = window.linliLive.conn.socket.io;
            manager.reconnection(false);
            manager.engine.close();
        }""")
        await away.locator("#notice", has_text="正在重连").wait_for(timeout=10_000)
        await kit.shot(away, "reconnecting")
        for n in range(1, 6):
            sender = talker if n % 2 else other
            await _comment(sender, f"第{n}条")
            await sender.locator("#comment-list .comment", has_text=f"第{n}条").wait_for(timeout=20_000)

        assert await away.locator("#comment-list .comment").count() == 1
        await away.evaluate("""() => {
            const socket = window.linliLive.conn.socket;
            socket.io.reconnection(true);
            socket.connect();
        }""")
        # Back online: exactly the five missed comments arrive, in order, and she is told so.
        await away.locator("#notice", has_text="补上了5条消息").wait_for(timeout=20_000)
        shown = await away.locator("#comment-list .comment .comment-text").all_text_contents()
        assert shown == [f"第{n}条" for n in range(6)], shown
        await kit.shot(away, "caught_up")
        assert kit.errors == [], kit.errors


async def test_comment_list_stays_bounded_under_a_flood(tmp_path: Path, redis_url: str,
                                                        redis_client: Redis) -> None:
    """Batches render in one fragment per frame and the list never outgrows its cap."""
    async with browser_kit(tmp_path, redis_url, "comment_flood") as kit:
        sid, _people = await _room(kit)
        page = await kit.page(None, f"/live/{sid}")
        await _joined(page)
        result = await page.evaluate("""async () => {
            const list = window.linliLive.comments;
            const box = document.querySelector('#comment-list');
            let mutations = 0;
            new MutationObserver((records) => { mutations += records.length; })
                .observe(box, { childList: true });
            for (let b = 0; b < 60; b++) {
                const batch = [];
                for (let i = 0; i < 10; i++) {
                    const n = b * 10 + i;
                    batch.push({ id: `c${n}`, seq: n + 1, user: { name: `邻居${n}` },
                                 text: `评论${n}`, ts: 0 });
                }
                list.add(batch);
                list.add(batch);  // a resent batch must not duplicate anything
            }
            await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
            return { count: box.childElementCount, first: box.firstElementChild.dataset.id,
                     last: box.lastElementChild.textContent, mutations };
        }""")
        assert result["count"] == 200, result
        assert result["first"] == "c400" and result["last"].endswith("评论599"), result
        # 600 comments arrived within one frame: one append (and its trim), not 600.
        assert result["mutations"] <= 3, result
        assert kit.errors == [], kit.errors
