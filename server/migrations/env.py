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
with context.begin_transaction():
    context.run_migrations()
