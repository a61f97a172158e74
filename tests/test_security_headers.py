"""Web security, each shown to hold: page headers (CSP without inline scripts, no framing, no
sniffing) on every page route, bearer-only auth (so no CSRF surface), cross-origin Socket.IO
refused unless allowed, no secret in any log line, secrets only from the environment."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import pytest
import socketio

from infra.settings import Settings
from media.recordings import recordings_key
from server.logs import configure_logging
from server.routes import pages
from tests.conftest import ADMIN_PASSWORD, Api, AppFactory
from tests.media_flow import publish as rtmp_publish
from tests.media_flow import rtmp_url
from tests.realtime_support import make_room
from tests.webrtc_clients import publish as whip_publish

ROOT = Path(__file__).resolve().parents[1]
EVIL = "https://evil.example"


def page_paths() -> list[str]:
    """Every page route, with its parameters filled in, plus the API docs page."""
    paths = [op.path for op in pages.api.operations if op.method == "GET"]
    assert len(paths) >= 10, paths
    filled = [re.sub(r"{code}", "AbCdEfGh12345678", re.sub(r"{batch_code}", "B20240601",
                                                               re.sub(r"{id}", "1", p)))
              for p in paths]
    return [*filled, "/api/docs"]


def csp_directives(header: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0]] = words[1:]
    return directives


class InlineFinder(HTMLParser):
    """Inline scripts and event-handler attributes: what the CSP forbids (and would break)."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.inline.append("<script> without src")
        self.inline += [f"{tag} {name}=" for name in names if name.startswith("on")]
        if any(name == "href" and (value or "").lower().startswith("javascript:")
               for name, value in attrs):
            self.inline.append(f"{tag} href=javascript:")


@pytest.mark.parametrize("path", page_paths())
async def test_every_page_has_strict_security_headers(api: Api, path: str) -> None:
    resp = await api.client.get(path)
    assert resp.status == 200, path
    assert resp.content_type == "text/html"
    csp = csp_directives(resp.headers["Content-Security-Policy"])
    scripts = csp.get("script-src", csp.get("default-src"))
    assert scripts == ["'self'"], csp  # no 'unsafe-inline', no 'unsafe-eval', no other hosts
    assert csp["default-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"] and csp["base-uri"] == ["'self'"]
    assert "object-src" not in csp or csp["object-src"] == ["'none'"]
    # Sockets and fetches to the page's own origin only (no scheme-wide `ws:`/`wss:` source).
    assert csp.get("connect-src", csp["default-src"]) == ["'self'"], csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Referrer-Policy"] == "same-origin"
    finder = InlineFinder()
    finder.feed(await resp.text())
    assert finder.inline == [], (path, finder.inline)


async def test_every_response_says_nosniff(api: Api) -> None:
    for path in ("/healthz", "/api/openapi.json", "/api/nope", "/static/js/api.js", "/hls/1/x"):
        resp = await api.client.get(path)
        assert resp.headers.get("X-Content-Type-Options") == "nosniff", path
        assert resp.headers.get("X-Frame-Options") == "DENY", path


# --- bearer tokens only: no ambient credential, nothing to forge cross-site -----------------

async def test_a_token_in_a_cookie_does_not_authenticate(api: Api) -> None:
    _, host = await api.user("host")
    assert (await api.client.get("/api/me", headers=api.auth(host))).status == 200
    for name in ("token", "linli_token", "Authorization", "session", "access_token"):
        jar = {"Cookie": f"{name}={host}"}
        me = await api.client.get("/api/me", headers=jar)
        assert me.status == 401, name
        # A state-changing request a hostile page could make a browser send (a "simple"
        # cross-site form post carries cookies, never an Authorization header).
        post = await api.client.post("/api/sessions", data="title=x", headers={
            **jar, "Content-Type": "application/x-www-form-urlencoded", "Origin": EVIL})
        assert post.status == 401, name
    # Tokens in the query string are not accepted either (they would end up in logs and
    # Referer headers).
    assert (await api.client.get(f"/api/me?token={host}")).status == 401


async def test_the_server_never_sets_a_cookie(api: Api) -> None:
    responses = [
        await api.client.post("/api/auth/token", json={"username": "admin",
                                                       "password": ADMIN_PASSWORD}),
        await api.client.get("/live/1"),
        await api.client.get("/socket.io/?EIO=4&transport=polling"),
    ]
    for resp in responses:
        assert "Set-Cookie" not in resp.headers, resp.url


def test_no_code_reads_cookies() -> None:
    """Auth is bearer-only (SECURITY.md). Whoever adds cookie auth must add CSRF protection
    first; this test is where they find out."""
    offenders = []
    for package in ("server", "realtime", "media", "commerce"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if re.search(r"\.cookies\b|set_cookie|HTTP_COOKIE|cookie=", text):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


# --- cross-origin Socket.IO -----------------------------------------------------------------

async def polling_handshake(api: Api, origin: str | None) -> int:
    headers = {"Origin": origin} if origin else {}
    resp = await api.client.get("/socket.io/?EIO=4&transport=polling", headers=headers)
    return resp.status


async def websocket_handshake(api: Api, origin: str) -> int:
    try:
        ws = await api.client.ws_connect("/socket.io/?EIO=4&transport=websocket", origin=origin)
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status
    await ws.close()
    return 101


async def test_socketio_from_another_site_is_refused(api: Api) -> None:
    own = str(api.client.make_url("")).rstrip("/")
    assert await polling_handshake(api, EVIL) == 400
    assert await websocket_handshake(api, EVIL) == 400
    assert await websocket_handshake(api, "null") == 400  # sandboxed iframes, file:// pages
    assert await websocket_handshake(api, own.replace("http://", "https://")) == 400
    # The site's own pages, and clients that send no Origin (apps, scripts), are served.
    assert await polling_handshake(api, own) == 200
    assert await websocket_handshake(api, own) == 101
    assert await polling_handshake(api, None) == 200
    # A full Socket.IO connection with a hostile Origin fails before any namespace is joined.
    room = await make_room(api)
    client = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(room.url, namespaces=["/live"], headers={"Origin": EVIL},
                             auth={"session_id": room.session_id, "token": room.viewer},
                             transports=["websocket"], wait_timeout=5)
    await client.disconnect()


async def test_allowed_origins_come_from_settings(make_api: AppFactory, settings: Settings) -> None:
    api = await make_api(settings.with_(allowed_origins=("https://shop.example",),
                                        public_url="https://linli.example"))
    own = str(api.client.make_url("")).rstrip("/")
    assert await websocket_handshake(api, "https://shop.example") == 101
    assert await websocket_handshake(api, "https://linli.example") == 101
    assert await websocket_handshake(api, own) == 101  # the same origin stays allowed
    assert await websocket_handshake(api, EVIL) == 400
    assert await websocket_handshake(api, "https://shop.example.evil.example") == 400


# --- logs -----------------------------------------------------------------------------------

@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The production log set-up (server/logs.py) at DEBUG, written to a buffer."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    configure_logging("DEBUG")
    try:
        yield buffer
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


async def test_no_password_token_stream_key_or_signature_in_logs(
        make_api: AppFactory, settings: Settings, json_logs: io.StringIO) -> None:
    api = await make_api(settings.with_(rtmp_port=0, publisher_grace_s=1))
    password = "Neighbour-Secret-8731"
    resp = await api.client.post("/api/users", json={"username": "host_logs", "password": password,
                                                     "role": "host"},
                                 headers=api.auth(api.admin_token))
    assert resp.status == 201
    bad = await api.client.post("/api/auth/token", json={"username": "host_logs",
                                                         "password": password + "x"})
    assert bad.status == 401
    token = await api.login("host_logs", password)
    resp = await api.client.post("/api/sessions", json={"title": "日志"}, headers=api.auth(token))
    session = await resp.json()
    session_id, key = session["id"], session["stream_key"]

    # Publish over WHIP with the stream key (and once with a wrong one), then stop.
    wrong = await whip_publish(api.client, session_id, key[:-3] + "abc")
    await wrong.pc.close()
    assert wrong.status == 403
    pub = await whip_publish(api.client, session_id, key)
    try:
        assert pub.status == 201, pub.body
        await asyncio.sleep(0.5)
        assert pub.location is not None
        stop = await api.client.delete(pub.location, headers={"Authorization": f"Bearer {key}"})
        assert stop.status == 200
    finally:
        await pub.pc.close()
    # And over RTMP, where the key travels in the URL (rtmp://host/live/<key>).
    _, second = await api.user("host")
    resp = await api.client.post("/api/sessions", json={"title": "RTMP"}, headers=api.auth(second))
    rtmp_session = await resp.json()
    rtmp_key = rtmp_session["stream_key"]
    codes = []
    for attempt in (rtmp_key[:-2] + "zz", rtmp_key):
        proc = await rtmp_publish(rtmp_url(api, attempt), 1.5)
        codes.append(await asyncio.wait_for(proc.wait(), 30))
    assert codes[0] != 0 and codes[1] == 0, codes  # refused, then published
    for _ in range(100):  # the recorder writes its last segment as the stream ends
        if api.app[recordings_key].segments(rtmp_session["id"]):
            break
        await asyncio.sleep(0.1)
    assert api.app[recordings_key].segments(rtmp_session["id"])

    # Tokens where they do not belong are refused, and not logged either.
    assert (await api.client.get(f"/api/me?token={token}")).status == 401
    assert (await api.client.get(f"/nope/{token}?stream_key={key}")).status == 404
    room = await make_room(api)
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(room.url, namespaces=["/live"], transports=["websocket"],
                      auth={"session_id": room.session_id, "token": token}, wait_timeout=10)
    await sio.disconnect()
    # A signed chart URL (for <img>): its signature is a bearer secret for 10 minutes.
    dashboard = await (await api.client.get("/api/dashboard", headers=api.auth(token))).json()
    chart = next(iter(dashboard["charts"].values()))
    signature = re.search(r"sig=([0-9a-f]+)", chart)
    assert signature is not None
    assert (await api.client.get(chart)).status == 200
    await asyncio.sleep(0.3)

    text = json_logs.getvalue()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert len(lines) > 20, text[-2000:]
    routes = {entry.get("route") for entry in lines}
    assert "/api/auth/token" in routes and "/whip/{id}" in routes  # the capture saw the flow
    assert any("publishing" in entry["msg"] for entry in lines)
    secrets = {"password": password, "token": token, "stream key": key, "rtmp key": rtmp_key,
               "admin token": api.admin_token, "admin password": ADMIN_PASSWORD,
               "chart signature": signature.group(1),
               "signing secret": settings.secret_key.get_secret_value()}
    leaked = {name for name, value in secrets.items() if value in text}
    # Even a fragment long enough to matter must not appear (e.g. a truncated key in a message).
    leaked |= {name for name, value in secrets.items() if len(value) > 20 and value[:16] in text}
    assert leaked == set(), leaked


# --- secrets come from the environment ------------------------------------------------------

def test_secrets_come_from_the_environment_and_never_print(tmp_path: Path) -> None:
    secret, admin = "s" * 40, "Admin-Password-From-Env"
    settings = Settings.from_env({"LINLI_SECRET_KEY": secret, "LINLI_ADMIN_PASSWORD": admin,
                                  "LINLI_DATA_DIR": str(tmp_path)})
    assert settings.secret_key.get_secret_value() == secret
    assert settings.admin_password is not None and settings.admin_password.get_secret_value() == admin
    assert not (tmp_path / "secret_key").exists()  # nothing written when the env provides it
    assert secret not in repr(settings) and admin not in repr(settings)
    # Without it: a random key, kept in the data dir, readable by the owner only.
    generated = Settings.from_env({"LINLI_DATA_DIR": str(tmp_path)})
    assert len(generated.secret_key.get_secret_value()) >= 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    assert Settings.from_env({"LINLI_DATA_DIR": str(tmp_path)}).secret_key == generated.secret_key
    assert Settings().secret_key != Settings().secret_key  # no built-in default key
    assert secret not in str(settings) and secret not in str(settings.for_log())
    with pytest.raises(ValueError, match="LINLI_SECRET_KEY"):
        Settings.from_env({"LINLI_SECRET_KEY": "short"})


def test_no_secret_literals_in_the_code() -> None:
    """No key or password is written into the source (the demo's published password aside)."""
    pattern = re.compile(
        r"""(secret|password|api_key|private_key)\w*\s*[:=]\s*["'][^"'{}\s]{12,}["']""", re.I)
    found = []
    for package in ("server", "realtime", "media", "commerce"):
        for path in (ROOT / package).rglob("*.py"):
            for line in path.read_text(encoding="utf-8").splitlines():
                if pattern.search(line) and "DEMO_PASSWORD" not in line:
                    found.append(f"{path.relative_to(ROOT)}: {line.strip()}")
    assert found == [], found



async def test_wechatpay_secrets_never_reach_the_logs_or_the_openapi(
        make_api: AppFactory, settings: Settings, json_logs: io.StringIO, tmp_path: Path) -> None:
    """With WeChat Pay on, a payment, a forged notification and a refund at DEBUG: neither the
    APIv3 key nor the merchant private key appears in a log line, the settings' log form or the
    OpenAPI document; the refusal is one line with its reason."""
    from commerce import refunds
    from payments.wechatpay import trade_no
    from server.keys import database_key
    from tests.test_wechatpay import orders_of, provider, started, with_wechatpay
    from tests.wechatpay_server import wechatpay_server

    async with wechatpay_server() as wx:
        wsettings = with_wechatpay(settings, wx, tmp_path)
        api = await make_api(wsettings)
        wx.route_to = str(api.client.make_url("")).rstrip("/")
        _uid, _token, hold_id, _answer = await started(api)
        wx.mark_paid(trade_no(hold_id))
        url, headers, body = wx.notification(trade_no(hold_id),
                                             key=wx.merchant.__class__().private_key)
        assert await wx.deliver(url, headers, body) == 400
        trade = await wx.pay(trade_no(hold_id))
        (order,) = await orders_of(api, hold_id)
        await refunds.pay_out(api.app[database_key].session, provider(api),
                              f"refund:order:{order.id}:refunded", trade.transaction_id, 1234,
                              "退货", order.id)
        assert await wx.deliver_refund_notices() == [204]
        openapi = await (await api.client.get("/api/openapi.json")).text()
    await asyncio.sleep(0.2)
    text = json_logs.getvalue()
    assert "wechatpay notification refused" in text
    assert text.count("wechatpay notification refused") == 1
    apiv3 = wx.merchant.apiv3_key
    pem_body = "".join(wx.merchant.private_pem().splitlines()[1:-1])
    for where, seen in (("logs", text), ("openapi", openapi),
                        ("settings", json.dumps(wsettings.for_log(), default=str))):
        assert apiv3 not in seen, where
        assert not any(pem_body[i:i + 24] in seen for i in range(0, len(pem_body) - 24, 24)), where
    assert "wechatpay_apiv3_key" not in openapi and "wechatpay_private_key" not in openapi
