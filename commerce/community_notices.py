"""A short notice from a community's manager (its host, an admin or its 团长) to its members.

Optionally only to members with one interest tag. Each recipient gets an in-app notification
(kind `community_notice`, the text in its params, rendered escaped by the page); the server
also hands the new notifications to the WeChat subscription-message provider when one is
configured.

One send per idempotency key: the community's row is locked, the key looked up, then the notice
inserted (unique on community and key), so twenty taps with one key make one notice and one
notification per member. The same lock makes the daily limit hold: the count and the insert
happen with no other sender of that community in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.accounts import Community, Membership, Principal, worked_community
from commerce.base import Base, as_utc, check_idempotency_key, utcnow
from commerce.errors import InvalidInput, RateLimited
from commerce.interest_tags import TAGS, UserTag
from commerce.locks import lock_row
from commerce.notifications import NoticeKind, Notification, _insert

MAX_CHARS = 200
PER_DAY = 10
LIST_MAX = 50


class CommunityNotice(Base):
    __tablename__ = "community_notices"
    __table_args__ = (
        UniqueConstraint("community_id", "idem_key", name="uq_community_notices_key"),
        Index("ix_community_notices_community_created", "community_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    sender_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    text: Mapped[str] = mapped_column(String(MAX_CHARS))
    tag: Mapped[str | None] = mapped_column(String(24), nullable=True)
    idem_key: Mapped[str] = mapped_column(String(100))
    recipients: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def public_dict(self) -> dict[str, Any]:
        return {"id": self.id, "community_id": self.community_id, "sender_id": self.sender_id,
                "text": self.text, "tag": self.tag, "recipients": self.recipients,
                "created_at": as_utc(self.created_at).isoformat()}


@dataclass(frozen=True)
class Sent:
    notice: CommunityNotice
    replayed: bool  # the key was used before: nothing new was sent
    made: list[Notification]


def clean_text(text: str) -> str:
    cleaned = " ".join(text.split())
    if not cleaned:
        raise InvalidInput("请填写通知内容 / Write the notice", field="text")
    if len(cleaned) > MAX_CHARS:
        raise InvalidInput(f"最多 {MAX_CHARS} 字 / At most {MAX_CHARS} characters", field="text",
                           max=MAX_CHARS)
    return cleaned


async def send(db: AsyncSession, community_id: int, actor: Principal, text: str,
               tag: str | None, key: str | None) -> Sent:
    """Notify the community's approved members (with `tag`, when given), once per `key`."""
    community = await worked_community(db, community_id, actor)
    cleaned = clean_text(text)
    if tag is not None and tag not in TAGS:
        raise InvalidInput("未知的兴趣标签 / Unknown interest tag", field="tag", allowed=list(TAGS))
    if key is None:
        raise InvalidInput("请带上 Idempotency-Key / Send an Idempotency-Key header",
                           field="Idempotency-Key")
    check_idempotency_key(key)
    await lock_row(db, Community, community_id)
    before = (await db.execute(select(CommunityNotice).where(
        CommunityNotice.community_id == community_id, CommunityNotice.idem_key == key))).scalar()
    if before is not None:
        return Sent(before, True, [])
    since = utcnow() - timedelta(days=1)
    recent = (await db.execute(select(func.count()).select_from(CommunityNotice).where(
        CommunityNotice.community_id == community_id, CommunityNotice.created_at > since))).scalar_one()
    if recent >= PER_DAY:
        raise RateLimited(f"每个小区每天最多 {PER_DAY} 条通知 / At most {PER_DAY} notices a day "
                          "per community", limit=PER_DAY)
    notice = CommunityNotice(community_id=community_id, sender_id=actor.user_id, text=cleaned,
                             tag=tag, idem_key=key, created_at=utcnow())
    db.add(notice)
    await db.flush()
    params = {"notice_id": notice.id, "community_id": community_id,
              "community_name": community.name, "text": cleaned, "tag": tag}
    now = utcnow()
    pick = select(
        Membership.user_id, literal(NoticeKind.COMMUNITY_NOTICE.value), literal(params, JSON),
        literal("/me"), literal(f"community_notice:{notice.id}"), literal(now),
    ).where(Membership.community_id == community_id, Membership.status == "approved")
    if tag is not None:
        pick = pick.where(Membership.user_id.in_(select(UserTag.user_id).where(UserTag.tag == tag)))
    stmt = _insert(db)(Notification).from_select(
        ["user_id", "kind", "params", "link", "dedupe", "created_at"], pick,
    ).on_conflict_do_nothing(index_elements=["user_id", "dedupe"]).returning(Notification.id)
    ids = list((await db.execute(stmt)).scalars())
    notice.recipients = len(ids)
    await db.flush()
    made = list((await db.execute(select(Notification).where(Notification.id.in_(ids))))
                .scalars()) if ids else []
    return Sent(notice, False, made)


async def recent_notices(db: AsyncSession, community_id: int, actor: Principal) -> list[CommunityNotice]:
    await worked_community(db, community_id, actor)
    rows = await db.execute(select(CommunityNotice).where(
        CommunityNotice.community_id == community_id)
        .order_by(CommunityNotice.id.desc()).limit(LIST_MAX))
    return list(rows.scalars())
