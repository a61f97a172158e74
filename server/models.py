"""Imports every module that declares SQL tables, so metadata (and Alembic) sees them all."""

from commerce import accounts, catalog, live_sessions  # noqa: F401
