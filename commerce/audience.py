"""Who watched and who interacted per session: the denominators of conversion and interaction.

realtime/ knows concurrent viewers only; the dashboard needs *distinct* viewers per session and
distinct viewers who interacted (commented, asked, liked, upvoted). Both are Redis HyperLogLogs
(12 KB per session at most, ~0.8 % error above a few hundred, exact-ish below), written by the
realtime hub through `note_viewer` / `note_interaction`. When a session ends the counts are
frozen into SQL (`session_audience`), so the dashboard keeps them after Redis keys expire.
"""

from __future__ import annotations

from datetime import datetime

from redis.asyncio import Redis
from sqlalchemy import ForeignKey
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.base import Base, utcnow
from commerce.live_sessions import LiveSession
from commerce.locks import lock_row

KEY_TTL_S = 90 * 24 * 3600


def viewers_key(session_id: int) -> str:
    return f"audience:{{{session_id}}}:viewers"


def interacting_key(session_id: int) -> str:
    return f"audience:{{{session_id}}}:interacting"


class SessionAudience(Base):
    __tablename__ = "session_audience"

    session_id: Mapped[int] = mapped_column(ForeignKey("live_sessions.id"), primary_key=True,
                                            autoincrement=False)
    viewers: Mapped[int] = mapped_column()
    interacting: Mapped[int] = mapped_column()
    frozen_at: Mapped[datetime] = mapped_column(default=utcnow)


async def note_viewer(redis: Redis, session_id: int, viewer: str) -> None:
    """`viewer` = "u:<user id>" when signed in, else a stable anonymous id (e.g. "a:<sid>")."""
    key = viewers_key(session_id)
    await redis.pfadd(key, viewer)
    await redis.expire(key, KEY_TTL_S)


async def note_interaction(redis: Redis, session_id: int, viewer: str) -> None:
    key = interacting_key(session_id)
    await redis.pfadd(key, viewer)
    await redis.pfadd(viewers_key(session_id), viewer)  # whoever interacts has watched
    await redis.expire(key, KEY_TTL_S)


async def live_counts(redis: Redis, session_id: int) -> tuple[int, int]:
    viewers = int(await redis.pfcount(viewers_key(session_id)))
    interacting = int(await redis.pfcount(interacting_key(session_id)))
    return viewers, interacting


async def freeze(db: AsyncSession, redis: Redis, session_id: int) -> SessionAudience:
    """Copy the session's counts into SQL (called when the session ends; repeatable)."""
    viewers, interacting = await live_counts(redis, session_id)
    # The row is inserted by the first freeze: two at once (a session ended twice) take turns.
    await lock_row(db, LiveSession, session_id)
    row = await db.get(SessionAudience, session_id, populate_existing=True)
    if row is None:
        row = SessionAudience(session_id=session_id, viewers=viewers, interacting=interacting)
        db.add(row)
    else:
        row.viewers, row.interacting, row.frozen_at = viewers, interacting, utcnow()
    await db.flush()
    return row


async def counts(db: AsyncSession, redis: Redis, session_ids: list[int]) -> dict[int, tuple[int, int]]:
    """(viewers, interacting) per session: frozen SQL figures, else the live Redis ones."""
    result: dict[int, tuple[int, int]] = {}
    for session_id in session_ids:
        row = await db.get(SessionAudience, session_id)
        result[session_id] = (
            (row.viewers, row.interacting) if row is not None
            else await live_counts(redis, session_id)
        )
    return result
