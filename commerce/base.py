"""Declarative base and column helpers shared by every SQL model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import DateTime, MetaData
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from commerce.errors import InvalidInput

# Stable constraint names so Alembic migrations are the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Ids are INTEGER columns: 32-bit on PostgreSQL. A larger number names nothing, and handed to
# the driver it overflows (an error, not a 404), so inputs are bounded by this first.
MAX_ID = 2**31 - 1
MAX_IDEMPOTENCY_KEY = 100


def check_idempotency_key(key: str) -> None:
    """The bounds of every Idempotency-Key, so a key is always safe inside a Redis key name."""
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise InvalidInput("Idempotency-Key 无效 / Idempotency-Key must be 1..100 printable chars",
                           field="Idempotency-Key")


class UtcDateTime(TypeDecorator[datetime]):
    """A time stored as UTC and read back with its zone, on SQLite as on PostgreSQL.

    SQLite keeps no zone: SQLAlchemy writes an aware time's wall clock and drops its offset, so
    20:00+08:00 came back as 20:00 "UTC", eight hours late. Converting to UTC first keeps the
    instant; reading attaches UTC again."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            return value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return as_utc(value) if value is not None else None


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime()}


def utcnow() -> datetime:
    """Timezone-aware now; every stored time is UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; treat them as the UTC they were stored as."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
