"""In-app notifications and 预约 (subscriptions to a scheduled session).

A notification is private to its user. It stores a `kind` and its `params`, never rendered
text: the page renders it from its translation table, in the viewer's one language. `dedupe`
makes a notification about one thing at most once per user (unique with the user): an order
marked ready twice over a retry, or a session "going live" seen by two processes, notifies once.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    and_,
    delete,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.base import Base, as_utc, utcnow
from commerce.errors import InvalidInput, InvalidState
from commerce.live_sessions import SessionStatus, get_session

PAGE_MAX = 50
READ_IDS_MAX = 200


class NoticeKind(enum.StrEnum):
    ORDER_READY = "order_ready"
    ORDER_REFUNDED = "order_refunded"
    CLAIM_DECIDED = "claim_decided"
    SESSION_LIVE = "session_live"
    COMMUNITY_NOTICE = "community_notice"
    GUEST_INVITE = "guest_invite"  # a host invites this user on camera (docs/GUEST.md)
    KOC_SELECTED = "koc_selected"  # she is now a member of a 品鉴官 programme (docs/KOC.md)
    SAMPLE_SENT = "sample_sent"  # a trial sample is on its way, with the date her 晒单 is due


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("user_id", "dedupe", name="uq_notifications_user_dedupe"),
        # The list (newest first, per user) and the unread count read this index only.
        Index("ix_notifications_user_id_id", "user_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    link: Mapped[str] = mapped_column(String(300), default="")
    dedupe: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(nullable=True)

    def public_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "params": dict(self.params or {}), "link": self.link,
            "created_at": as_utc(self.created_at).isoformat(),
            "read_at": as_utc(self.read_at).isoformat() if self.read_at else None,
        }


class SessionSubscription(Base):
    """One user's 预约 of one session: unique, so subscribing twenty times at once is one row."""

    __tablename__ = "session_subscriptions"
    __table_args__ = (UniqueConstraint("session_id", "user_id", name="uq_session_subscriptions_pair"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("live_sessions.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def _insert(db: AsyncSession) -> Any:
    return postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert


async def notify(db: AsyncSession, user_id: int, kind: NoticeKind, params: dict[str, Any],
                 link: str, dedupe: str) -> Notification | None:
    """Record one notification; None when this user already has the one with this `dedupe`."""
    stmt = _insert(db)(Notification).values(
        user_id=user_id, kind=kind.value, params=params, link=link, dedupe=dedupe,
        created_at=utcnow(),
    ).on_conflict_do_nothing(index_elements=["user_id", "dedupe"]).returning(Notification.id)
    new_id = (await db.execute(stmt)).scalar_one_or_none()
    return None if new_id is None else await db.get(Notification, new_id)


async def notify_subscribers(db: AsyncSession, session_id: int, params: dict[str, Any]) -> list[Notification]:
    """Every subscriber of the session gets its "live now" notice, in one INSERT … SELECT.

    Safe to run twice (dedupe): only rows this call made are returned, for delivery."""
    dedupe = f"live:{session_id}"
    now = utcnow()
    pick = select(
        SessionSubscription.user_id, literal(NoticeKind.SESSION_LIVE.value),
        literal(params, JSON), literal(f"/live/{session_id}"), literal(dedupe), literal(now),
    ).where(SessionSubscription.session_id == session_id)
    stmt = _insert(db)(Notification).from_select(
        ["user_id", "kind", "params", "link", "dedupe", "created_at"], pick,
    ).on_conflict_do_nothing(index_elements=["user_id", "dedupe"]).returning(Notification.id)
    ids = list((await db.execute(stmt)).scalars())
    if not ids:
        return []
    rows = await db.execute(select(Notification).where(Notification.id.in_(ids)))
    return list(rows.scalars())


async def list_for(db: AsyncSession, user_id: int, before: int | None,
                   limit: int) -> tuple[list[Notification], int | None]:
    """The user's own notifications, newest first; `next` is the cursor for the page after."""
    if not 1 <= limit <= PAGE_MAX:
        raise InvalidInput(f"limit 须在 1..{PAGE_MAX} / limit must be 1..{PAGE_MAX}", field="limit")
    query = select(Notification).where(Notification.user_id == user_id)
    if before is not None:
        query = query.where(Notification.id < before)
    rows = list((await db.execute(query.order_by(Notification.id.desc()).limit(limit + 1))).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


async def unread_count(db: AsyncSession, user_id: int) -> int:
    found = await db.execute(select(func.count()).select_from(Notification).where(
        Notification.user_id == user_id, Notification.read_at.is_(None)))
    return int(found.scalar_one())


async def mark_read(db: AsyncSession, user_id: int, ids: list[int] | None) -> int:
    """Mark the user's own notifications read (these ids, or all); others' ids change nothing."""
    if ids is not None and len(ids) > READ_IDS_MAX:
        raise InvalidInput(f"一次最多 {READ_IDS_MAX} 条 / At most {READ_IDS_MAX} ids", field="ids")
    cond = and_(Notification.user_id == user_id, Notification.read_at.is_(None))
    if ids is not None:
        cond = and_(cond, Notification.id.in_(ids))
    result = await db.execute(update(Notification).where(cond).values(read_at=utcnow())
                              .execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]


# --- 预约 --------------------------------------------------------------------------------------

async def subscribe(db: AsyncSession, session_id: int, user_id: int) -> None:
    session = await get_session(db, session_id)
    if session.status != SessionStatus.SCHEDULED.value:
        raise InvalidState("只能预约未开播的直播 / Only a scheduled session can be subscribed",
                           status=session.status)
    await db.execute(_insert(db)(SessionSubscription).values(
        session_id=session_id, user_id=user_id, created_at=utcnow(),
    ).on_conflict_do_nothing(index_elements=["session_id", "user_id"]))


async def unsubscribe(db: AsyncSession, session_id: int, user_id: int) -> None:
    await get_session(db, session_id)
    await db.execute(delete(SessionSubscription).where(
        SessionSubscription.session_id == session_id, SessionSubscription.user_id == user_id))


async def subscriber_count(db: AsyncSession, session_id: int) -> int:
    found = await db.execute(select(func.count()).select_from(SessionSubscription)
                             .where(SessionSubscription.session_id == session_id))
    return int(found.scalar_one())


async def is_subscribed(db: AsyncSession, session_id: int, user_id: int) -> bool:
    found = await db.execute(select(SessionSubscription.id).where(
        SessionSubscription.session_id == session_id, SessionSubscription.user_id == user_id))
    return found.first() is not None

