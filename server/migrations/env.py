"""Alembic environment: always handed a live connection by server.database.Database.migrate."""

from __future__ import annotations

from alembic import context

import server.models  # noqa: F401  (registers every table on Base.metadata)
from commerce.base import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `python -m server migrate` (needs a connection)")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
sqlite = connection.dialect.name == "sqlite"
if sqlite:
    # SQLite alters a table by rebuilding it (batch mode): the old table is dropped while other
    # tables' foreign keys point at it, which enforced keys refuse as soon as a row refers to
    # it. Keys are switched off when the driver has no transaction open (the PRAGMA is ignored
    # inside one), and deferred to the commit when it has (`defer_foreign_keys` is meant for
    # that, and is reset at each commit); either way every key is checked at the end.
    connection.exec_driver_sql("PRAGMA foreign_keys = OFF")
    connection.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
try:
    with context.begin_transaction():
        context.run_migrations()
        if sqlite:
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"migration left rows naming missing rows: {broken[:10]}")
finally:
    if sqlite:
        connection.exec_driver_sql("PRAGMA foreign_keys = ON")
