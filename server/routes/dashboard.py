"""The trust dashboard: JSON, CSV export and SVG charts (definitions in commerce/dashboard.py)."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
from datetime import datetime, timedelta
from urllib.parse import urlencode

from aiohttp import web

from commerce import dashboard
from commerce.accounts import Role
from commerce.base import utcnow
from commerce.errors import InvalidInput, NotFound, Unauthorized
from server.api import PUBLIC, Api, json_response, optional_principal, parse_id, principal
from server.dashboard_charts import TITLES, bar_chart
from server.keys import database_key, redis_key, settings_key

api = Api()
VIEWERS = (Role.ADMIN, Role.HOST, Role.ASSISTANT)
QUERY = {"by": "session | farm | community (default session)",
         "days": "only orders paid in the last N days (1–3650; default all)"}


def _params(request: web.Request) -> tuple[dashboard.Scope, datetime | None]:
    by = request.query.get("by", "session")
    if by not in dashboard.SCOPES:
        raise InvalidInput("by 须为 session、farm 或 community / by must be session, farm or community",
                           field="by")
    raw_days = request.query.get("days") or None
    since = None
    if raw_days is not None:
        if not (raw_days.isascii() and raw_days.isdigit()) or not 1 <= int(raw_days) <= 3650:
            raise InvalidInput("days 须为 1–3650 / days must be 1–3650", field="days")
        since = utcnow() - timedelta(days=int(raw_days))
    return by, since


async def _rows(
    request: web.Request, host_id: int | None = None, signed: bool = False
) -> tuple[dashboard.Scope, list[dict[str, object]]]:
    by, since = _params(request)
    if not signed:
        who = principal(request)
        # A host sees the figures of their own sessions only; staff of the platform see all.
        host_id = who.user_id if who.role is Role.HOST else None
    async with request.app[database_key].session() as db:
        rows = await dashboard.compute(db, request.app[redis_key], by, since, host_id=host_id)
    return by, rows


# Chart URLs handed out by GET /api/dashboard are signed for CHART_URL_TTL_S, so a page can use
# them in a plain <img src> (which sends no Authorization header) without a token in the URL.
CHART_URL_TTL_S = 600


def _chart_sig(secret: str, metric: str, by: str, days: str, host: str, exp: str) -> str:
    key = hashlib.sha256(b"linli-dashboard-charts:" + secret.encode()).digest()
    msg = "|".join((metric, by, days, host, exp)).encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()[:32]


def _chart_url(request: web.Request, metric: str, by: str) -> str:
    who = principal(request)
    host = str(who.user_id) if who.role is Role.HOST else ""
    days = request.query.get("days", "")
    exp = str(int(utcnow().timestamp()) + CHART_URL_TTL_S)
    sig = _chart_sig(request.app[settings_key].secret_key.get_secret_value(), metric, by, days, host, exp)
    query = urlencode({"by": by, "days": days, "h": host, "exp": exp, "sig": sig})
    return f"/api/dashboard/charts/{metric}.svg?{query}"


@api.route("GET", "/api/dashboard", summary="Trust metrics per session, farm or community",
           tag="dashboard", auth=VIEWERS, query=QUERY)
async def get_dashboard(request: web.Request) -> web.Response:
    by, rows = await _rows(request)
    return json_response({"by": by, "generated_at": utcnow().isoformat(),
                          "metrics": list(dashboard.METRICS), "titles": TITLES, "rows": rows,
                          "definitions": dashboard.__doc__,
                          "charts": {m: _chart_url(request, m, by) for m in dashboard.METRICS},
                          "csv": f"/api/dashboard.csv?by={by}"})


@api.route("GET", "/api/dashboard.csv", summary="The dashboard as CSV (UTF-8 with BOM for Excel)",
           tag="dashboard", auth=VIEWERS, query=QUERY, response_content_type="text/csv")
async def dashboard_csv(request: web.Request) -> web.Response:
    by, rows = await _rows(request)
    buf = io.StringIO()
    writer = csv.writer(buf)
    # csv_rows neutralises formulas (CSV injection): keys and labels are people's text.
    writer.writerows(dashboard.csv_rows(by, rows))
    return web.Response(
        body=("\ufeff" + buf.getvalue()).encode("utf-8"), content_type="text/csv", charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="linli-dashboard-{by}.csv"'},
    )


@api.route("GET", "/api/dashboard/charts/{metric}.svg", summary="One metric as an SVG bar chart: "
           "with a bearer token, or through the signed URL GET /api/dashboard hands out (for <img>)",
           tag="dashboard", auth=PUBLIC, query={**QUERY, "exp": "signed URL expiry",
                                                 "sig": "signed URL signature", "h": "host scope"},
           response_content_type="image/svg+xml")
async def dashboard_chart(request: web.Request) -> web.Response:
    metric = request.match_info["metric"]
    if metric not in dashboard.METRICS:
        raise NotFound("没有这个指标 / No such metric", metrics=list(dashboard.METRICS))
    who = optional_principal(request)
    if who is not None and who.role in VIEWERS:
        by, rows = await _rows(request)
    else:
        host = _check_signed(request, metric)
        by, rows = await _rows(request, host_id=int(host) if host else None, signed=True)
    return web.Response(text=bar_chart(metric, rows, by), content_type="image/svg+xml", headers={
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
        "Cache-Control": "private, max-age=60",
    })


def _check_signed(request: web.Request, metric: str) -> str:
    """The host scope of a valid, unexpired signed chart URL; 401 otherwise."""
    q = request.query
    exp, sig, host = q.get("exp", ""), q.get("sig", ""), q.get("h", "")
    if not (exp.isascii() and exp.isdigit()) or int(exp) < utcnow().timestamp() or (
            host and parse_id(host) is None):
        raise Unauthorized("图表链接已过期或无效 / Chart link expired or invalid", reason="chart_link")
    secret = request.app[settings_key].secret_key.get_secret_value()
    expected = _chart_sig(secret, metric, q.get("by", "session"), q.get("days", ""), host, exp)
    if not hmac.compare_digest(expected, sig):
        raise Unauthorized("图表链接已过期或无效 / Chart link expired or invalid", reason="chart_link")
    return host
