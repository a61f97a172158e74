"""The app's database: the engine and unit of work of infra/database.py, plus the Alembic
migrations (server/migrations) applied at start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from infra import database

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class Database(database.Database):
    async def migrate(self) -> None:
        """Bring the schema to the newest revision (every branch head)."""
        async with self.engine.begin() as conn:
            if not self.is_sqlite:
                # Several workers may start together; one migrates, the others wait.
                await conn.execute(text("SELECT pg_advisory_xact_lock(724242)"))
            await conn.run_sync(_upgrade)


def _upgrade(connection: Connection) -> None:
    # Most starts find the schema current. Reading the stamped revisions is one query, while
    # `command.upgrade` re-executes every revision file and env.py each time (~10 ms of CPU a
    # start: every worker, every restart, every app a test builds). Alembic stamps only the
    # revisions no other one depends on, so "current" is what an upgrade left behind in this
    # process, not the scripts' list of heads.
    if _stamped(connection) in _UP_TO_DATE:
        return
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "heads")
    _UP_TO_DATE.add(_stamped(connection))


def _stamped(connection: Connection) -> frozenset[str]:
    return frozenset(MigrationContext.configure(connection).get_current_heads())


# The stamps an upgrade to every head ended on, in this process (the scripts do not change
# while it runs).
_UP_TO_DATE: set[frozenset[str]] = set()
