"""Request id, access log, metrics and the one place errors become {"error": {code, message}}."""

from __future__ import annotations

import logging
import secrets
import time

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Counter, Histogram
from redis import exceptions as redis_errors
from sqlalchemy import exc as sql_errors

from commerce.errors import DomainError
from server.api import json_response
from server.keys import metrics_key, request_id_key
from server.logs import request_id_var

log = logging.getLogger("linli.http")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "linli_http_requests", "HTTP requests", ["method", "route", "status"], registry=registry
        )
        self.latency = Histogram(
            "linli_http_request_seconds", "HTTP request latency", ["route"], registry=registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )


http_metrics_key = web.AppKey("http_metrics", HttpMetrics)


# Every response carries these; pages add their own stricter CSP (server/routes/pages.py).
_BASELINE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


# A dependency that is down or saturated for a moment (see _render_errors).
_UNAVAILABLE = (
    redis_errors.ConnectionError,  # includes BusyLoadingError: Redis is loading its AOF
    redis_errors.TimeoutError,
    sql_errors.TimeoutError,  # the connection pool had none free in time
    sql_errors.DisconnectionError,
    sql_errors.OperationalError,  # e.g. the server terminated the connection
)


def error_body(code: str, message: str, **details: object) -> dict[str, object]:
    error: dict[str, object] = {"code": code, "message": message}
    error.update(details)
    return {"error": error}


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-Id", "")
    # Trust a caller's id only when it looks like one; never echo arbitrary header content.
    rid = incoming if 8 <= len(incoming) <= 64 and incoming.isascii() and incoming.replace(
        "-", "").isalnum() else secrets.token_hex(8)
    request[request_id_key] = rid
    token = request_id_var.set(rid)
    started = time.perf_counter()
    status = 500
    try:
        response = await _render_errors(request, handler)
        status = response.status
        response.headers["X-Request-Id"] = rid
        for name, value in _BASELINE_HEADERS.items():
            response.headers.setdefault(name, value)
        return response
    finally:
        elapsed = time.perf_counter() - started
        route = _route_label(request)
        metrics = request.app.get(http_metrics_key)
        if metrics is not None:
            metrics.requests.labels(request.method, route, str(status)).inc()
            metrics.latency.labels(route).observe(elapsed)
        if not route.startswith(("/socket.io", "/hls", "/replays/{")):
            log.info(
                "request",
                extra={"method": request.method, "route": route, "status": status,
                       "ms": round(elapsed * 1000, 2), "remote": request.remote},
            )
        request_id_var.reset(token)


def _route_label(request: web.Request) -> str:
    info = request.match_info.route.resource
    if info is None:
        return "unmatched"
    return info.canonical


async def _render_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DomainError as exc:
        details = {k: v for k, v in exc.details.items() if k != "message"}
        response = json_response(error_body(exc.code, exc.message, **details), status=exc.status)
        if "retry_after" in details:
            response.headers["Retry-After"] = str(details["retry_after"])
        if exc.status == 401:
            # RFC 9110 §15.5.2: a 401 names the scheme to use (RFC 6750 for bearer tokens).
            response.headers.setdefault("WWW-Authenticate", 'Bearer realm="linli"')
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.content_type == "application/json" or exc.status == 101:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.reason
        if exc.status == 413:
            message = "请求体太大 / Request body too large"
        elif exc.status == 404:
            message = "找不到该页面或接口 / Not found"
        response = json_response(error_body(code, message), status=exc.status)
        for header in ("Allow", "Location"):
            if header in exc.headers:
                response.headers[header] = exc.headers[header]
        return response
    except _UNAVAILABLE as exc:
        # Redis restarting (loading its AOF) or unreachable, the SQL pool exhausted or its
        # server gone: nothing happened, and a retry with the same Idempotency-Key is safe.
        # A client is told so (503 + Retry-After), not "internal error"; one line, no traceback.
        cause = getattr(exc, "orig", None) or exc  # SQL: the driver's error, never the statement
        log.warning("dependency unavailable", extra={
            "error": type(cause).__name__, "detail": (str(cause).splitlines() or [""])[0][:200]})
        response = json_response(
            error_body("unavailable", "服务繁忙,请稍后重试 / Temporarily unavailable, retry shortly",
                       request_id=request.get(request_id_key, "")),
            status=503,
        )
        response.headers["Retry-After"] = "1"
        return response
    except Exception:
        log.exception("unhandled error")
        return json_response(
            error_body("internal", "服务器内部错误 / Internal server error",
                       request_id=request.get(request_id_key, "")),
            status=500,
        )


def install_metrics(app: web.Application) -> None:
    registry = CollectorRegistry()
    app[metrics_key] = registry
    app[http_metrics_key] = HttpMetrics(registry)
