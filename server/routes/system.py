"""Health, metrics, the OpenAPI document and its human page."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from server.api import PUBLIC, Api, json_response
from server.keys import database_key, metrics_key, redis_key
from server.openapi_doc import openapi_key
from server.routes.pages import SECURITY_HEADERS

api = Api()


@api.route("GET", "/healthz", summary="200 when Redis and the database answer", tag="system",
           auth=PUBLIC, responses={503: "A dependency is down"})
async def healthz(request: web.Request) -> web.Response:
    redis_ok, db_ok = await asyncio.gather(
        _redis_ok(request), request.app[database_key].ping()
    )
    status = 200 if redis_ok and db_ok else 503
    return json_response(
        {"status": "ok" if status == 200 else "degraded", "redis": redis_ok, "database": db_ok},
        status=status,
    )


async def _redis_ok(request: web.Request) -> bool:
    try:
        return bool(await asyncio.wait_for(request.app[redis_key].ping(), timeout=2))
    except Exception:
        return False


@api.route("GET", "/metrics", summary="Prometheus metrics", tag="system", auth=PUBLIC,
           response_content_type="text/plain")
async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[metrics_key])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@api.route("GET", "/api/openapi.json", summary="This OpenAPI 3 document", tag="system",
           auth=PUBLIC)
async def openapi_json(request: web.Request) -> web.Response:
    return json_response(request.app[openapi_key])


_DOCS_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>邻里 API 文档 / Linli API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/css/app.css"></head>
<body><main class="docs"><h1>邻里 API / Linli API</h1>
<p>机器可读文档 / Machine-readable: <a href="/api/openapi.json">/api/openapi.json</a></p>
<div id="ops">加载中… / Loading…</div></main>
<script type="module" src="/static/js/api-docs.js"></script></body></html>"""


@api.route("GET", "/api/docs", summary="Human-readable API reference", tag="system",
           auth=PUBLIC, response_content_type="text/html")
async def docs_page(request: web.Request) -> web.Response:
    # The same headers as every page: its script is a file from /static, nothing inline.
    return web.Response(text=_DOCS_PAGE, content_type="text/html", headers=SECURITY_HEADERS)
