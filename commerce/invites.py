"""Invite links to a community (邀请链接): made by its manager, limited in time and uses, revocable.

A link is shared in the 小区's WeChat group; whoever follows it signs up (or signs in) and joins
that community in one step, approved at once or pending, as the community's `join_policy` says.
The use count is a limit, so a use is taken by one conditional UPDATE (`uses < max_uses`) in the
same transaction as the account and the membership it pays for: twenty neighbours following a
five-use link at once make exactly five members, and a sign-up that fails gives its use back.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ForeignKey, String, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.accounts import (
    Community,
    JoinPolicy,
    Membership,
    Principal,
    User,
    managed_community,
    membership_insert,
    membership_of,
)
from commerce.base import Base, as_utc, utcnow
from commerce.errors import Conflict, DomainError, InvalidInput
from commerce.flash_sale.sales import Sale
from commerce.live_sessions import LiveSession, SessionStatus
from commerce.locks import lock_row

# 16 URL-safe characters (96 random bits): a link cannot be found by trying codes.
CODE_BYTES = 12
CODE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
MAX_CODE_LENGTH = 32
MAX_USES = 10_000
MAX_LIFETIME = timedelta(days=90)
# Links a community may have that are neither revoked nor expired: a bound on what a manager's
# script gone wrong can pile up, far above what a 小区 ever shares.
MAX_ACTIVE_PER_COMMUNITY = 100


class Invite(Base):
    __tablename__ = "invites"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(MAX_CODE_LENGTH), unique=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    max_uses: Mapped[int | None] = mapped_column(nullable=True)
    uses: Mapped[int] = mapped_column(default=0)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def state(self, now: datetime | None = None) -> str:
        """`valid`, or why not: `revoked`, `expired`, `used_up`."""
        now = now or utcnow()
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and as_utc(self.expires_at) <= now:
            return "expired"
        if self.max_uses is not None and self.uses >= self.max_uses:
            return "used_up"
        return "valid"

    def manager_dict(self) -> dict[str, Any]:
        """What the community's manager sees in the list (the code, to share it again)."""
        return {
            "code": self.code, "community_id": self.community_id, "created_by": self.created_by,
            "max_uses": self.max_uses, "uses": self.uses, "state": self.state(),
            "expires_at": _iso(self.expires_at), "revoked_at": _iso(self.revoked_at),
            "created_at": _iso(self.created_at),
        }


class InviteNotFound(DomainError):
    code = "invite_not_found"
    status = 404
    default_message = "邀请链接不存在 / No such invite link"


class InviteRevoked(DomainError):
    code = "invite_revoked"
    status = 410
    default_message = "邀请链接已被撤销 / This invite link was revoked"


class InviteExpired(DomainError):
    code = "invite_expired"
    status = 410
    default_message = "邀请链接已过期 / This invite link has expired"


class InviteUsedUp(DomainError):
    code = "invite_used_up"
    status = 409
    default_message = "邀请链接名额已用完 / This invite link has been used up"


REFUSALS: dict[str, type[DomainError]] = {
    "revoked": InviteRevoked, "expired": InviteExpired, "used_up": InviteUsedUp,
}


def new_invite_code() -> str:
    return secrets.token_urlsafe(CODE_BYTES)


def looks_like_code(code: str) -> bool:
    """Cheap shape check before any lookup: no query for a megabyte of path."""
    return 0 < len(code) <= MAX_CODE_LENGTH and set(code) <= CODE_CHARS


async def create_invite(db: AsyncSession, community_id: int, actor: Principal, *,
                        expires_at: datetime | None = None,
                        max_uses: int | None = None) -> Invite:
    """A new link to the community (its manager only: a membership unlocks community prices)."""
    now = utcnow()
    if expires_at is not None:
        expires_at = as_utc(expires_at)
        if expires_at <= now or expires_at - now > MAX_LIFETIME:
            raise InvalidInput("有效期须在未来 90 天内 / expires_at must be within the next 90 days",
                               field="expires_at")
    if max_uses is not None and not 1 <= max_uses <= MAX_USES:
        raise InvalidInput(f"使用次数须在 1 到 {MAX_USES} 之间 / max_uses must be 1..{MAX_USES}",
                           field="max_uses")
    await managed_community(db, community_id, actor)
    # Counted under the community's lock, so links made at once cannot pass the cap together.
    await lock_row(db, Community, community_id)
    active = await db.scalar(select(func.count()).select_from(Invite).where(
        Invite.community_id == community_id, Invite.revoked_at.is_(None),
        or_(Invite.expires_at.is_(None), Invite.expires_at > now)))
    if int(active or 0) >= MAX_ACTIVE_PER_COMMUNITY:
        raise Conflict(f"有效邀请链接最多 {MAX_ACTIVE_PER_COMMUNITY} 个,请先撤销旧的 / "
                       f"At most {MAX_ACTIVE_PER_COMMUNITY} active links: revoke old ones first",
                       reason="too_many_invites")
    invite = Invite(code=new_invite_code(), community_id=community_id, created_by=actor.user_id,
                    max_uses=max_uses, expires_at=expires_at, created_at=now)
    db.add(invite)
    await db.flush()
    return invite


async def list_invites(db: AsyncSession, community_id: int, actor: Principal) -> list[Invite]:
    await managed_community(db, community_id, actor)
    rows = await db.execute(select(Invite).where(Invite.community_id == community_id)
                            .order_by(Invite.id.desc()).limit(200))
    return list(rows.scalars())


async def find_invite(db: AsyncSession, code: str) -> Invite:
    if not looks_like_code(code):
        raise InviteNotFound()
    invite = (await db.execute(
        select(Invite).where(Invite.code == code).execution_options(populate_existing=True)
    )).scalar_one_or_none()
    if invite is None:
        raise InviteNotFound()
    return invite


async def revoke_invite(db: AsyncSession, code: str, actor: Principal) -> Invite:
    """Stop a link at once (its community's manager); revoking twice is harmless."""
    invite = await find_invite(db, code)
    await managed_community(db, invite.community_id, actor)
    await db.execute(update(Invite).where(Invite.id == invite.id, Invite.revoked_at.is_(None))
                     .values(revoked_at=utcnow()).execution_options(synchronize_session=False))
    return await find_invite(db, code)


@dataclass(frozen=True)
class InvitePreview:
    invite: Invite
    community: Community
    inviter_name: str
    live_session_id: int | None

    def public_dict(self) -> dict[str, Any]:
        """What anyone holding the link may see: whose community, who invites, still valid?"""
        state = self.invite.state()
        left = (None if self.invite.max_uses is None
                else max(0, self.invite.max_uses - self.invite.uses))
        return {
            "code": self.invite.code, "valid": state == "valid",
            "reason": None if state == "valid" else state,
            "community": self.community.public_dict(),
            "inviter": {"display_name": self.inviter_name},
            "expires_at": _iso(self.invite.expires_at), "uses_left": left,
            "live_session_id": self.live_session_id,
        }


async def preview(db: AsyncSession, code: str) -> InvitePreview:
    invite = await find_invite(db, code)
    community = await db.get(Community, invite.community_id)
    inviter = await db.get(User, invite.created_by)
    if community is None:
        raise InviteNotFound()
    return InvitePreview(invite, community, inviter.display_name if inviter else "",
                         await community_live_session(db, community))


def ensure_usable(invite: Invite) -> None:
    state = invite.state()
    if state != "valid":
        raise REFUSALS[state]()


async def take_use(db: AsyncSession, invite: Invite) -> None:
    """Count one use, or refuse with why the link cannot be used. One conditional UPDATE: the
    row's lock orders concurrent takers and each sees the count the one before it left."""
    now = utcnow()
    result = await db.execute(
        update(Invite)
        .where(Invite.id == invite.id, Invite.revoked_at.is_(None),
               or_(Invite.expires_at.is_(None), Invite.expires_at > now),
               or_(Invite.max_uses.is_(None), Invite.uses < Invite.max_uses))
        .values(uses=Invite.uses + 1)
        .execution_options(synchronize_session=False))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        ensure_usable(await find_invite(db, invite.code))
        raise InviteUsedUp()  # it changed between the two statements: it is not usable now


async def join_with_invite(db: AsyncSession, invite: Invite, user_id: int) -> tuple[Membership, bool]:
    """Join the invite's community as its policy says: (membership, whether a use was taken).

    A use pays for a new membership (or a pending one approved by an open community's link);
    someone already in gets their membership back and leaves the count alone. The membership is
    written first and the use taken after it, so the same person accepting twice at once waits
    on the unique (community, user) pair and the second finds the first's row.
    """
    community = await db.get(Community, invite.community_id)
    if community is None:
        raise InviteNotFound()
    is_open = community.join_policy == JoinPolicy.OPEN.value
    # Someone already in who taps the link in the group again, days later, is simply in, even
    # if the link has died since: nothing would be taken or changed for them.
    already = (await db.execute(select(Membership).where(
        Membership.community_id == community.id, Membership.user_id == user_id))).scalar_one_or_none()
    if already is not None and (already.status == "approved" or not is_open):
        return already, False
    ensure_usable(invite)
    status, approved_by = ("approved", invite.created_by) if is_open else ("pending", None)
    insert = membership_insert(db, community.id, user_id, status, approved_by)
    created = (await db.execute(
        insert.on_conflict_do_nothing(index_elements=["community_id", "user_id"])
        .returning(Membership.id))).first()
    took = False
    if created is not None:
        await take_use(db, invite)
        took = True
    elif is_open:
        approved = await db.execute(
            update(Membership).where(Membership.community_id == community.id,
                                     Membership.user_id == user_id, Membership.status == "pending")
            .values(status="approved", approved_by=invite.created_by)
            .execution_options(synchronize_session=False))
        if approved.rowcount == 1:  # type: ignore[attr-defined]
            await take_use(db, invite)
            took = True
    return await membership_of(db, community.id, user_id), took


async def community_live_session(db: AsyncSession, community: Community) -> int | None:
    """The session a newcomer should land in: one live now by the community's host, else one
    live now selling to this community; None when nothing of theirs is live."""
    live = list((await db.execute(
        select(LiveSession).where(LiveSession.status == SessionStatus.LIVE.value)
        .order_by(LiveSession.started_at.desc(), LiveSession.id.desc()).limit(50))).scalars())
    for session in live:
        if community.created_by is not None and session.host_id == community.created_by:
            return session.id
    if not live:
        return None
    sales = await db.execute(select(Sale.session_id, Sale.community_ids)
                             .where(Sale.session_id.in_([s.id for s in live])))
    selling = {sid for sid, ids in sales if community.id in (ids or [])}
    return next((s.id for s in live if s.id in selling), None)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else as_utc(value).isoformat()
