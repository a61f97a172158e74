"""The trust dashboard: JSON, CSV export and SVG charts (definitions in commerce/dashboard.py)."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

from aiohttp import web

from commerce import dashboard
from commerce.accounts import Role
from commerce.base import utcnow
from commerce.errors import InvalidInput, NotFound
from server.api import Api, json_response, principal
from server.dashboard_charts import TITLES, bar_chart
from server.keys import database_key, redis_key

api = Api()
VIEWERS = (Role.ADMIN, Role.HOST, Role.ASSISTANT)
QUERY = {"by": "session | farm | community (default session)",
         "days": "only orders paid in the last N days (1–3650; default all)"}


def _params(request: web.Request) -> tuple[dashboard.Scope, datetime | None]:
    by = request.query.get("by", "session")
    if by not in dashboard.SCOPES:
        raise InvalidInput("by 须为 session、farm 或 community / by must be session, farm or community",
                           field="by")
    raw_days = request.query.get("days")
    since = None
    if raw_days is not None:
        if not raw_days.isdigit() or not 1 <= int(raw_days) <= 3650:
            raise InvalidInput("days 须为 1–3650 / days must be 1–3650", field="days")
        since = utcnow() - timedelta(days=int(raw_days))
    return by, since


async def _rows(request: web.Request) -> tuple[dashboard.Scope, list[dict[str, object]]]:
    by, since = _params(request)
    who = principal(request)
    # A host sees the figures of their own sessions only; staff of the platform see all.
    host_id = who.user_id if who.role is Role.HOST else None
    async with request.app[database_key].session() as db:
        rows = await dashboard.compute(db, request.app[redis_key], by, since, host_id=host_id)
    return by, rows


@api.route("GET", "/api/dashboard", summary="Trust metrics per session, farm or community",
           tag="dashboard", auth=VIEWERS, query=QUERY)
async def get_dashboard(request: web.Request) -> web.Response:
    by, rows = await _rows(request)
    return json_response({"by": by, "generated_at": utcnow().isoformat(),
                          "metrics": list(dashboard.METRICS), "titles": TITLES, "rows": rows,
                          "definitions": dashboard.__doc__,
                          "charts": {m: f"/api/dashboard/charts/{m}.svg?by={by}"
                                     for m in dashboard.METRICS},
                          "csv": f"/api/dashboard.csv?by={by}"})


@api.route("GET", "/api/dashboard.csv", summary="The dashboard as CSV (UTF-8 with BOM for Excel)",
           tag="dashboard", auth=VIEWERS, query=QUERY, response_content_type="text/csv")
async def dashboard_csv(request: web.Request) -> web.Response:
    by, rows = await _rows(request)
    buf = io.StringIO()
    writer = csv.writer(buf)
    for line in dashboard.csv_rows(by, rows):
        # Labels are user text: neutralise spreadsheet formulas (CSV injection).
        writer.writerow(["'" + cell if cell[:1] in ("=", "+", "-", "@") and not _number(cell)
                         else cell for cell in line])
    return web.Response(
        body=("\ufeff" + buf.getvalue()).encode("utf-8"), content_type="text/csv", charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="linli-dashboard-{by}.csv"'},
    )


def _number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


@api.route("GET", "/api/dashboard/charts/{metric}.svg", summary="One metric as an SVG bar chart "
           "(for <img>)", tag="dashboard", auth=VIEWERS, query=QUERY,
           response_content_type="image/svg+xml")
async def dashboard_chart(request: web.Request) -> web.Response:
    metric = request.match_info["metric"]
    if metric not in dashboard.METRICS:
        raise NotFound("没有这个指标 / No such metric", metrics=list(dashboard.METRICS))
    by, rows = await _rows(request)
    return web.Response(text=bar_chart(metric, rows, by), content_type="image/svg+xml", headers={
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
        "Cache-Control": "private, max-age=60",
    })
