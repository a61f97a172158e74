"""One writer at a time for a row, on both databases, for read-decide-write in one transaction.

PostgreSQL: `SELECT … FOR UPDATE` holds the row until commit. SQLite has one writer per
database, but the driver opens the transaction only at the first write, so reads made before
it see whatever another writer commits meanwhile; a no-op UPDATE first takes the write lock
(others wait on the busy timeout) so everything read afterwards stays true until commit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession


async def lock_row(db: AsyncSession, model: Any, row_id: int) -> None:
    """Hold `model` row `row_id` (its table's `id`) for this transaction; a missing row is not
    an error here (the caller's own lookup says so)."""
    if db.get_bind().dialect.name == "postgresql":
        await db.execute(select(model.id).where(model.id == row_id).with_for_update())
    else:
        await db.execute(update(model).where(model.id == row_id).values(id=model.id))
