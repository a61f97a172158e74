"""The skeleton: health, auth and roles, errors, limits, OpenAPI coverage, settings."""

from __future__ import annotations

import json
import logging
import time

import jwt
import pytest

from infra.settings import Settings, SettingsError
from server.embedded_redis import EmbeddedRedis
from server.logs import JsonFormatter
from tests.conftest import Api, AppFactory


async def test_healthz_answers_when_redis_and_db_answer(any_db_api: Api) -> None:
    resp = await any_db_api.client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok", "redis": True, "database": True}
    assert resp.headers["X-Request-Id"]


async def test_healthz_is_503_when_redis_is_gone(make_api: AppFactory, settings: Settings) -> None:
    own = EmbeddedRedis(settings.data_dir / "own-redis")
    url = own.start()
    try:
        api = await make_api(settings.with_(redis_url=url))
        assert (await api.client.get("/healthz")).status == 200
        own.kill()
        resp = await api.client.get("/healthz")
        assert resp.status == 503
        assert (await resp.json())["redis"] is False
        # A request that needs Redis is told to retry (503 + Retry-After), not "internal error".
        resp = await api.client.post("/api/auth/token",
                                     json={"username": "admin", "password": "whatever"})
        assert resp.status == 503 and resp.headers["Retry-After"] == "1"
        assert (await resp.json())["error"]["code"] == "unavailable"
    finally:
        own.stop()


async def test_login_and_me(api: Api) -> None:
    user_id, token = await api.user("viewer", "liayi")
    resp = await api.client.get("/api/me", headers=api.auth(token))
    assert resp.status == 200
    body = await resp.json()
    assert body["id"] == user_id and body["role"] == "viewer"


async def test_wrong_password_is_401_with_code(api: Api) -> None:
    await api.user("viewer", "someone")
    resp = await api.client.post("/api/auth/token", json={"username": "someone", "password": "nope"})
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthorized"
    resp = await api.client.post("/api/auth/token", json={"username": "ghost", "password": "nope"})
    assert resp.status == 401


async def test_viewer_cannot_create_session(api: Api) -> None:
    _, viewer = await api.user("viewer")
    resp = await api.client.post("/api/sessions", json={"title": "x"}, headers=api.auth(viewer))
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "forbidden"


async def test_viewer_cannot_create_users_or_communities(api: Api) -> None:
    _, viewer = await api.user("viewer")
    resp = await api.client.post(
        "/api/users", json={"username": "abcdef", "password": "12345678", "role": "admin"},
        headers=api.auth(viewer),
    )
    assert resp.status == 403
    resp = await api.client.post("/api/communities", json={"name": "x"}, headers=api.auth(viewer))
    assert resp.status == 403


async def test_host_cannot_end_another_hosts_session(any_db_api: Api) -> None:
    api = any_db_api
    _, host_a = await api.user("host")
    _, host_b = await api.user("host")
    resp = await api.client.post("/api/sessions", json={"title": "枇杷"}, headers=api.auth(host_a))
    assert resp.status == 201
    session = await resp.json()
    assert session["status"] == "scheduled" and session["stream_key"].startswith("sk_")
    resp = await api.client.post(f"/api/sessions/{session['id']}/end", headers=api.auth(host_b))
    assert resp.status == 403
    resp = await api.client.post(f"/api/sessions/{session['id']}/end", headers=api.auth(host_a))
    assert resp.status == 200 and (await resp.json())["status"] == "ended"


async def test_stream_key_only_for_its_host(api: Api) -> None:
    _, host = await api.user("host")
    _, viewer = await api.user("viewer")
    resp = await api.client.post("/api/sessions", json={"title": "t"}, headers=api.auth(host))
    sid = (await resp.json())["id"]
    anon = await (await api.client.get(f"/api/sessions/{sid}")).json()
    as_viewer = await (await api.client.get(f"/api/sessions/{sid}", headers=api.auth(viewer))).json()
    as_host = await (await api.client.get(f"/api/sessions/{sid}", headers=api.auth(host))).json()
    assert "stream_key" not in anon and "stream_key" not in as_viewer
    assert as_host["stream_key"].startswith("sk_")


async def test_expired_and_forged_tokens_are_401(api: Api) -> None:
    _, token = await api.user("host")
    claims = jwt.decode(token, options={"verify_signature": False})
    expired = jwt.encode({**claims, "exp": int(time.time()) - 10}, _secret(api), algorithm="HS256")
    forged = jwt.encode(
        {**claims, "role": "admin"}, "not-the-secret-but-long-enough-for-hs256!!", algorithm="HS256"
    )
    for bad, reason in ((expired, "token_expired"), (forged, "token_invalid"),
                        ("garbage", "token_invalid")):
        resp = await api.client.post("/api/sessions", json={"title": "t"}, headers=api.auth(bad))
        assert resp.status == 401
        body = await resp.json()
        assert body["error"]["code"] == "unauthorized" and body["error"]["reason"] == reason
    resp = await api.client.post("/api/sessions", json={"title": "t"})
    assert resp.status == 401


def _secret(api: Api) -> str:
    from server.keys import settings_key

    return api.app[settings_key].secret_key.get_secret_value()


async def test_bad_json_is_400_with_code(api: Api) -> None:
    _, host = await api.user("host")
    resp = await api.client.post(
        "/api/sessions", data=b"{not json", headers={**api.auth(host), "Content-Type": "application/json"}
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "bad_json"


async def test_json_types_are_strict(api: Api) -> None:
    """A string, float or bool is not an integer and a number is not a time: no silent coercion."""
    _, host = await api.user("host")
    for price in ("1280", 1280.0, True):
        resp = await api.client.post("/api/products", json={"name": "枇杷", "price_fen": price},
                                     headers=api.auth(host))
        assert resp.status == 400, price
        error = (await resp.json())["error"]
        assert error["code"] == "validation_failed"
        assert [f["field"] for f in error["fields"]] == ["price_fen"]
    resp = await api.client.post("/api/products", json={"name": "枇杷", "price_fen": 1280},
                                 headers=api.auth(host))
    assert resp.status == 201
    resp = await api.client.post("/api/sessions", json={"title": "t", "scheduled_at": 1893456000},
                                 headers=api.auth(host))
    assert resp.status == 400
    assert (await resp.json())["error"]["fields"][0]["field"] == "scheduled_at"
    resp = await api.client.post("/api/sessions",
                                 json={"title": "t", "scheduled_at": "2030-01-01T08:00:00+08:00"},
                                 headers=api.auth(host))
    assert resp.status == 201  # times and enum values still come as strings
    resp = await api.client.post(
        "/api/sessions", data=b"[" * 500 + b"]" * 500,
        headers={**api.auth(host), "Content-Type": "application/json"})
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_json"


async def test_validation_errors_name_fields(api: Api) -> None:
    _, host = await api.user("host")
    resp = await api.client.post("/api/sessions", json={"title": ""}, headers=api.auth(host))
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["code"] == "validation_failed"
    assert [f["field"] for f in error["fields"]] == ["title"]


async def test_oversized_body_is_413(api: Api) -> None:
    _, host = await api.user("host")
    huge = json.dumps({"title": "x" * (2 * 1024 * 1024)})
    resp = await api.client.post(
        "/api/sessions", data=huge, headers={**api.auth(host), "Content-Type": "application/json"}
    )
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "body_too_large"


async def test_unknown_route_is_json_404(api: Api) -> None:
    resp = await api.client.get("/api/nope")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"


async def test_openapi_covers_every_route(api: Api) -> None:
    doc = await (await api.client.get("/api/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    missing = []
    for route in api.app.router.routes():
        info = route.resource.canonical if route.resource else ""
        if route.method == "HEAD" or info.startswith(("/static", "/vendor", "/socket.io")):
            continue
        if (info, route.method) not in documented and (info, "*") not in documented:
            missing.append((route.method, info))
    assert missing == []
    # Public contract routes are present.
    for path in ("/api/auth/token", "/api/users", "/api/communities", "/api/sessions",
                 "/api/communities/{id}/members", "/healthz"):
        assert path in doc["paths"], path


async def test_docs_page_and_metrics(api: Api) -> None:
    resp = await api.client.get("/api/docs")
    assert resp.status == 200 and "openapi.json" in await resp.text()
    await api.client.get("/healthz")
    metrics = await (await api.client.get("/metrics")).text()
    assert 'linli_http_requests_total{method="GET",route="/healthz",status="200"}' in metrics


async def test_community_membership_by_host(api: Api) -> None:
    _, host = await api.user("host")
    viewer_id, viewer = await api.user("viewer")
    resp = await api.client.post("/api/communities", json={"name": "阳光花园"}, headers=api.auth(host))
    community = (await resp.json())["id"]
    resp = await api.client.post(
        f"/api/communities/{community}/members", json={"user_id": viewer_id}, headers=api.auth(viewer)
    )
    assert resp.status == 403
    resp = await api.client.post(
        f"/api/communities/{community}/members", json={"user_id": viewer_id}, headers=api.auth(host)
    )
    assert resp.status == 201 and (await resp.json())["status"] == "approved"
    me = await (await api.client.get("/api/me", headers=api.auth(viewer))).json()
    assert me["communities"] == [community]


def test_settings_errors_name_the_key() -> None:
    with pytest.raises(SettingsError, match="PORT"):
        Settings.from_env({"PORT": "eighty", "LINLI_SECRET_KEY": "x" * 32})
    with pytest.raises(SettingsError, match="LINLI_DEMO"):
        Settings.from_env({"LINLI_DEMO": "maybe", "LINLI_SECRET_KEY": "x" * 32})
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        Settings.from_env({"DATABASE_URL": "mysql://x", "LINLI_SECRET_KEY": "x" * 32})
    settings = Settings.from_env({"PORT": "9000", "DATABASE_URL": "postgres://u@h/db",
                                  "LINLI_SECRET_KEY": "x" * 32})
    assert settings.port == 9000
    assert settings.sqlalchemy_url == "postgresql+asyncpg://u@h/db"


def test_logs_are_json_and_redact_secrets() -> None:
    record = logging.makeLogRecord(
        {"name": "t", "levelno": 20, "levelname": "INFO", "msg": "hello",
         "stream_key": "sk_secret", "token": "abc", "route": "/x"}
    )
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["msg"] == "hello" and entry["route"] == "/x"
    assert "sk_secret" not in line and "abc" not in line


async def test_login_lockout_with_backoff(api: Api) -> None:
    await api.user("viewer", "target_user")
    for _ in range(5):
        resp = await api.client.post(
            "/api/auth/token", json={"username": "target_user", "password": "wrong-password"}
        )
        assert resp.status == 401
    # Locked now, even with the right password.
    resp = await api.client.post(
        "/api/auth/token", json={"username": "target_user", "password": "password-target_user"}
    )
    assert resp.status == 429
    body = await resp.json()
    assert body["error"]["reason"] == "login_locked"
    assert int(resp.headers["Retry-After"]) >= 1


async def test_security_headers_on_api_and_pages(api: Api) -> None:
    resp = await api.client.get("/healthz")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    page = await api.client.get("/live/1")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in csp


def test_verified_token_cache_never_outlives_the_token() -> None:
    from commerce.accounts import Principal, Role
    from commerce.errors import Unauthorized
    from server.auth import TokenService

    tokens = TokenService("a-test-secret-that-is-long-enough-1234", ttl_s=60)
    token = tokens.issue(Principal(7, "li", Role.VIEWER), ttl_s=1)
    assert tokens.verify(token).user_id == 7
    assert tokens.verify(token).user_id == 7  # from the cache
    time.sleep(1.1)
    with pytest.raises(Unauthorized) as refused:
        tokens.verify(token)
    assert refused.value.details["reason"] == "token_expired"
    other = TokenService("another-secret-that-is-long-enough-999", ttl_s=60)
    with pytest.raises(Unauthorized):
        other.verify(tokens.issue(Principal(7, "li", Role.VIEWER)))
