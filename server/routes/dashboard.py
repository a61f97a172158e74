"""The trust dashboard: JSON, CSV export and SVG charts (definitions in trust/dashboard.py)."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from commerce.accounts import Role
from commerce.base import utcnow
from commerce.errors import InvalidInput, NotFound, Unauthorized
from server.api import PUBLIC, Api, json_response, optional_principal, parse_id, principal
from server.dashboard_charts import KOC_CHARTS, TITLES, Lang, bar_chart, figure_items, metric_items
from server.keys import database_key, redis_key, settings_key
from trust import dashboard, koc_metrics

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


async def _report(
    request: web.Request, host_id: int | None = None, signed: bool = False
) -> tuple[dashboard.Scope, dict[str, Any]]:
    by, since = _params(request)
    if not signed:
        who = principal(request)
        # A host sees the figures of their own sessions only; staff of the platform see all.
        host_id = who.user_id if who.role is Role.HOST else None
    async with request.app[database_key].session() as db:
        data = await dashboard.report(db, request.app[redis_key], by, since, host_id=host_id)
        data["koc"] = await koc_metrics.figures(db, host_id, since)
    return by, data


def _lang(request: web.Request) -> Lang:
    return "en" if request.query.get("lang") == "en" else "zh"


CHARTS = (*dashboard.METRICS, "cohorts", "nps_trend", "group_buys_by_community", "referral_share",
          "commission", *KOC_CHARTS)
# Each 品鉴官 chart's CSV button downloads the one 品鉴官 table (headline and per batch).
CSV_FIGURES = (*dashboard.FIGURES, *dashboard.METRICS, "koc", *KOC_CHARTS)


# Chart URLs handed out by GET /api/dashboard are signed for CHART_URL_TTL_S, so a page can use
# them in a plain <img src> (which sends no Authorization header) without a token in the URL.
CHART_URL_TTL_S = 600


def _chart_sig(secret: str, metric: str, by: str, days: str, host: str, exp: str,
               lang: str) -> str:
    key = hashlib.sha256(b"linli-dashboard-charts:" + secret.encode()).digest()
    msg = "|".join((metric, by, days, host, exp, lang)).encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()[:32]


def _chart_url(request: web.Request, metric: str, by: str) -> str:
    who = principal(request)
    host = str(who.user_id) if who.role is Role.HOST else ""
    days = request.query.get("days", "")
    lang = _lang(request)
    exp = str(int(utcnow().timestamp()) + CHART_URL_TTL_S)
    sig = _chart_sig(request.app[settings_key].secret_key.get_secret_value(), metric, by, days, host,
                     exp, lang)
    query = urlencode({"by": by, "days": days, "lang": lang, "h": host, "exp": exp, "sig": sig})
    return f"/api/dashboard/charts/{metric}.svg?{query}"


@api.route("GET", "/api/dashboard", summary="The shop's figures: headline, per session, farm or "
           "community, repeat-purchase cohorts, NPS by month, group-buys by community, 晒单 and 品鉴官 "
           "figures (`koc`)",
           tag="dashboard", auth=VIEWERS, query=QUERY)
async def get_dashboard(request: web.Request) -> web.Response:
    by, data = await _report(request)
    days = request.query.get("days", "")
    csv_query = urlencode({"by": by, "days": days})
    return json_response({
        "by": by, "generated_at": utcnow().isoformat(), "metrics": list(dashboard.METRICS),
        "titles": {name: {"zh": zh, "en": en} for name, (zh, en) in TITLES.items()},
        **data, "definitions": dashboard.__doc__,
        "charts": {name: _chart_url(request, name, by) for name in CHARTS},
        "csv": {name: f"/api/dashboard.csv?{csv_query}&figure={name}" for name in CSV_FIGURES},
    })


@api.route("GET", "/api/dashboard.csv", summary="One dashboard figure as CSV (UTF-8 with BOM for "
           "Excel): figure=groups (default), headline, cohorts, nps_trend, group_buys_by_community, "
           "koc or a metric's name", tag="dashboard", auth=VIEWERS,
           query={**QUERY, "figure": "which figure (default groups)"},
           response_content_type="text/csv")
async def dashboard_csv(request: web.Request) -> web.Response:
    figure = request.query.get("figure", "groups")
    if figure not in CSV_FIGURES:
        raise InvalidInput("没有这个图表 / No such figure", field="figure", figures=list(CSV_FIGURES))
    by, data = await _report(request)
    # Every builder neutralises formulas (CSV injection): keys and labels are people's text.
    if figure == "groups":
        lines = dashboard.csv_rows(by, data["rows"])
    elif figure in dashboard.METRICS:
        lines = dashboard.metric_csv_rows(by, figure, data["rows"])
    elif figure in ("koc", *KOC_CHARTS):
        lines = [[dashboard.spreadsheet_safe(cell) for cell in line]
                 for line in koc_metrics.csv_lines(data["koc"])]
    else:
        lines = dashboard.figure_csv_rows(figure, data)
    buf = io.StringIO()
    csv.writer(buf).writerows(lines)
    name = f"linli-dashboard-{figure}-{by}.csv" if figure in ("groups", *dashboard.METRICS) \
        else f"linli-dashboard-{figure}.csv"
    return web.Response(
        body=("\ufeff" + buf.getvalue()).encode("utf-8"), content_type="text/csv", charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@api.route("GET", "/api/dashboard/charts/{metric}.svg", summary="One figure as an SVG bar chart: "
           "with a bearer token, or through the signed URL GET /api/dashboard hands out (for <img>)",
           tag="dashboard", auth=PUBLIC, query={**QUERY, "lang": "zh (default) | en",
                                                 "exp": "signed URL expiry",
                                                 "sig": "signed URL signature", "h": "host scope"},
           response_content_type="image/svg+xml")
async def dashboard_chart(request: web.Request) -> web.Response:
    metric = request.match_info["metric"]
    if metric not in CHARTS:
        raise NotFound("没有这个指标 / No such metric", metrics=list(CHARTS))
    who = optional_principal(request)
    if who is not None and who.role in VIEWERS:
        by, data = await _report(request)
    else:
        host = _check_signed(request, metric)
        by, data = await _report(request, host_id=int(host) if host else None, signed=True)
    if metric in dashboard.METRICS:
        items, scope = metric_items(metric, data["rows"]), str(by)
    else:
        items, scope = figure_items(metric, data)
    return web.Response(text=bar_chart(metric, items, scope, _lang(request)),
                        content_type="image/svg+xml", headers={
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
    expected = _chart_sig(secret, metric, q.get("by", "session"), q.get("days", ""), host, exp,
                          q.get("lang", "zh"))
    if not hmac.compare_digest(expected, sig):
        raise Unauthorized("图表链接已过期或无效 / Chart link expired or invalid", reason="chart_link")
    return host
