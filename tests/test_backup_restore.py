"""Back up a running sale (SQL first, then Redis), restore it into a fresh Redis and database.

Orders paid between the SQL copy and the Redis copy are in the restored log but not in the
restored SQL: `restore` runs reconcile --repair, which writes them from the log, and the books
balance with no order twice (docs/BACKUP.md has the argument). Both databases; the CLI end to end.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import text

from commerce.flash_sale.store import keys
from infra.settings import Settings
from server.backup import dump_redis, dump_sql, write_manifest
from server.database import Database
from server.embedded_redis import EmbeddedRedis
from tests.commerce_support import bulk_buyers, hold, make_shop, pay
from tests.conftest import AppFactory, _fresh_pg_database

pytestmark = pytest.mark.timeout(300)


async def _cli(env: dict[str, str], *argv: str) -> tuple[int, list[dict[str, Any]], str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", *argv, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    rows = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    assert proc.returncode is not None
    return proc.returncode, rows, err.decode()


def _env(settings: Settings, database_url: str, redis_url: str, data_dir: Path) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": redis_url, "DATABASE_URL": database_url,
            "LINLI_DATA_DIR": str(data_dir), "LINLI_SECRET_KEY": settings.secret_key.get_secret_value(),
            "LINLI_DEMO": "0", "LINLI_LOG_LEVEL": "WARNING", "LINLI_RTMP_PORT": "-1"}


async def _buy(api: Any, sale_id: int, buyers: list[tuple[int, str]], paid: int,
               unpaid: int = 0) -> list[str]:
    """`paid` paid holds (one unit each) and `unpaid` live ones; returns the paid hold ids."""
    holds = []
    for i in range(paid + unpaid):
        _uid, token = buyers[i % len(buyers)]
        status, body = await hold(api, sale_id, token)
        assert status == 201, body
        if i < paid:
            status, order = await pay(api, body["hold_id"], token)
            assert status == 200 and order["status"] == "paid", order
            holds.append(body["hold_id"])
    return holds


async def _orders(database_url: str) -> list[Any]:
    database = Database(Settings(database_url=database_url).sqlalchemy_url)
    try:
        async with database.session() as db:
            return list((await db.execute(text("SELECT hold_id, qty, status FROM orders"))).all())
    finally:
        await database.close()


async def test_backup_mid_sale_restores_and_reconciles(
    tmp_path: Path, make_api: AppFactory, any_db_settings: Settings, db_backend: str,
    redis_url: str, request: pytest.FixtureRequest,
) -> None:
    settings = any_db_settings
    source_db = (settings.database_url.get_secret_value() if settings.database_url
                 else f"sqlite:///{(settings.data_dir / 'linli.db').resolve()}")
    api = await make_api(settings)
    shop = await make_shop(api)
    sale_id = int((await shop.sale(stock=100, per_buyer_limit=5))["id"])
    buyers = await bulk_buyers(api, 10)
    live = Redis.from_url(redis_url)

    before_sql = await _buy(api, sale_id, buyers, paid=8, unpaid=3)
    folder = tmp_path / "backup"
    folder.mkdir()
    sql = await dump_sql(settings, folder)
    # The sale goes on between the two copies: these are in the Redis copy's log only.
    between = await _buy(api, sale_id, buyers, paid=5)
    state = await dump_redis(live, folder)
    write_manifest(folder, sql, state)
    after = await _buy(api, sale_id, buyers, paid=4)  # after the backup: must not come back
    assert state["keys"] > 5

    # A fresh Redis and a fresh, empty database.
    target_redis = EmbeddedRedis(tmp_path / "redis2")
    target_url = target_redis.start()
    if db_backend == "sqlite":
        target_db = f"sqlite:///{tmp_path / 'restored' / 'linli.db'}"
    else:
        target_db = await _fresh_pg_database(request.getfixturevalue("postgres_admin_url"))
    env = _env(settings, target_db, target_url, tmp_path / "restore-var")
    restored = Redis.from_url(target_url)
    try:
        code, rows, err = await _cli(env, "restore", str(folder))
        assert code == 0, err[-3000:]
        (report,) = rows
        assert report["ok"] and report["stock_drift"] == 0 and report["sql_drift"] == 0, report
        # The restored app's own order-log writer may write some of them before the repair
        # pass looks (it runs with the app); either way each is written once (checked below).
        assert report["repaired"] <= len(between), report
        assert report["sold"] == len(before_sql) + len(between)
        assert report["held"] == report["live_hold_units"] == 3  # the unpaid holds came back too
        orders = await _orders(target_db)
        holds = [o.hold_id for o in orders]
        assert len(holds) == len(set(holds)) == len(before_sql) + len(between)
        assert set(holds) == set(before_sql) | set(between) and not set(holds) & set(after)
        paid_in_redis = {h.decode() for h in await restored.hkeys(keys(sale_id)["paid"])}
        assert paid_in_redis == set(holds)

        # Reconcile again: nothing left to repair, nothing written twice.
        code, rows, err = await _cli(env, "reconcile")
        assert code == 0, err[-3000:]
        assert rows[0]["ok"] and rows[0]["repaired"] == 0
        assert len(await _orders(target_db)) == len(holds)

        # A non-empty target is refused unless --force.
        code, _rows, err = await _cli(env, "restore", str(folder))
        assert code == 2 and "not empty" in err

        # The CLI backup of the running sale (its final state), restored over the first one.
        cli_folder = tmp_path / "backup-cli"
        source_env = _env(settings, source_db, redis_url, tmp_path / "backup-var")
        code, rows, err = await _cli(source_env, "backup", str(cli_folder))
        assert code == 0, err[-3000:]
        assert rows[0]["sql"]["kind"] == ("sqlite" if db_backend == "sqlite" else "postgresql")
        code, rows, err = await _cli(env, "restore", "--force", str(cli_folder))
        assert code == 0, err[-3000:]
        assert rows[0]["ok"] and rows[0]["repaired"] == 0, rows
        assert rows[0]["sold"] == len(before_sql) + len(between) + len(after)
        final = await _orders(target_db)
        assert len(final) == len({o.hold_id for o in final}) == rows[0]["sql_orders"]
    finally:
        await restored.aclose()
        await live.aclose()
        target_redis.stop()
