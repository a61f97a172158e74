"""The app factory: `create_app(settings)` is the only way in."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from redis.asyncio import Redis

from commerce import accounts
from commerce.accounts import Role
from commerce.errors import Conflict
from commerce.events import EventBus
from infra.redis_pools import blocking_pool
from infra.settings import Settings
from server import rate_limits, revocations, wiring
from server.api import Api, Operation, build_openapi
from server.auth import TokenService
from server.database import Database
from server.demo import demo_ctx, demo_seeders_key
from server.embedded_redis import EmbeddedRedis
from server.keys import (
    database_key,
    events_key,
    redis_key,
    redis_url_key,
    settings_key,
    tokens_key,
)
from server.middleware import install_metrics, request_context
from server.openapi_doc import openapi_key
from server.password_policy import check_admin_password
from server.passwords import AsyncPasswords, passwords_key
from server.routes import accounts as accounts_routes
from server.routes import communities as communities_routes
from server.routes import members as members_routes
from server.routes import pages, share, system
from server.routes import sessions as sessions_routes

log = logging.getLogger(__name__)

# Connections of the app's shared Redis client (the hub, rate limits, moderation, ...).
REDIS_CONNECTIONS = 128


def route_tables() -> list[Api]:
    return [system.api, accounts_routes.api, members_routes.api, communities_routes.api,
            sessions_routes.api, pages.api, share.api]


def create_app(settings: Settings, *, fast_passwords: bool = False) -> web.Application:
    """Build the application; resources open in cleanup_ctx order and close in reverse."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[request_context],
    )
    app[settings_key] = settings
    app[tokens_key] = TokenService(settings.secret_key.get_secret_value(), settings.token_ttl_s)
    app[events_key] = EventBus()
    app[passwords_key] = AsyncPasswords(fast=fast_passwords)
    install_metrics(app)

    app.cleanup_ctx.append(redis_ctx)
    rate_limits.install(app)
    revocations.install(app)
    app.cleanup_ctx.append(database_ctx)
    app[demo_seeders_key] = []

    extra = Api()
    for table in route_tables():
        table.install(app)
    for component in wiring.components():
        component(app, extra)
    extra.install(app)
    # Last, so every component's resources exist before the demo uses them.
    app.cleanup_ctx.append(demo_ctx)
    pages.install_static(app)

    operations = [op for table in [*route_tables(), extra] for op in table.operations]
    app[openapi_key] = _openapi(operations)
    return app


# The route tables live as long as the process, so one process's apps share one document (it is
# only ever read); building it is ~50 ms, paid by every app a test suite makes.
_OPENAPI: dict[tuple[int, ...], dict[str, Any]] = {}


def _openapi(operations: list[Operation]) -> dict[str, Any]:
    key = tuple(id(op) for op in operations)
    if key not in _OPENAPI:
        _OPENAPI[key] = build_openapi(operations, "邻里 Linli API", "1.0")
    return _OPENAPI[key]


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    embedded: EmbeddedRedis | None = None
    url = None if settings.redis_url is None else settings.redis_url.get_secret_value()
    if url is None:
        embedded = EmbeddedRedis(settings.data_dir / "redis")
        url = await embedded.astart()
    app[redis_url_key] = url
    # A blocking pool: a crowd of sockets (re)joining at once waits for one of a bounded set of
    # connections. redis-py 8 caps a plain pool at 100 and fails the 101st at once
    # (MaxConnectionsError), which bench/chaos.py saw turn viewers away after a restart.
    pool = blocking_pool(url, max_connections=REDIS_CONNECTIONS, timeout=10,
                         health_check_interval=30)
    app[redis_key] = client = Redis(connection_pool=pool)
    try:
        yield
    finally:
        await client.aclose()
        await pool.aclose()  # a pool handed in is not closed with its client
        if embedded is not None:
            await embedded.astop()


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = Database(settings.sqlalchemy_url)
    app[database_key] = database
    try:
        await database.migrate()
        if settings.admin_password:
            await ensure_admin(app, settings.admin_password.get_secret_value())
        yield
    finally:
        await database.close()


async def ensure_admin(app: web.Application, password: str) -> None:
    """LINLI_ADMIN_PASSWORD creates the user `admin`, or resets its password."""
    # The command line refused a weak one at start already; this holds for settings built in code.
    check_admin_password(password)
    hashed = await app[passwords_key].hash_async(password)
    try:
        await _ensure_admin(app, hashed)
    except Conflict:
        # Another worker starting at the same moment created it: set it as ours.
        await _ensure_admin(app, hashed)
    log.info("admin account ensured")


async def _ensure_admin(app: web.Application, hashed: str) -> None:
    async with app[database_key].session() as db:
        user = await accounts.find_user(db, "admin")
        if user is None:
            await accounts.create_user(db, "admin", hashed, Role.ADMIN, "管理员")
        else:
            user.password_hash = hashed
            user.role = Role.ADMIN.value
            user.disabled = False
