"""The app's database: the engine and unit of work of infra/database.py, plus the Alembic
migrations (server/migrations) applied at start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
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
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "heads")
