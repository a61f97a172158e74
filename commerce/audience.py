"""Who watched and who interacted per session: the denominators of conversion and interaction.

realtime/ knows concurrent viewers only; the dashboard needs *distinct* viewers per session, the
distinct viewers who interacted (commented, asked, upvoted, liked) and how many comments,
questions and likes there were. The realtime actions feed them as they happen:

- viewers and interacting viewers are Redis SETs of viewer ids ("u:<user id>" signed in, else
  "a:<anonymous id>" the page keeps in localStorage, else "s:<socket id>"): SADD counts a
  person once however often they reconnect, and SCARD is exact (a HyperLogLog would be ~0.8 %
  off, and a figure the shop quotes must be checkable against the raw ids). A set costs about
  60 bytes per viewer: a session of 100 000 viewers holds ~6 MB until it ends;
- comments, questions and likes are HINCRBY counters in one hash;
- all three keys of a session share one hash slot ({session}), and one MULTI writes them, so an
  interaction is never counted without its viewer.

Staff accounts (host, assistant, admin) are not audience. When the session ends the figures are
frozen into SQL (`session_audience`), so the dashboard keeps them after the Redis keys expire
(KEY_TTL_S); a session not frozen yet (still live, or its end missed) is read from Redis.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime

from redis.asyncio import Redis
from sqlalchemy import ForeignKey, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.base import Base, utcnow
from commerce.live_sessions import LiveSession
from commerce.locks import lock_row

KEY_TTL_S = 90 * 24 * 3600
MAX_VIEWER_ID = 64
_ANON_ID = re.compile(r"[A-Za-z0-9_-]{8,48}")


class Interaction(enum.StrEnum):
    COMMENT = "comments"
    QUESTION = "questions"
    LIKE = "likes"
    UPVOTE = "upvotes"  # counts the viewer as interacting; no counter of its own


COUNTED = (Interaction.COMMENT, Interaction.QUESTION, Interaction.LIKE)


def viewers_key(session_id: int) -> str:
    return f"audience:{{{session_id}}}:viewers"


def interacting_key(session_id: int) -> str:
    return f"audience:{{{session_id}}}:interacting"


def counters_key(session_id: int) -> str:
    return f"audience:{{{session_id}}}:counts"


def user_viewer(user_id: int) -> str:
    return f"u:{user_id}"


def anonymous_viewer(claimed: object, socket_id: str) -> str:
    """The id of a viewer who is not signed in: the page's own random id when it sent a
    well-formed one, else this connection's (a page without storage counts once per visit)."""
    if isinstance(claimed, str) and _ANON_ID.fullmatch(claimed):
        return f"a:{claimed}"
    return f"s:{socket_id[:MAX_VIEWER_ID - 2]}"


@dataclass(frozen=True)
class AudienceCounts:
    viewers: int = 0
    interacting: int = 0
    comments: int = 0
    questions: int = 0
    likes: int = 0


class SessionAudience(Base):
    __tablename__ = "session_audience"

    session_id: Mapped[int] = mapped_column(ForeignKey("live_sessions.id"), primary_key=True,
                                            autoincrement=False)
    viewers: Mapped[int] = mapped_column()
    interacting: Mapped[int] = mapped_column()
    comments: Mapped[int] = mapped_column(default=0, server_default="0")
    questions: Mapped[int] = mapped_column(default=0, server_default="0")
    likes: Mapped[int] = mapped_column(default=0, server_default="0")
    frozen_at: Mapped[datetime] = mapped_column(default=utcnow)

    def counts(self) -> AudienceCounts:
        return AudienceCounts(self.viewers, self.interacting, self.comments, self.questions,
                              self.likes)


async def note_viewer(redis: Redis, session_id: int, viewer: str) -> None:
    """One viewer joined (again): counted once per session."""
    key = viewers_key(session_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.sadd(key, viewer[:MAX_VIEWER_ID])
        pipe.expire(key, KEY_TTL_S)
        await pipe.execute()


async def note_interaction(redis: Redis, session_id: int, viewer: str,
                           kind: Interaction = Interaction.COMMENT, amount: int = 1) -> None:
    """A comment, question, upvote or `amount` likes: the viewer counts as interacting (and as
    having watched), and the kind's counter goes up, in one transaction."""
    viewer = viewer[:MAX_VIEWER_ID]
    keys = (viewers_key(session_id), interacting_key(session_id), counters_key(session_id))
    async with redis.pipeline(transaction=True) as pipe:
        pipe.sadd(keys[0], viewer)
        pipe.sadd(keys[1], viewer)
        if kind in COUNTED:
            pipe.hincrby(keys[2], kind.value, amount)
        for key in keys:
            pipe.expire(key, KEY_TTL_S)
        await pipe.execute()


async def live_counts(redis: Redis, session_id: int) -> AudienceCounts:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.scard(viewers_key(session_id))
        pipe.scard(interacting_key(session_id))
        pipe.hmget(counters_key(session_id), [k.value for k in COUNTED])
        viewers, interacting, counters = await pipe.execute()
    comments, questions, likes = (int(v) if v is not None else 0 for v in counters)
    return AudienceCounts(int(viewers), int(interacting), comments, questions, likes)


async def freeze(db: AsyncSession, redis: Redis, session_id: int) -> SessionAudience:
    """Copy the session's counts into SQL (called when the session ends; repeatable)."""
    live = await live_counts(redis, session_id)
    # The row is inserted by the first freeze: two at once (a session ended twice) take turns.
    await lock_row(db, LiveSession, session_id)
    row = await db.get(SessionAudience, session_id, populate_existing=True)
    if row is None:
        row = SessionAudience(session_id=session_id, viewers=live.viewers,
                              interacting=live.interacting, comments=live.comments,
                              questions=live.questions, likes=live.likes)
        db.add(row)
    else:
        row.viewers, row.interacting = live.viewers, live.interacting
        row.comments, row.questions, row.likes = live.comments, live.questions, live.likes
        row.frozen_at = utcnow()
    await db.flush()
    return row


async def counts(db: AsyncSession, redis: Redis, session_ids: list[int]) -> dict[int, AudienceCounts]:
    """The counts per session: frozen SQL figures, else the live Redis ones."""
    frozen: dict[int, AudienceCounts] = {}
    for start in range(0, len(session_ids), 500):
        chunk = session_ids[start:start + 500]
        rows = await db.execute(select(SessionAudience).where(SessionAudience.session_id.in_(chunk)))
        frozen.update({row.session_id: row.counts() for row in rows.scalars()})
    return {sid: frozen[sid] if sid in frozen else await live_counts(redis, sid)
            for sid in session_ids}
