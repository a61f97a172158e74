"""Live sessions: a host schedules, goes live, ends. The stream key authorises publishing."""

from __future__ import annotations

import enum
import hmac
import secrets
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, Text, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.accounts import Principal, Role, User
from commerce.base import Base, as_utc, utcnow
from commerce.errors import Forbidden, InvalidState, NotFound
from commerce.locks import lock_row


class SessionStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"


class LiveSession(Base):
    __tablename__ = "live_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    title: Mapped[str] = mapped_column(String(120))
    farm: Mapped[str] = mapped_column(String(120), default="")
    origin: Mapped[str] = mapped_column(String(200), default="")
    preview_text: Mapped[str] = mapped_column(Text, default="")
    scheduled_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # The preview: a cover image (an upload of purpose "cover") and the products to be shown.
    cover_upload_id: Mapped[int | None] = mapped_column(ForeignKey("trust_uploads.id"), nullable=True)
    cover_url: Mapped[str] = mapped_column(String(120), default="")
    preview_product_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    # The stream key is a bearer secret for WHIP/RTMP: shown to its host only, never logged.
    stream_key: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=SessionStatus.SCHEDULED.value)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def public_dict(self) -> dict[str, object]:
        """What anyone may see (no stream key)."""
        return {
            "id": self.id,
            "host_id": self.host_id,
            "title": self.title,
            "farm": self.farm,
            "origin": self.origin,
            "preview_text": self.preview_text,
            "scheduled_at": _iso(self.scheduled_at),
            "cover_url": self.cover_url or None,
            "preview_product_ids": list(self.preview_product_ids or []),
            "status": self.status,
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
        }


def _iso(value: datetime | None) -> str | None:
    # SQLite hands times back without their zone: a bare "20:00" reads as local time in a
    # browser (12:00 UTC shown as 12:00 in Shanghai). Always send the offset.
    return as_utc(value).isoformat() if value is not None else None


def new_stream_key() -> str:
    return "sk_" + secrets.token_urlsafe(24)


async def create_session(
    db: AsyncSession,
    host: Principal,
    title: str,
    farm: str = "",
    origin: str = "",
    preview_text: str = "",
    scheduled_at: datetime | None = None,
) -> LiveSession:
    """Schedule a live session owned by `host`."""
    if host.role not in (Role.HOST, Role.ADMIN):
        raise Forbidden("只有主播可以创建直播 / Only hosts can create sessions")
    session = LiveSession(
        host_id=host.user_id, title=title, farm=farm, origin=origin,
        preview_text=preview_text, scheduled_at=scheduled_at, stream_key=new_stream_key(),
    )
    db.add(session)
    await db.flush()
    return session


async def get_session(db: AsyncSession, session_id: int) -> LiveSession:
    session = await db.get(LiveSession, session_id)
    if session is None:
        raise NotFound("直播不存在 / No such live session")
    return session


def ensure_owner(session: LiveSession, actor: Principal) -> None:
    """Hosts act only on their own sessions; admins on any."""
    if actor.is_admin:
        return
    if actor.role is not Role.HOST or session.host_id != actor.user_id:
        raise Forbidden("这不是你的直播 / Not your live session")


def ensure_staff_of(session: LiveSession, actor: Principal) -> None:
    """Moderation rights: the session's host, any assistant, any admin."""
    if actor.is_admin or actor.role is Role.ASSISTANT:
        return
    ensure_owner(session, actor)


STREAMING_ROLES = (Role.HOST.value, Role.ADMIN.value)


async def _host_may_stream(db: AsyncSession, session: LiveSession) -> bool:
    host = await db.get(User, session.host_id)
    return host is not None and not host.disabled and host.role in STREAMING_ROLES


async def host_may_stream(db: AsyncSession, session_id: int) -> bool:
    """The session's host is enabled and still a host or admin (else its key publishes nothing)."""
    return await _host_may_stream(db, await get_session(db, session_id))


async def session_for_stream_key(db: AsyncSession, session_id: int, key: str) -> LiveSession:
    """The session if `key` is its current stream key (constant-time compare) and its host may
    still stream, else Forbidden/NotFound."""
    session = await get_session(db, session_id)
    if not hmac.compare_digest(session.stream_key.encode(), key.encode()):
        raise Forbidden("推流密钥错误 / Wrong stream key", reason="bad_stream_key")
    if not await _host_may_stream(db, session):
        raise Forbidden("主播账号已停用或不再是主播 / The host may no longer stream",
                        reason="host_revoked")
    if session.status == SessionStatus.ENDED:
        raise InvalidState("直播已结束 / The session has ended")
    return session


def may_see_stream_key(session: LiveSession, actor: Principal | None) -> bool:
    """Only the session's host, while a host, or an admin. Role changes end tokens
    (server/revocations.py), so the token's role is the current one."""
    if actor is None:
        return False
    return actor.is_admin or (actor.role is Role.HOST and session.host_id == actor.user_id)


async def rotate_stream_key(db: AsyncSession, session_id: int, actor: Principal) -> str:
    """A new stream key for the session; the old one publishes nothing from the commit on."""
    session = await get_session(db, session_id)
    ensure_owner(session, actor)
    key = new_stream_key()
    # One UPDATE: of rotations racing, exactly the last to commit leaves its key in place.
    await db.execute(update(LiveSession).where(LiveSession.id == session_id).values(stream_key=key))
    return key


async def mark_live(db: AsyncSession, session_id: int) -> bool:
    """scheduled → live (idempotent for a publisher reconnecting). True for the one call, in
    any process, that made the session live: a conditional UPDATE decides, so its subscribers
    are told once however many publishers race."""
    session = await get_session(db, session_id)
    if session.status == SessionStatus.ENDED:
        raise InvalidState("直播已结束 / The session has ended")
    if session.status != SessionStatus.SCHEDULED:
        return False
    result = await db.execute(
        update(LiveSession)
        .where(LiveSession.id == session_id, LiveSession.status == SessionStatus.SCHEDULED.value)
        .values(status=SessionStatus.LIVE.value, started_at=utcnow())
        .execution_options(synchronize_session=False))
    went_live = bool(result.rowcount == 1)  # type: ignore[attr-defined]
    if not went_live:
        await db.refresh(session)
        if session.status == SessionStatus.ENDED:
            raise InvalidState("直播已结束 / The session has ended")
    return went_live


async def end_session(db: AsyncSession, session_id: int, actor: Principal | None) -> LiveSession:
    """live/scheduled → ended. `actor` None means the system (e.g. media after a publisher left).

    The row stays locked until commit: a sale being created for the session (which locks it too)
    either commits first, and is then closed with the session's other sales, or sees "ended"."""
    await lock_row(db, LiveSession, session_id)
    session = await get_session(db, session_id)
    if actor is not None:
        ensure_owner(session, actor)
    if session.status != SessionStatus.ENDED:
        session.status = SessionStatus.ENDED.value
        session.ended_at = utcnow()
        await db.flush()
    return session


async def list_sessions(db: AsyncSession, status: str | None = None, limit: int = 50,
                        host_id: int | None = None) -> list[LiveSession]:
    query = select(LiveSession).order_by(LiveSession.id.desc()).limit(limit)
    if status is not None:
        query = query.where(LiveSession.status == status)
    if host_id is not None:
        query = query.where(LiveSession.host_id == host_id)
    return list((await db.execute(query)).scalars())
