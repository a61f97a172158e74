"""Accounts signed in through an outside provider (WeChat 网页授权), bound to its user ids.

WeChat names a person by an `openid` per official account (app) and, when the apps share an
open-platform account, a `unionid` across them. Each is bound to at most one of our users
(unique constraints), so two callbacks for the same person racing each other end with one
account: the loser's insert fails and it signs in as the winner.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import ColumnElement, ForeignKey, String, UniqueConstraint, and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.accounts import Role, User
from commerce.base import Base, utcnow
from commerce.errors import Conflict

# A password hash nothing verifies against (sign-in treats a hash starting with "!" as none):
# an account made through WeChat signs in through WeChat until someone sets it a password.
UNUSABLE_HASH = "!provider-only"


class WechatIdentity(Base):
    __tablename__ = "wechat_identities"
    __table_args__ = (UniqueConstraint("app_id", "openid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    app_id: Mapped[str] = mapped_column(String(64))
    openid: Mapped[str] = mapped_column(String(128))
    unionid: Mapped[str | None] = mapped_column(String(128), unique=True, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


async def find_wechat_user(db: AsyncSession, app_id: str, openid: str,
                           unionid: str | None) -> User | None:
    clauses: list[ColumnElement[bool]] = [
        and_(WechatIdentity.app_id == app_id, WechatIdentity.openid == openid)]
    if unionid:
        clauses.append(WechatIdentity.unionid == unionid)
    row = (await db.execute(select(User).join(WechatIdentity, WechatIdentity.user_id == User.id)
                            .where(or_(*clauses)).limit(1))).scalar_one_or_none()
    return row


async def wechat_user(db: AsyncSession, app_id: str, openid: str, unionid: str | None,
                      nickname: str) -> tuple[User, bool]:
    """The user bound to this WeChat person, made (a viewer) on first sign-in: (user, created)."""
    found = await find_wechat_user(db, app_id, openid, unionid)
    if found is not None:
        return found, False
    username = f"wx_{secrets.token_hex(6)}"
    user = User(username=username, password_hash=UNUSABLE_HASH, role=Role.VIEWER.value,
                display_name=nickname.strip()[:64] or username)
    try:
        async with db.begin_nested():
            db.add(user)
            await db.flush()
            db.add(WechatIdentity(user_id=user.id, app_id=app_id, openid=openid,
                                  unionid=unionid or None))
    except IntegrityError:
        # Bound meanwhile by a concurrent callback for the same person: sign in as that one.
        found = await find_wechat_user(db, app_id, openid, unionid)
        if found is None:
            raise
        return found, False
    return user, True


async def link_wechat(db: AsyncSession, user_id: int, app_id: str, openid: str,
                      unionid: str | None) -> None:
    """Bind this WeChat person to an existing account (绑定微信: a neighbour who signed up with
    a password, so the shop can pay her through WeChat). Already hers: nothing to do. Bound
    to someone else, or she has another WeChat bound: Conflict."""
    found = await find_wechat_user(db, app_id, openid, unionid)
    if found is not None:
        if found.id != user_id:
            raise Conflict("该微信已绑定其他账号 / This WeChat is bound to another account",
                           reason="wechat_bound_elsewhere")
        return
    try:
        async with db.begin_nested():
            db.add(WechatIdentity(user_id=user_id, app_id=app_id, openid=openid,
                                  unionid=unionid or None))
    except IntegrityError:
        # Her account has another WeChat bound, or this one was bound meanwhile.
        raise Conflict("该微信或账号已绑定 / Already bound", reason="wechat_bound_elsewhere") from None
