"""The OpenAPI document, built once from every route table at app creation."""

from __future__ import annotations

from typing import Any

from aiohttp import web

openapi_key = web.AppKey("openapi", dict[str, Any])
