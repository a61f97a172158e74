"""Every page loads in real Chromium under the strict CSP, speaks Chinese first, switches to
English, and keeps anonymous visitors out of the actions that need a login. Plus `node --check`
over the page scripts so a syntax error never reaches a browser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from redis.asyncio import Redis

from tests.browser_support import REPO, browser_kit

JS_DIR = REPO / "web" / "static" / "js"


def test_page_scripts_parse_with_node() -> None:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is required in CI (it runs `npm ci` for web/)")
        pytest.skip("node not installed; CI installs it for `npm ci`")
    scripts = sorted(JS_DIR.glob("*.js"))
    assert len(scripts) >= 10
    for script in scripts:
        # Page scripts are ES modules: check them as modules, fed through stdin.
        result = subprocess.run([node, "--input-type=module", "--check"], input=script.read_text("utf-8"),
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{script.name}: {result.stderr}"


IMPORT = re.compile(r'import\s*(?:\{([^}]*)\}|\*\s+as\s+\w+|\w+)\s*from\s*"\./([\w.]+)"')
EXPORT = re.compile(r"export\s+(?:async\s+)?(?:function|class|const|let)\s+([\w$]+)")


def test_module_imports_resolve_to_real_exports() -> None:
    """No build step means no bundler to catch a misspelt import: check the graph here."""
    exports = {p.name: set(EXPORT.findall(p.read_text("utf-8"))) for p in JS_DIR.glob("*.js")}
    for script in JS_DIR.glob("*.js"):
        for names, target in IMPORT.findall(script.read_text("utf-8")):
            assert target in exports, f"{script.name} imports missing ./{target}"
            for name in filter(None, (n.strip().split(" as ")[0] for n in names.split(","))):
                assert name in exports[target], f"{script.name}: ./{target} has no export {name}"


def test_pages_reference_only_existing_scripts() -> None:
    for page in (REPO / "web" / "pages").glob("*.html"):
        text = page.read_text("utf-8")
        assert "<script>" not in text and " style=" not in text, f"{page.name}: inline code or style"
        for src in re.findall(r'src="/static/js/([\w.]+)"', text):
            assert (JS_DIR / src).is_file(), f"{page.name} loads missing {src}"


async def test_every_page_loads_without_csp_errors(tmp_path: Path, redis_url: str,
                                                   redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "pages_load") as kit:
        host = await kit.rest.account("host1", "host", "老张")
        session = await kit.rest.call("POST", "/api/sessions", host.token, json={"title": "枇杷园直播"})
        sid = session["id"]
        page = await kit.page()
        # Socket.IO frames received per WebSocket URL: the room's socket must get through
        # `connect-src 'self'` (CSP 3 matches ws: on the page's own host and port).
        frames: dict[str, int] = {}

        def on_websocket(ws: Any) -> None:
            frames.setdefault(ws.url, 0)
            ws.on("framereceived", lambda _frame: frames.__setitem__(ws.url, frames[ws.url] + 1))

        page.on("websocket", on_websocket)
        for path in ("/", "/login", f"/live/{sid}", "/replays", f"/replays/{sid}",
                     "/trace/NOPE-1", "/dashboard"):
            await page.goto(path)
            await page.wait_for_load_state("networkidle")
            # The shell rendered (the scripts ran) and the default language is Chinese.
            assert await page.locator("#top .brand").text_content() == "邻里"
            assert await page.evaluate("document.documentElement.lang") == "zh-CN"
            await kit.shot(page, path.strip("/").replace("/", "_") or "index")
            if path.startswith("/live/"):
                assert any("/socket.io/" in url and url.startswith("ws://") and count > 0
                           for url, count in frames.items()), frames
        # The session appears on the home page, linking to its room.
        await page.goto("/")
        await page.locator(f'a[href="/live/{sid}"]').wait_for()
        # Once ended, its room stops trying to play and points to the replay.
        await kit.rest.call("POST", f"/api/sessions/{sid}/end", host.token)
        await page.goto(f"/live/{sid}")
        await page.locator(f'#preview a[href="/replays/{sid}"]').wait_for(timeout=20_000)
        assert await page.locator("#video-status").text_content() == "已结束"
        assert kit.errors == [], kit.errors


async def test_language_switch_and_login_redirect(tmp_path: Path, redis_url: str,
                                                  redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "lang_login") as kit:
        host = await kit.rest.account("host1", "host", "老张")
        viewer = await kit.rest.account("viewer1", "viewer", "李阿姨")
        sid = (await kit.rest.call("POST", "/api/sessions", host.token, json={"title": "直播"}))["id"]
        page = await kit.page(path=f"/live/{sid}")
        await page.locator("#comment-form button").wait_for()
        assert await page.locator("#comment-form button").text_content() == "发送"
        await page.click("#lang-switch")
        await page.wait_for_load_state()
        assert await page.locator("#comment-form button").text_content() == "Send"
        assert await page.evaluate("localStorage.getItem('linli.lang')") == "en"
        await kit.shot(page, "english")
        # Anonymous: focusing the comment box sends the visitor to /login?next=<the room>.
        await page.click("#comment-input")
        await page.wait_for_url("**/login?next=*")
        assert f"next=%2Flive%2F{sid}" in page.url
        await page.fill("#username", viewer.username)
        await page.fill("#password", "browser-user-pass-1")
        await page.click("#login-submit")
        await page.wait_for_url(f"**/live/{sid}")
        assert await page.evaluate("!!localStorage.getItem('linli.token')")
        await page.locator("#top .who-name").wait_for()
        assert await page.locator("#top .who-name").text_content() == "李阿姨"
        await kit.shot(page, "signed_in")
        # A crafted next= pointing at another site lands on the home page instead.
        await page.goto("/login?next=//evil.example/")
        await page.fill("#username", viewer.username)
        await page.fill("#password", "browser-user-pass-1")
        await page.click("#login-submit")
        await page.wait_for_url(f"{kit.base}/")
        assert kit.errors == [], kit.errors


async def test_trace_and_dashboard_pages(tmp_path: Path, redis_url: str,
                                         redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "trace_dashboard") as kit:
        host = await kit.rest.account("laozhang", "host", "老张")
        await kit.rest.call("POST", "/api/sessions", host.token, json={"title": "枇杷园直播"})
        await kit.rest.call("POST", "/api/batches", host.token, json={
            "code": "PP-2026-05-A", "farm": "老张合作农场", "plot": "东坡3号地"})
        await kit.rest.call("POST", "/api/batches/PP-2026-05-A/qc-reports", host.token, json={
            "tester": "镇农检站", "tested_at": "2026-05-20T02:00:00Z", "conclusion": "pass",
            "measurements": [{"kind": "brix", "value": 13.5, "passed": True}]})
        # The QR code's target: anyone sees origin, QC and a verified record.
        page = await kit.page(None, "/trace/PP-2026-05-A")
        await page.locator("#trace .qc-reports .qc-report", has_text="13.5").wait_for(timeout=20_000)
        await page.locator("#trace .verify.ok").wait_for(timeout=20_000)
        assert "老张合作农场" in (await page.locator("#trace").text_content() or "")
        await kit.shot(page, "trace")
        await page.goto("/trace/NO-SUCH-BATCH")
        await page.locator("#message", has_text="没有找到批次").wait_for(timeout=20_000)

        # The dashboard asks for a login, then shows the host's sessions with charts.
        dash = await kit.page(host, "/dashboard")
        await dash.locator("#metrics tbody tr", has_text="枇杷园直播").wait_for(timeout=20_000)
        await dash.wait_for_function(
            "() => [...document.querySelectorAll('#figures img')].some((i) => i.naturalWidth > 0)",
            timeout=20_000)
        await kit.shot(dash, "dashboard")
        assert kit.errors == [], kit.errors


# Values of ?next= that a browser would take to another site (tabs and newlines are dropped,
# leading controls trimmed, "\" read as "/"), and one of ours that must still work.
OPEN_REDIRECTS = ("\t//evil.example/", "\n//evil.example/", "/\t/evil.example/",
                  "/\n/evil.example/", "/\r\n/evil.example/", " //evil.example/", "/\\evil.example/",
                  "/\t\\evil.example/", "\\/evil.example/", "https://evil.example/",
                  "//evil.example/", "///evil.example/", "javascript:alert(document.domain)",
                  "/\u3000/evil.example/")


async def test_login_next_never_leaves_the_site(tmp_path: Path, redis_url: str,
                                                redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "login_next") as kit:
        viewer = await kit.rest.account("viewer_next", "viewer", "王叔")
        page = await kit.page()
        # Any other site answers (so a redirect that escapes is seen, not a DNS error).
        await page.route(re.compile(r"^(?!" + re.escape(kit.base) + ").*"),
                         lambda route: route.fulfill(status=200, body="evil"))
        landed = {}
        for payload in (*OPEN_REDIRECTS, "/live/7?from=login#comments"):
            await page.goto("/login?next=" + quote(payload, safe=""))
            await page.evaluate("localStorage.clear()")
            await page.fill("#username", viewer.username)
            await page.fill("#password", "browser-user-pass-1")
            await page.click("#login-submit")
            await page.wait_for_url(lambda url: "/login" not in url)
            await page.wait_for_load_state()
            landed[payload] = page.url
        assert landed.pop("/live/7?from=login#comments") == f"{kit.base}/live/7?from=login#comments"
        assert landed == {payload: f"{kit.base}/" for payload in OPEN_REDIRECTS}


async def test_server_errors_are_shown_in_the_pages_language(tmp_path: Path, redis_url: str,
                                                              redis_client: Redis) -> None:
    """The server writes some messages as "中文 / English": a page shows the half for its
    language, never both."""
    async with browser_kit(tmp_path, redis_url, "errors_one_language") as kit:
        viewer = await kit.rest.account("viewer_lang", "viewer", "王叔")
        page = await kit.page(None, "/login")
        for lang, mine, other in (("zh", "用户名或密码错误", "Wrong username"),
                                  ("en", "Wrong username or password", "用户名或密码错误")):
            await page.evaluate(f"localStorage.setItem('linli.lang', '{lang}')")
            await page.reload()
            await page.fill("#username", viewer.username)
            await page.fill("#password", "not-the-password-1")
            await page.click("#login-submit")
            shown = page.locator("#login-error", has_text=mine)
            await shown.wait_for(timeout=20_000)
            text = await shown.inner_text()
            assert other not in text and " / " not in text, text
            await kit.shot(page, f"login_error_{lang}")
        assert kit.errors == [], kit.errors
