"""品鉴官 programmes, their members, and the badge a member wears beside her name.

A membership lapses when its member has not posted a 晒单 for the programme's `exit_days`
(counted from her selection or her newest approved 晒单, whichever is later). The badge reads
that rule on every read, so a lapsed member loses it at once; the sweep
(`trust.koc.lapse_members`) then marks the row and frees the quota seat.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.base import Base, as_utc, utcnow

MAX_RULES = 2000
MAX_BADGE = 12


class AppStatus(enum.StrEnum):
    APPLIED = "applied"
    SELECTED = "selected"
    REJECTED = "rejected"
    LAPSED = "lapsed"


class Programme(Base):
    __tablename__ = "koc_programmes"

    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    # One community's programme, or (None) the host's shop-wide one.
    community_id: Mapped[int | None] = mapped_column(ForeignKey("communities.id"), nullable=True)
    title: Mapped[str] = mapped_column(String(80))
    rules: Mapped[str] = mapped_column(Text, default="")
    badge: Mapped[str] = mapped_column(String(MAX_BADGE), default="品鉴官")
    quota: Mapped[int] = mapped_column()
    selected: Mapped[int] = mapped_column(default=0)  # seats taken: the quota's counter
    min_orders: Mapped[int] = mapped_column(default=0)
    min_reviews: Mapped[int] = mapped_column(default=0)
    exit_days: Mapped[int] = mapped_column(default=30)
    open: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def public_dict(self) -> dict[str, Any]:
        return {"id": self.id, "host_id": self.host_id, "community_id": self.community_id,
                "title": self.title, "rules": self.rules, "badge": self.badge,
                "quota": self.quota, "selected": self.selected, "min_orders": self.min_orders,
                "min_reviews": self.min_reviews, "exit_days": self.exit_days, "open": self.open,
                "created_at": as_utc(self.created_at).isoformat()}


class Application(Base):
    __tablename__ = "koc_applications"
    __table_args__ = (UniqueConstraint("programme_id", "user_id", name="uq_koc_applications_user"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("koc_programmes.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=AppStatus.APPLIED.value)
    note: Mapped[str] = mapped_column(String(300), default="")
    applied_at: Mapped[datetime] = mapped_column(default=utcnow)
    selected_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_post_at: Mapped[datetime | None] = mapped_column(nullable=True)

    def public_dict(self) -> dict[str, Any]:
        return {"id": self.id, "programme_id": self.programme_id, "user_id": self.user_id,
                "status": self.status, "note": self.note,
                "applied_at": as_utc(self.applied_at).isoformat(),
                "selected_at": as_utc(self.selected_at).isoformat() if self.selected_at else None,
                "last_post_at": as_utc(self.last_post_at).isoformat() if self.last_post_at else None}


def active_until(app: Application, programme: Programme) -> datetime | None:
    """When the membership lapses by the exit rule (None when not selected)."""
    if app.status != AppStatus.SELECTED.value or app.selected_at is None:
        return None
    since = max(as_utc(app.selected_at), as_utc(app.last_post_at or app.selected_at))
    return since + timedelta(days=programme.exit_days)


def is_active(app: Application, programme: Programme, now: datetime | None = None) -> bool:
    until = active_until(app, programme)
    return until is not None and (now or utcnow()) < until


async def memberships(db: AsyncSession, user_ids: list[int],
                      host_id: int | None = None) -> list[tuple[Application, Programme]]:
    if not user_ids:
        return []
    query = (select(Application, Programme).join(Programme, Programme.id == Application.programme_id)
             .where(Application.user_id.in_(user_ids),
                    Application.status == AppStatus.SELECTED.value))
    if host_id is not None:
        query = query.where(Programme.host_id == host_id)
    return [(a, p) for a, p in (await db.execute(query.order_by(Application.id)))]


async def badges_for(db: AsyncSession, user_ids: list[int],
                     host_id: int | None = None) -> dict[int, str]:
    """user id → badge text, for members whose membership is live (of `host_id`'s programmes
    when given: a room shows the badges of its own host's programmes)."""
    now = utcnow()
    found: dict[int, str] = {}
    for app, programme in await memberships(db, list(set(user_ids)), host_id):
        if app.user_id not in found and is_active(app, programme, now):
            found[app.user_id] = programme.badge
    return found


async def badge_for(db: AsyncSession, user_id: int, host_id: int | None = None) -> str | None:
    return (await badges_for(db, [user_id], host_id)).get(user_id)
