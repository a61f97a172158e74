"""Real parts for every test: a real redis-server, real SQLite and PostgreSQL, a real app."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from infra.settings import Settings
from server.embedded_redis import EmbeddedRedis
from tests.lanes import Classifier, e2e_reasons
from tests.pg_cluster import PgCluster
from tests.redis_cluster_support import LocalCluster, cluster_tools

ADMIN_PASSWORD = "admin-password-123"
IN_CI = bool(os.environ.get("CI"))


def pytest_report_header() -> list[str]:
    return [f"linli: CI={IN_CI}"]


# Lanes: every test gets one of `unit`, `app` or `e2e` here, so `make test-fast` (unit and app,
# SQLite only) picks up new tests without anyone remembering a marker. tests/lanes.py reads what
# a test runs (its code, its fixtures, the helpers they call): processes, media pipelines,
# WebRTC peers or Chromium make it `e2e`; otherwise one that needs Redis, a database or the app
# is `app`, and one that needs none of them is `unit`. A marker written on the test wins.
LANES = ("unit", "app", "e2e")
APP_FIXTURES = frozenset({"redis_url", "aiohttp_client", "aiohttp_server", "postgres_admin_url"})
POSTGRES_FIXTURES = frozenset({"postgres_admin_url", "pg_settings"})
# Tests of an outside provider's protocol (WeChat sign-in and messages, WeChat Pay, Alipay)
# against its local server: `make test` runs them, the fast lane leaves them out.
PROVIDER_MODULES = ("test_alipay", "test_wechat")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    classifier = Classifier()
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if not any(item.get_closest_marker(lane) for lane in LANES):
            reasons = e2e_reasons(item, classifier)
            if reasons:
                item.add_marker(pytest.mark.e2e)
            elif fixtures & APP_FIXTURES:
                item.add_marker(pytest.mark.app)
            else:
                item.add_marker(pytest.mark.unit)
            if "browser" in reasons and not item.get_closest_marker("browser"):
                item.add_marker(pytest.mark.browser)
        if "migration" in item.name and not item.get_closest_marker("migrations"):
            item.add_marker(pytest.mark.migrations)
        if item.path.stem.startswith(PROVIDER_MODULES):
            item.add_marker(pytest.mark.providers)
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("db_backend") == "postgres"
        if (on_postgres or fixtures & POSTGRES_FIXTURES) and not item.get_closest_marker("postgres"):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """One redis-server per session, so one per pytest-xdist worker: tests flush it and the app
    listens on fixed pub/sub channels, so two workers must never share one. A server given in
    LINLI_TEST_REDIS_URL therefore serves only runs without parallel workers."""
    given = os.environ.get("LINLI_TEST_REDIS_URL")
    if given and int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) <= 1:
        yield given
        return
    server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="linli-redis-")))
    yield server.start()
    server.stop()


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    given = os.environ.get("LINLI_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    cluster = PgCluster()
    if not cluster.available:
        if IN_CI:
            pytest.fail("PostgreSQL is required in CI but initdb was not found")
        pytest.skip("PostgreSQL not installed here (initdb not found); CI runs these tests")
    yield cluster.start()
    cluster.stop()


async def _fresh_pg_database(admin_url: str) -> str:
    name = "linli_test_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base, _, _db = admin_url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_backend(request: pytest.FixtureRequest) -> str:
    """Parametrise a test over both databases: request this fixture (or `any_db_settings`)."""
    return str(request.param)


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated from empty to head, once per session (per xdist worker).

    Each test's app starts on a copy, so its start-up finds the schema current instead of
    running every migration again (about half of the app tests' set-up time)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "linli.db"

    # Imported here, not at the top: pytest-xdist's controller process loads this file too and
    # never builds an app, and the app's import is over a second of CPU.
    from server.database import Database

    async def build() -> None:
        database = Database(f"sqlite+aiosqlite:///{path}")
        try:
            await database.migrate()
        finally:
            await database.close()

    asyncio.run(build())
    return path


@pytest.fixture
def settings(data_dir: Path, redis_url: str, redis_client: Redis, sqlite_template: Path) -> Settings:
    """SQLite settings; tests that need both databases use `any_db_settings`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for part in sqlite_template.parent.glob(sqlite_template.name + "*"):  # with any -wal/-shm
        shutil.copyfile(part, data_dir / part.name)
    return Settings(
        data_dir=data_dir, redis_url=redis_url, database_url=None,
        secret_key=secrets.token_urlsafe(32), admin_password=ADMIN_PASSWORD, demo=False,
        # A free RTMP port per app: the listener uses SO_REUSEPORT, so apps of parallel workers
        # (or a `make run` nearby) on the default port would take each other's connections.
        hold_ttl_s=60, rtmp_port=0,
    )


@pytest.fixture
async def any_db_settings(
    settings: Settings, db_backend: str, request: pytest.FixtureRequest
) -> Settings:
    if db_backend == "sqlite":
        return settings
    admin_url = request.getfixturevalue("postgres_admin_url")
    return settings.with_(database_url=await _fresh_pg_database(admin_url))


@pytest.fixture
async def pg_settings(settings: Settings, postgres_admin_url: str) -> Settings:
    return settings.with_(database_url=await _fresh_pg_database(postgres_admin_url))


@dataclass
class Api:
    """A test client with helpers to act as a given user."""

    client: TestClient[Any, Any]
    admin_token: str

    @property
    def app(self) -> web.Application:
        return self.client.server.app  # type: ignore[return-value]

    async def login(self, username: str, password: str) -> str:
        resp = await self.client.post(
            "/api/auth/token", json={"username": username, "password": password}
        )
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["token"])

    async def user(self, role: str, username: str | None = None) -> tuple[int, str]:
        """Create a user with `role`; returns (id, token)."""
        username = username or f"{role}_{uuid.uuid4().hex[:8]}"
        password = "password-" + username
        resp = await self.client.post(
            "/api/users", json={"username": username, "password": password, "role": role},
            headers=self.auth(self.admin_token),
        )
        assert resp.status == 201, await resp.text()
        user_id = int((await resp.json())["id"])
        return user_id, await self.login(username, password)

    @staticmethod
    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


AppFactory = Callable[[Settings], Awaitable[Api]]


@pytest.fixture
async def make_api(aiohttp_client: Any) -> AppFactory:
    from server.app import create_app  # see sqlite_template

    async def make(settings: Settings) -> Api:
        client = await aiohttp_client(create_app(settings, fast_passwords=True))
        resp = await client.post(
            "/api/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        assert resp.status == 200, await resp.text()
        return Api(client, (await resp.json())["token"])

    return make


@pytest.fixture
async def api(make_api: AppFactory, settings: Settings) -> Api:
    return await make_api(settings)


@pytest.fixture
async def any_db_api(make_api: AppFactory, any_db_settings: Settings) -> Api:
    return await make_api(any_db_settings)


@pytest.fixture(scope="module")
def cluster_ports() -> Iterator[list[int]]:
    """A local 3-node Redis Cluster (tests/redis_cluster_support.py); its nodes' ports."""
    if cluster_tools() is None:
        if IN_CI:
            pytest.fail("redis-server and redis-cli are required in CI for the cluster test")
        print("SKIP reason: redis-server/redis-cli not installed (apt install redis-server redis-tools)")
        pytest.skip("redis-server/redis-cli not installed here; CI runs this test")
    cluster = LocalCluster(3)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
