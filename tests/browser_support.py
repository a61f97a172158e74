"""Real-browser test support: the real server as a subprocess, REST set-up, Chromium via Playwright.

The server runs as `python -m server serve` on a free loopback port (the same entry point as
`make run`) so the browser talks to exactly what users get: pages, Socket.IO, WHIP/WHEP, HLS.
Chromium is the distro's (`/usr/bin/chromium`); Playwright's own browser download is never used.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
PHONE = {"width": 390, "height": 844}
AXE_JS = REPO / "web/node_modules/axe-core/axe.min.js"
ADMIN_PASSWORD = "browser-admin-pass-1"
USER_PASSWORD = "browser-user-pass-1"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("LINLI_CHROMIUM"), "/usr/bin/chromium",
                      shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def require_chromium() -> str:
    """The Chromium path, or skip (locally) / fail (in CI) with the reason printed."""
    path = chromium_path()
    if path is not None:
        return path
    reason = "Chromium not installed (apt-get install chromium); CI runs the browser tests"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser tests: {reason}")
    print(f"SKIP browser tests: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_templates: dict[str, Path] = {}


async def sqlite_template() -> Path:
    """A SQLite database migrated to head once per test process. Each page test's server starts
    on a copy rather than running every migration from empty (~1.6 s of CPU a start, some
    seventy starts a run); starting from empty is what `make run` and tests/test_foundation.py do."""
    if "db" not in _templates:
        from server.database import Database

        path = Path(tempfile.mkdtemp(prefix="linli-browser-db-")) / "linli.db"
        database = Database(f"sqlite+aiosqlite:///{path}")
        try:
            await database.migrate()
        finally:
            await database.close()
        _templates["db"] = path
    return _templates["db"]


class ServerProcess:
    """`python -m server serve` on a free port with its own data dir, demo off."""

    def __init__(self, data_dir: Path, redis_url: str, extra_env: dict[str, str] | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.log_path = data_dir / "server.log"
        self.env = {
            **os.environ, "PORT": str(self.port), "HOST": "127.0.0.1",
            "LINLI_DATA_DIR": str(data_dir), "REDIS_URL": redis_url, "LINLI_DEMO": "0",
            "LINLI_ADMIN_PASSWORD": ADMIN_PASSWORD, "LINLI_SECRET_KEY": "b" * 40,
            "LINLI_LOG_LEVEL": "WARNING", **(extra_env or {}),
        }
        self.env.pop("DATABASE_URL", None)
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, timeout_s: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if "DATABASE_URL" not in self.env and not (self.data_dir / "linli.db").exists():
            template = await sqlite_template()
            for part in template.parent.glob(template.name + "*"):  # with any -wal/-shm
                shutil.copyfile(part, self.data_dir / part.name)
        log = self.log_path.open("ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "server", "serve", cwd=str(REPO), env=self.env,
                stdout=log, stderr=log,
            )
        finally:
            log.close()
        deadline = asyncio.get_running_loop().time() + timeout_s
        async with aiohttp.ClientSession() as http:
            while True:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"server exited early:\n{self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(f"{self.base}/healthz") as response:
                        if response.status == 200:
                            return
                if asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError(f"server did not become healthy:\n{self.log_tail()}")
                await asyncio.sleep(0.2)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@dataclass
class Account:
    id: int
    username: str
    token: str
    role: str
    display_name: str = ""
    user: dict[str, Any] = field(default_factory=dict)


class Rest:
    """The public REST API as a test sees it (admin creates people, hosts create sessions)."""

    def __init__(self, base: str, http: aiohttp.ClientSession) -> None:
        self.base = base
        self.http = http
        self.admin_token = ""

    async def call(self, method: str, path: str, token: str | None = None,
                   json: Any = None, headers: dict[str, str] | None = None,
                   expect: int | tuple[int, ...] = (200, 201)) -> Any:
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, self.base + path, json=json, headers=sent) as response:
            text = await response.text()
            allowed = (expect,) if isinstance(expect, int) else expect
            assert response.status in allowed, f"{method} {path} → {response.status}: {text[:500]}"
            return await response.json(content_type=None) if text else None

    async def login(self, username: str, password: str) -> dict[str, Any]:
        data: dict[str, Any] = await self.call(
            "POST", "/api/auth/token", json={"username": username, "password": password})
        return data

    async def setup_admin(self) -> None:
        self.admin_token = (await self.login("admin", ADMIN_PASSWORD))["token"]

    async def account(self, username: str, role: str, display_name: str = "") -> Account:
        created = await self.call("POST", "/api/users", self.admin_token, json={
            "username": username, "password": USER_PASSWORD, "role": role,
            "display_name": display_name or username})
        data = await self.login(username, USER_PASSWORD)
        return Account(int(created["id"]), username, data["token"], role, display_name or username,
                       data.get("user") or {})

    async def paths(self) -> set[str]:
        doc = await self.call("GET", "/api/openapi.json")
        return set(doc.get("paths", {}))


@contextlib.asynccontextmanager
async def running_server(tmp_path: Path, redis_url: str, extra_env: dict[str, str] | None = None,
                         ) -> AsyncIterator[tuple[ServerProcess, Rest]]:
    server = ServerProcess(tmp_path / "server", redis_url, extra_env)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            rest = Rest(server.base, http)
            await rest.setup_admin()
            yield server, rest
    finally:
        await server.stop()


def artifact_dir(test_name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)
    path = ARTIFACTS / safe
    path.mkdir(parents=True, exist_ok=True)
    return path


def login_script(account: Account) -> str:
    """An init script that signs a browser context in as `account` (what the login page stores)."""
    import json

    user = account.user or {"id": account.id, "username": account.username, "role": account.role,
                            "display_name": account.display_name}
    return (f"localStorage.setItem('linli.token', {json.dumps(account.token)});"
            f"localStorage.setItem('linli.user', {json.dumps(json.dumps(user))});")


@dataclass
class Kit:
    """One test's world: the server, its REST API, a Chromium, and helpers for pages."""

    server: ServerProcess
    rest: Rest
    browser: Any
    shots: Path
    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    contexts: list[Any] = field(default_factory=list)
    step: int = 0

    @property
    def base(self) -> str:
        return self.server.base

    async def page(self, account: Account | None = None, path: str | None = None,
                   label: str = "", viewport: dict[str, int] | None = None,
                   user_agent: str | None = None) -> Any:
        """A fresh browser context (its own localStorage), signed in as `account` if given: a
        phone (390×844, touch) in zh-CN and Asia/Shanghai unless another viewport is given."""
        phone = viewport is None
        context = await self.browser.new_context(
            viewport=viewport or PHONE, locale="zh-CN", timezone_id="Asia/Shanghai",
            has_touch=phone, base_url=self.base,
            **({"user_agent": user_agent} if user_agent else {}))
        self.contexts.append(context)
        if account is not None:
            await context.add_init_script(login_script(account))
        page = await context.new_page()
        who = label or (account.username if account else "anonymous")
        page.on("console", lambda msg: self._console(who, msg))
        page.on("pageerror", lambda err: self.errors.append(f"{who}: pageerror {err}"))
        if path is not None:
            await page.goto(path)
        return page

    def _console(self, who: str, msg: Any) -> None:
        # CSP violations and uncaught errors are bugs in the pages; network 4xx/5xx are not.
        text = str(msg.text)
        self.console.append(f"{who} [{msg.type}] {text}"[:500])
        del self.console[:-200]
        if msg.type == "error" and ("Content Security Policy" in text or "Uncaught" in text):
            self.errors.append(f"{who}: {text}")

    async def failure_report(self) -> None:
        """Screenshots of every open page and the browser console, for a failed test."""
        print("--- browser console ---\n" + "\n".join(self.console[-80:]))
        for index, context in enumerate(self.contexts):
            for page in context.pages:
                with contextlib.suppress(Exception):
                    await page.screenshot(path=str(self.shots / f"failure-{index}.png"), full_page=True)

    @staticmethod
    async def nav(page: Any, href: str) -> None:
        """Go somewhere through the top bar as a person would: on a phone its links sit behind
        the 菜单 button, so open that first."""
        toggle = page.locator("#nav-toggle")
        if await toggle.is_visible() and await toggle.get_attribute("aria-expanded") != "true":
            await toggle.click()
        await page.click(f"#nav-links a[href='{href}']")

    async def axe(self, page: Any, name: str) -> list[dict[str, Any]]:
        """axe-core's serious and critical violations on the page as it is now (the report is
        saved beside the screenshots). Pages are checked as they are seen: WCAG 2.1 A and AA."""
        import json

        if not await page.evaluate("typeof window.axe !== 'undefined'"):
            # Evaluated over the DevTools protocol: the pages' CSP (script-src 'self') refuses an
            # injected <script>, and the pages must be checked with their real CSP in force.
            await page.evaluate(AXE_JS.read_text() + "\n;true")
        result = await page.evaluate(
            "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a',"
            " 'wcag21aa']}, resultTypes: ['violations']})")
        bad = [{"id": v["id"], "impact": v["impact"], "help": v["help"],
                "nodes": [n["target"] for n in v["nodes"]][:5]}
               for v in result["violations"] if v["impact"] in ("serious", "critical")]
        (self.shots / f"axe-{name}.json").write_text(
            json.dumps(result["violations"], ensure_ascii=False, indent=1))
        return bad

    async def shot(self, page: Any, name: str) -> None:
        self.step += 1
        await page.screenshot(path=str(self.shots / f"{self.step:02d}-{name}.png"), full_page=True)


@contextlib.asynccontextmanager
async def browser_kit(tmp_path: Path, redis_url: str, test_name: str,
                      extra_env: dict[str, str] | None = None) -> AsyncIterator[Kit]:
    chromium = require_chromium()
    from playwright.async_api import async_playwright

    async with (running_server(tmp_path, redis_url, extra_env) as (server, rest),
                async_playwright() as playwright):
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        kit = Kit(server, rest, browser, artifact_dir(test_name))
        try:
            yield kit
        except BaseException:
            await kit.failure_report()
            print(f"--- server log ---\n{server.log_tail()}")
            raise
        finally:
            for context in kit.contexts:
                with contextlib.suppress(Exception):
                    await context.close()
            await browser.close()
