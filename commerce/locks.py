"""Row locks that hold on SQLite and PostgreSQL alike.

`SELECT ... FOR UPDATE` is silently dropped on SQLite, so a lock is taken with an UPDATE that
writes a row's key onto itself: on PostgreSQL that locks the row until the transaction ends
(a concurrent locker waits, then reads what the first one committed); on SQLite the first
write of a transaction takes the database's write lock, which serialises every writer. Reads
made after the lock see everything committed before it, so a decision taken after
`lock_row` cannot be overtaken by a concurrent one.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession


async def lock_row(db: AsyncSession, model: type[Any], row_id: int) -> bool:
    """Lock one row for the rest of the transaction; False when there is no such row."""
    key = model.__mapper__.primary_key[0]
    result = await db.execute(
        update(model).where(key == row_id).values({key.key: key})
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]
