"""李阿姨 opens the group link on her phone (Chromium, 390×844, zh-CN, Asia/Shanghai) with no
account: she sees whose community it is and who invites her, signs up with her name, and lands
on a page telling her she is in. A neighbour with an account signs in on the same page and joins
an approval community in one step (待审核). Screenshots of each step; axe-core finds nothing
serious on the join page."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from tests.browser_support import REPO, USER_PASSWORD, Kit, browser_kit
from tests.wechat_protocol import APP_ID, APP_SECRET, Person, wechat_server

# Any character of the other language in a Chinese page (community and people names aside).
LATIN_WORD = re.compile(r"[A-Za-z]{3,}")


def test_every_text_of_the_join_pages_has_both_languages() -> None:
    """A key missing from i18n.js would show the key itself to the neighbour."""
    table = (REPO / "web/static/js/i18n.js").read_text("utf-8")
    pairs = dict(re.findall(r'^  (\w+): \[("[^"]*"), "[^"]*"\],$', table, flags=re.M))
    used: set[str] = set()
    for page in ("join.html", "wechat_callback.html", "invites.html"):
        used |= set(re.findall(r'data-i18n="(\w+)"', (REPO / "web/pages" / page).read_text("utf-8")))
    for script in ("join.js", "joined.js", "wechat_callback.js", "invites.js", "shell.js"):
        text = (REPO / "web/static/js" / script).read_text("utf-8")
        used |= set(re.findall(r'\bt\("(\w+)"', text))
        used |= set(re.findall(r'"data-i18n": "(\w+)"', text))
        used |= {f"invite_{reason}" for reason in ("expired", "revoked", "used_up", "not_found")}
        used |= set(re.findall(r'"(\w+)"', text.split("const KNOWN = [", 1)[1].split("]", 1)[0])) \
            if "const KNOWN" in text else set()
    used |= {f"invite_state_{s}" for s in ("valid", "revoked", "expired", "used_up")}
    used |= {f"weak_password_{r}" for r in ("blank", "too_short", "same_as_username",
                                            "too_guessable")}
    assert sorted(used - pairs.keys()) == []


async def visible_sizes(page: Any) -> list[dict[str, Any]]:
    """Every visible control and text element under <main>: its height and font size."""
    return list(await page.evaluate("""() => [...document.querySelectorAll(
        'main button, main input, main a, main p, main li, main label, main h1, main h2')]
      .filter((el) => el.offsetParent !== null && el.getClientRects().length)
      .map((el) => ({tag: el.tagName, id: el.id, text: (el.textContent || '').trim().slice(0, 30),
                     height: el.getBoundingClientRect().height,
                     font: parseFloat(getComputedStyle(el).fontSize)}))"""))


async def assert_roomy(page: Any) -> None:
    sizes = await visible_sizes(page)
    assert sizes, "nothing visible in <main>"
    small_text = [s for s in sizes if s["font"] < 16]
    assert small_text == [], small_text
    small_targets = [s for s in sizes if s["tag"] in ("BUTTON", "INPUT") and s["height"] < 44]
    assert small_targets == [], small_targets


async def community_with_invite(kit: Kit, host_token: str, name: str,
                                policy: str = "open") -> tuple[int, str]:
    made = await kit.rest.call("POST", "/api/communities", host_token,
                               json={"name": name, "join_policy": policy})
    invite = await kit.rest.call("POST", f"/api/communities/{made['id']}/invites", host_token,
                                 json={"max_uses": 200})
    assert invite["url"].endswith(f"/join/{invite['code']}")
    return int(made["id"]), str(invite["code"])


async def test_from_the_group_link_to_signed_up_and_in(tmp_path: Path, redis_url: str,
                                                       redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "join_signup") as kit:
        host = await kit.rest.account("laozhang", "host", "老张")
        cid = (await kit.rest.call("POST", "/api/communities", host.token,
                                   json={"name": "阳光花园"}))["id"]
        await kit.rest.call("POST", "/api/communities", host.token, json={"name": "翠湖小区"})
        # 老张 makes the link and its QR poster for the group chat.
        console = await kit.page(host, "/invites", label="host")
        await console.locator("#inv-community option").first.wait_for(state="attached")
        await console.select_option("#inv-community", label="阳光花园")
        await console.fill("#inv-uses", "30")
        await console.click("#inv-create")
        await console.locator(".invite-item .invite-url").wait_for()
        url = await console.locator(".invite-item .invite-url").input_value()
        assert re.fullmatch(rf"{re.escape(kit.base)}/join/[\w-]{{16}}", url), url
        assert await console.locator(".invite-item .invite-state").text_content() == \
            "有效 · 已加入 0/30 人 · 有效期至 " + (await console.evaluate(
                "(iso) => new Date(iso).toLocaleString(undefined, {hour12: false})",
                (await kit.rest.call("GET", f"/api/communities/{cid}/invites",
                                     host.token))["items"][0]["expires_at"]))
        await console.locator("img.qr").wait_for()
        assert await console.evaluate("document.querySelector('img.qr').naturalWidth") > 100
        await kit.shot(console, "host_invite_link")
        assert await kit.axe(console, "host_invites") == []
        code = url.rsplit("/", 1)[1]

        page = await kit.page(path=f"/join/{code}")
        await page.locator("#invite-community").wait_for()
        assert await page.locator("#invite-community").text_content() == "阳光花园"
        assert await page.locator("#invite-from").text_content() == "老张 邀请你加入"
        # Seven days from now, in her zone (Asia/Shanghai, UTC+8) as the API's offset says.
        expires = (await kit.rest.call("GET", f"/api/invites/{code}"))["expires_at"]
        shanghai = datetime.fromisoformat(expires).astimezone(timezone(timedelta(hours=8)))
        assert await page.locator("#invite-policy").text_content() == \
            f"注册后立即加入 · 有效期至 {shanghai:%Y/%m/%d %H:%M:%S}".replace("/0", "/")
        await page.locator("#su-username").wait_for()
        await kit.shot(page, "join_page")
        assert await kit.axe(page, "join_page") == []
        await assert_roomy(page)
        main_text = await page.locator("main").inner_text()
        assert LATIN_WORD.findall(main_text) == [], main_text  # Chinese only, one language

        # A password the policy refuses is explained in her language, next to the form.
        await page.fill("#su-display", "李阿姨")
        await page.fill("#su-username", "li_ayi")
        await page.fill("#su-password", "12345678")
        await page.click("#signup-submit")
        await page.locator("#signup-error").wait_for()
        assert await page.locator("#signup-error").text_content() == "密码至少 10 个字符"
        await kit.shot(page, "weak_password")

        await page.fill("#su-password", "枇杷熟了-sunny-garden")
        await page.click("#signup-submit")
        await page.wait_for_url(f"{kit.base}/")
        await page.locator("#flash").wait_for()
        assert await page.locator("#flash").text_content() == "已加入阳光花园"
        assert await page.locator("#top .who-name").text_content() == "李阿姨"
        await kit.shot(page, "joined_home")

        # She really is a member (the community price is hers), and signs in with the password.
        token = await page.evaluate("localStorage.getItem('linli.token')")
        me = await kit.rest.call("GET", "/api/me", token)
        assert me["username"] == "li_ayi" and me["communities"] == [cid]
        assert (await kit.rest.login("li_ayi", "枇杷熟了-sunny-garden"))["token"]
        # The message was for that landing only.
        await page.reload()
        await page.locator("#top .who-name").wait_for()
        assert await page.locator("#flash").count() == 0
        # The host sees her join through the link, and can stop it.
        await console.reload()
        await console.locator(".invite-item .invite-state").wait_for()
        assert (await console.locator(".invite-item .invite-state").text_content()
                or "").startswith("有效 · 已加入 1/30 人")
        await console.click(".invite-item button.danger")
        await console.locator(".invite-item.state-revoked").wait_for()
        assert await console.locator(".invite-item .invite-state").text_content() == \
            "已撤销 · 已加入 1/30 人 · 有效期至 " + (await console.evaluate(
                "(iso) => new Date(iso).toLocaleString(undefined, {hour12: false})",
                (await kit.rest.call("GET", f"/api/communities/{cid}/invites",
                                     host.token))["items"][0]["expires_at"]))
        await kit.shot(console, "host_invite_revoked")
        assert kit.errors == [], kit.errors


async def test_an_existing_neighbour_signs_in_and_waits_for_approval(
        tmp_path: Path, redis_url: str, redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "join_signin") as kit:
        host = await kit.rest.account("laozhang", "host", "老张")
        neighbour = await kit.rest.account("wang_shu", "viewer", "王叔叔")
        _, code = await community_with_invite(kit, host.token, "翠湖小区", policy="approval")

        page = await kit.page(path=f"/join/{code}")
        await page.locator("#show-signin").wait_for()
        assert await page.locator("#invite-policy").text_content() == "加入需要团长审核"
        await page.click("#show-signin")
        await page.locator("#si-username").wait_for()
        await kit.shot(page, "signin_form")
        assert await kit.axe(page, "signin_form") == []
        await page.fill("#si-username", neighbour.username)
        await page.fill("#si-password", USER_PASSWORD)
        await page.click("#signin-submit")
        await page.wait_for_url(f"{kit.base}/")
        await page.locator("#flash").wait_for()
        assert await page.locator("#flash").text_content() == "已申请加入翠湖小区,待审核"
        await kit.shot(page, "pending_home")
        me = await kit.rest.call("GET", "/api/me", neighbour.token)
        assert me["communities"] == []  # not a member until the host approves

        # Signed in already, the link joins in one tap; a dead link says why, in Chinese.
        _, open_code = await community_with_invite(kit, host.token, "东湖苑")
        await page.goto(f"/join/{open_code}")
        await page.locator("#accept").wait_for()
        assert await page.locator("#accept").text_content() == "加入东湖苑"
        await kit.shot(page, "signed_in_accept")
        await page.click("#accept")
        await page.wait_for_url(f"{kit.base}/")
        assert await page.locator("#flash").text_content() == "已加入东湖苑"

        await kit.rest.call("DELETE", f"/api/invites/{open_code}", host.token)
        await page.goto(f"/join/{open_code}")
        await page.locator("#invite-dead").wait_for()
        assert await page.locator("#invite-dead").text_content() == "邀请链接已被撤销,请向团长要一个新的"
        assert await page.locator("#accept").is_hidden()
        await page.goto("/join/no-such-link")
        await page.locator("#invite-dead").wait_for()
        assert await page.locator("#invite-dead").text_content() == "邀请链接不存在,请检查链接是否完整"
        await kit.shot(page, "dead_link")
        # English on request, and then English only.
        await page.click("#lang-switch")
        await page.locator("#invite-dead").wait_for()
        assert await page.locator("h1").text_content() == "Join a community"
        assert await page.locator("#invite-dead").text_content() == \
            "No such invite link: check that the link is complete"
        assert not re.search(r"[\u4e00-\u9fff]", await page.locator("main").inner_text())
        await kit.shot(page, "dead_link_english")
        assert kit.errors == [], kit.errors


async def test_wechat_sign_in_from_the_join_page(tmp_path: Path, redis_url: str,
                                                 redis_client: Redis) -> None:
    """The button goes to WeChat's authorize page (a local server speaking its protocol, which
    consents at once), WeChat sends the browser back to our callback page, and she is in."""
    async with wechat_server() as wechat:
        env = {"LINLI_WECHAT_APP_ID": APP_ID, "LINLI_WECHAT_APP_SECRET": APP_SECRET,
               "LINLI_WECHAT_AUTHORIZE_URL": wechat.authorize_url,
               "LINLI_WECHAT_API_BASE": wechat.base}
        async with browser_kit(tmp_path, redis_url, "join_wechat", extra_env=env) as kit:
            host = await kit.rest.account("laozhang", "host", "老张")
            cid, code = await community_with_invite(kit, host.token, "阳光花园")
            wechat.next_person = Person("o_zhao_nainai", "赵奶奶")
            page = await kit.page(path=f"/join/{code}")
            await page.locator("#wechat-login").wait_for()
            assert await page.locator("#wechat-login").text_content() == "微信登录"
            await kit.shot(page, "wechat_button")
            assert await kit.axe(page, "wechat_button") == []
            await page.click("#wechat-login")
            await page.wait_for_url(f"{kit.base}/")
            await page.locator("#flash").wait_for()
            assert await page.locator("#flash").text_content() == "已加入阳光花园"
            assert await page.locator("#top .who-name").text_content() == "赵奶奶"
            await kit.shot(page, "wechat_joined")
            token = await page.evaluate("localStorage.getItem('linli.token')")
            assert (await kit.rest.call("GET", "/api/me", token))["communities"] == [cid]

            # WeChat's redirect replayed in a browser that did not start the trip is refused.
            stranger = await kit.page()
            await stranger.goto("/auth/wechat/callback?code=abc&state=not-mine")
            await stranger.locator("#wechat-error").wait_for()
            assert await stranger.locator("#wechat-error").text_content() == \
                "登录请求已失效,请重新点微信登录"
            await kit.shot(stranger, "wechat_foreign_state")
            assert kit.errors == [], kit.errors
