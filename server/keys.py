"""Typed application keys: the only way components find each other inside the app."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from commerce.accounts import Principal
from commerce.events import EventBus
from infra.settings import Settings
from server.auth import TokenService
from server.database import Database

settings_key = web.AppKey("settings", Settings)
redis_key = web.AppKey("redis", Redis)
database_key = web.AppKey("database", Database)
tokens_key = web.AppKey("tokens", TokenService)
events_key = web.AppKey("events", EventBus)
metrics_key = web.AppKey("metrics", CollectorRegistry)
# The resolved Redis URL: REDIS_URL, or the embedded server's once it is running.
redis_url_key = web.AppKey("redis_url", str)

# Per-request values set by middleware and the route wrapper.
request_id_key = web.RequestKey("request_id", str)
principal_key = web.RequestKey("principal", Principal)
