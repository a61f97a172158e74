"""SIGKILL the server in the middle of a sale under load; after a restart the books balance."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis
from sqlalchemy import text

from commerce.accounts import Role, User
from commerce.flash_sale.store import keys
from infra.settings import Settings
from server.database import Database
from tests.commerce_support import BULK_HASH
from tests.conftest import _fresh_pg_database
from tests.server_process import ServerProcess

BUYERS = 16
KILL_AFTER = 60


async def _post(http: aiohttp.ClientSession, url: str, token: str, body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with http.post(url, json=body, headers={"Authorization": f"Bearer {token}",
                                                  **(headers or {})}) as resp:
        return resp.status, await resp.json()


async def _buyers(database_url: str) -> list[int]:
    """Viewers inserted straight into SQL (hashing passwords through the API is slow)."""
    database = Database(Settings(database_url=database_url).sqlalchemy_url)
    try:
        async with database.session() as db:
            users = [User(username=f"buyer{i}", password_hash=BULK_HASH, role=Role.VIEWER.value)
                     for i in range(BUYERS)]
            db.add_all(users)
            await db.flush()
            return [user.id for user in users]
    finally:
        await database.close()


async def _setup(server: ServerProcess) -> int:
    async with aiohttp.ClientSession(server.url) as http:
        async with http.post("/api/auth/token", json={"username": "admin",
                                                      "password": server.admin_password}) as resp:
            admin = (await resp.json())["token"]
        status, host = await _post(http, "/api/users", admin, {
            "username": "farm_host", "password": "host-password-1", "role": "host"})
        assert status == 201, host
        host_token = server.token(host["id"], role=Role.HOST)
        status, session = await _post(http, "/api/sessions", host_token, {"title": "crash"})
        assert status == 201, session
        status, product = await _post(http, "/api/products", host_token,
                                      {"name": "橄榄油", "price_fen": 12800})
        assert status == 201, product
        status, sale = await _post(http, f"/api/sessions/{session['id']}/sales", host_token, {
            "product_id": product["id"], "stock": 500, "price_fen": 12800,
            "per_buyer_limit": 50})
        assert status == 201, sale
    return int(sale["id"])


async def _shop(server: ServerProcess, sale_id: int, buyer: int, paid: list[str],
                enough: asyncio.Event) -> None:
    token = server.token(buyer)
    try:
        async with aiohttp.ClientSession(server.url) as http:
            while True:
                status, held = await _post(http, f"/api/sales/{sale_id}/holds", token, {"qty": 1},
                                           {"Idempotency-Key": uuid.uuid4().hex})
                if status != 201:
                    return
                status, _order = await _post(http, f"/api/holds/{held['hold_id']}/pay", token)
                if status == 200:
                    paid.append(held["hold_id"])
                    if len(paid) >= KILL_AFTER:
                        enough.set()
    except (TimeoutError, aiohttp.ClientError):
        return  # the server died under us


async def _sql_counts(database_url: str, sale_id: int) -> tuple[int, int, int]:
    """(orders, units, distinct holds) of the sale, read straight from the database."""
    database = Database(Settings(database_url=database_url).sqlalchemy_url)
    try:
        async with database.session() as db:
            row = (await db.execute(text(
                "SELECT count(*), coalesce(sum(qty), 0), count(DISTINCT hold_id) FROM orders "
                "WHERE sale_id = :sale"), {"sale": sale_id})).one()
    finally:
        await database.close()
    return int(row[0]), int(row[1]), int(row[2])


async def test_sigkill_mid_sale_then_restart_reconciles(
    tmp_path: Path, redis_url: str, redis_client: Redis, db_backend: str,
    request: pytest.FixtureRequest,
) -> None:
    if db_backend == "sqlite":
        database_url = f"sqlite:///{tmp_path / 'linli.db'}"
    else:
        database_url = await _fresh_pg_database(request.getfixturevalue("postgres_admin_url"))
    server = ServerProcess(tmp_path / "var", redis_url, database_url)
    server.start()
    try:
        sale_id = await _setup(server)
        buyers = await _buyers(database_url)
        paid: list[str] = []
        enough = asyncio.Event()
        shoppers = [asyncio.create_task(_shop(server, sale_id, b, paid, enough)) for b in buyers]
        await asyncio.wait_for(enough.wait(), 60)
        server.kill()
        await asyncio.gather(*shoppers)
        sold_in_redis = int(await redis_client.hget(keys(sale_id)["meta"], "sold") or 0)
        before, _units, _holds = await _sql_counts(database_url, sale_id)
        print(f"at SIGKILL: redis sold {sold_in_redis}, SQL orders {before}, "
              f"confirmations not yet in SQL {sold_in_redis - before}")
        assert sold_in_redis >= len(paid) >= KILL_AFTER

        server.start()
        async with aiohttp.ClientSession(server.url) as http:
            async with http.post("/api/auth/token", json={"username": "admin",
                                 "password": server.admin_password}) as resp:
                admin = (await resp.json())["token"]
            report: dict[str, Any] = {}
            for _ in range(150):  # the consumer claims the dead worker's entries after 5 s idle
                async with http.get(f"/api/reconcile?sale={sale_id}",
                                    headers={"Authorization": f"Bearer {admin}"}) as resp:
                    report = await resp.json()
                if report["ok"]:
                    break
                await asyncio.sleep(0.1)
        assert report["ok"], report
        (sale,) = report["sales"]
        assert sale["stock_drift"] == 0 and sale["sql_drift"] == 0 and not sale["missing_orders"]
        rows = await _sql_counts(database_url, sale_id)
        sold_now = int(await redis_client.hget(keys(sale_id)["meta"], "sold") or 0)
        assert rows[0] == rows[2] == rows[1] == sold_now == sold_in_redis
        assert set(paid) <= {h.decode() for h in await redis_client.hkeys(keys(sale_id)["paid"])}
    finally:
        server.stop()
    if db_backend != "sqlite":
        return  # the CLI path is the same for both databases; once is enough for the suite's time
    # The CLI agrees (and exits 0 only when every sale balances).
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "reconcile", "--sale", str(sale_id), env=server.env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(cli.communicate(), 120)
    assert cli.returncode == 0, err.decode()[-2000:] + out.decode()[-2000:]
    assert '"ok": true' in out.decode()
