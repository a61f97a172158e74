"""Trust rows name real orders: the database refuses a claim, review, survey answer or evidence
row for an order that does not exist, on SQLite and PostgreSQL; migration 0404 puts those keys
on a database that already has such rows, refuses one with orphans, and takes them off again."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from commerce.base import Base
from server.database import MIGRATIONS_DIR
from server.keys import database_key
from tests.conftest import Api
from tests.trust_support import JPEG, bought_and_picked_up, make_farm, upload

TABLES = ("claims", "reviews", "nps_responses", "order_evidence")
UPLOAD_CLAIM_FK = "fk_trust_uploads_claim_id_claims"


async def _order_with_every_trust_row(api: Api) -> int:
    """A picked-up order with a claim (with a photo, so an upload points at the claim), a review,
    a survey answer and its evidence."""
    farm = await make_farm(api)
    _, buyer, order_id = await bought_and_picked_up(farm)
    photo = await (await upload(api, buyer, JPEG, "claim")).json()
    for path, body in (("/api/claims", {"order_id": order_id, "reason": "spoiled",
                                        "photos": [photo["id"]]}),
                       ("/api/reviews", {"order_id": order_id, "stars": 5}),
                       ("/api/nps", {"order_id": order_id, "score": 9})):
        resp = await api.client.post(path, json=body, headers=api.auth(buyer))
        assert resp.status == 201, (path, await resp.text())
    resp = await api.client.get(f"/api/orders/{order_id}/after-sales", headers=api.auth(buyer))
    assert resp.status == 200, await resp.text()
    async with api.app[database_key].session() as db:
        for name in TABLES:
            table = Base.metadata.tables[name]
            found = (await db.execute(sa.select(sa.func.count()).select_from(table)
                                      .where(table.c.order_id == order_id))).scalar_one()
            assert found == 1, name
    return order_id


async def _copy_with_order(api: Api, name: str, order_id: int, to_order: int) -> None:
    """Insert a copy of the table's row for `order_id` naming `to_order` instead: every other
    reference of the copy is valid, so only the order can be what is refused."""
    table = Base.metadata.tables[name]
    async with api.app[database_key].session() as db:
        # Only the columns the database has now (a downgraded schema lacks later ones); typed
        # by the model, so JSON columns are bound as JSON.
        present = (await db.execute(sa.text(f"SELECT * FROM {name} LIMIT 0"))).keys()  # noqa: S608
        columns = [table.c[key] for key in present if key != "id"]
        row = dict((await db.execute(sa.select(*columns).where(table.c.order_id == order_id)))
                   .mappings().one())
        row["order_id"] = to_order
        await db.execute(sa.insert(table).values(**row))
        await db.commit()


async def _missing_order_id(api: Api) -> int:
    async with api.app[database_key].session() as db:
        return int((await db.execute(sa.text("SELECT max(id) FROM orders"))).scalar_one()) + 1000


async def test_a_trust_row_for_a_missing_order_is_refused(any_db_api: Api) -> None:
    api = any_db_api
    order_id = await _order_with_every_trust_row(api)
    missing = await _missing_order_id(api)
    sqlite = api.app[database_key].is_sqlite
    for name in TABLES:
        with pytest.raises(IntegrityError) as refused:
            await _copy_with_order(api, name, order_id, missing)
        expected = "FOREIGN KEY constraint failed" if sqlite else f"fk_{name}_order_id_orders"
        assert expected in str(refused.value), (name, refused.value)


def _alembic(connection: Connection, action: str, target: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    getattr(command, action)(cfg, target)


def _foreign_keys(connection: Connection) -> dict[str, set[str]]:
    inspector = sa.inspect(connection)
    return {name: {f"{fk['name']}:{','.join(fk['constrained_columns'])}->{fk['referred_table']}"
                   for fk in inspector.get_foreign_keys(name)}
            for name in (*TABLES, "trust_uploads")}


def _order_keys(keys: dict[str, set[str]]) -> dict[str, bool]:
    return {name: f"fk_{name}_order_id_orders:order_id->orders" in keys[name] for name in TABLES}


async def _rows(conn: Any) -> dict[str, list[dict[str, Any]]]:
    """Every row of the trust tables as the database holds them now (`SELECT *`: later
    migrations' columns are absent once downgraded, so the models cannot be used to read)."""
    found = {}
    for name in (*TABLES, "trust_uploads"):
        result = await conn.execute(sa.text(f"SELECT * FROM {name} ORDER BY 1"))  # noqa: S608
        found[name] = [dict(row) for row in result.mappings().all()]
    return found


def _same_rows(now: dict[str, list[dict[str, Any]]], before: dict[str, list[dict[str, Any]]]) -> None:
    """Rows unchanged in every column both states have."""
    for name, rows in now.items():
        assert len(rows) == len(before[name]), name
        for row, old in zip(rows, before[name], strict=True):
            assert {k: v for k, v in row.items() if k in old} == {
                k: v for k, v in old.items() if k in row}, name


async def test_migration_adds_the_keys_to_existing_rows_and_takes_them_off(any_db_api: Api) -> None:
    api = any_db_api
    await _order_with_every_trust_row(api)
    engine = api.app[database_key].engine
    async with engine.begin() as conn:
        before = await _rows(conn)
        assert _order_keys(await conn.run_sync(_foreign_keys)) == dict.fromkeys(TABLES, True)
        await conn.run_sync(_alembic, "downgrade", "0403")
        keys = await conn.run_sync(_foreign_keys)
        assert _order_keys(keys) == dict.fromkeys(TABLES, False)
        # The uploads' link to claims, taken off for SQLite's rebuild, is back.
        assert f"{UPLOAD_CLAIM_FK}:claim_id->claims" in keys["trust_uploads"]
        _same_rows(await _rows(conn), before)
        await conn.run_sync(_alembic, "upgrade", "heads")
        keys = await conn.run_sync(_foreign_keys)
        assert _order_keys(keys) == dict.fromkeys(TABLES, True)
        assert f"{UPLOAD_CLAIM_FK}:claim_id->claims" in keys["trust_uploads"]
        assert await _rows(conn) == before


async def test_migration_stops_on_rows_naming_missing_orders(any_db_api: Api) -> None:
    """Orphans are not deleted (a claim carries a refund): the upgrade names them and changes
    nothing; once they are dealt with it goes through."""
    api = any_db_api
    order_id = await _order_with_every_trust_row(api)
    missing = await _missing_order_id(api)
    engine = api.app[database_key].engine
    async with engine.begin() as conn:
        await conn.run_sync(_alembic, "downgrade", "0403")
    await _copy_with_order(api, "reviews", order_id, missing)
    await _copy_with_order(api, "nps_responses", order_id, missing)
    with pytest.raises(RuntimeError, match=rf"reviews: 1 row\(s\), order ids {missing}; "
                                           rf"nps_responses: 1 row\(s\), order ids {missing}\."):
        async with engine.begin() as conn:
            await conn.run_sync(_alembic, "upgrade", "heads")
    async with engine.begin() as conn:
        assert _order_keys(await conn.run_sync(_foreign_keys)) == dict.fromkeys(TABLES, False)
        for name in ("reviews", "nps_responses"):
            await conn.execute(sa.text(f"DELETE FROM {name} WHERE order_id = :o"),  # noqa: S608
                               {"o": missing})
    # A migration starts on a connection of its own, as `migrate()` runs it (on SQLite the
    # keys can only be switched off outside a transaction).
    async with engine.begin() as conn:
        await conn.run_sync(_alembic, "upgrade", "heads")
        assert _order_keys(await conn.run_sync(_foreign_keys)) == dict.fromkeys(TABLES, True)
