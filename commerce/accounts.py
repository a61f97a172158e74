"""Users, roles, communities (小区) and their approved members."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, ForeignKey, Select, String, UniqueConstraint, delete, or_, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.base import Base, as_utc, utcnow
from commerce.errors import Conflict, Forbidden, NotFound


class Role(enum.StrEnum):
    ADMIN = "admin"
    HOST = "host"
    ASSISTANT = "assistant"
    VIEWER = "viewer"


@dataclass(frozen=True)
class Principal:
    """Who is acting: taken from a verified token, passed to every domain action that checks rights."""

    user_id: int
    username: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def is_staff(self) -> bool:
        """Staff may moderate: admins, hosts and assistants."""
        return self.role in (Role.ADMIN, Role.HOST, Role.ASSISTANT)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64), default="")
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16), default=Role.VIEWER.value)
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def principal(self) -> Principal:
        return Principal(self.id, self.username, Role(self.role))


class JoinPolicy(enum.StrEnum):
    """How a neighbour who follows an invite link becomes a member."""

    OPEN = "open"  # approved at once
    APPROVAL = "approval"  # pending until the community's manager approves


class Community(Base):
    __tablename__ = "communities"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    join_policy: Mapped[str] = mapped_column(String(16), default=JoinPolicy.OPEN.value,
                                             server_default=text("'open'"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def public_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "join_policy": self.join_policy,
                "created_by": self.created_by}


class Membership(Base):
    """A user belongs to a community once a host or admin approved it (status 'approved')."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("community_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    approved_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CommunityLeader(Base):
    """A 团长: a user a community's host (or an admin) appointed to run that one community's
    pickup day, members and join requests. Unique per (community, user): appointing twice, or
    twenty times at once, is one row."""

    __tablename__ = "community_leaders"
    __table_args__ = (UniqueConstraint("community_id", "user_id", name="uq_community_leaders_pair"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    appointed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


async def create_user(
    db: AsyncSession, username: str, password_hash: str, role: Role, display_name: str = ""
) -> User:
    """Insert a user; `Conflict` when the username is taken."""
    user = User(
        username=username, password_hash=password_hash, role=role.value,
        display_name=display_name or username,
    )
    db.add(user)
    try:
        await db.flush()
    except IntegrityError:
        await db.rollback()
        raise Conflict("用户名已存在 / Username already taken", field="username") from None
    return user


async def get_user(db: AsyncSession, user_id: int) -> User:
    user = await db.get(User, user_id)
    if user is None:
        raise NotFound("用户不存在 / No such user")
    return user


async def update_user(
    db: AsyncSession, user_id: int, actor: Principal, *, role: Role | None = None,
    disabled: bool | None = None, display_name: str | None = None,
    password_hash: str | None = None,
) -> tuple[User, bool]:
    """Change a user's role, standing, name or password; also says whether their tokens must end.

    An admin cannot disable or demote themselves: the last admin doing so would lock everyone
    out, and there is no undo without the database.
    """
    user = await get_user(db, user_id)
    if user_id == actor.user_id and (disabled or (role is not None and role != Role.ADMIN)):
        raise Conflict("不能停用或降级自己的账号 / You cannot disable or demote yourself",
                       reason="self_lockout")
    revoke = False
    if role is not None and role.value != user.role:
        user.role, revoke = role.value, True
    if disabled is not None and disabled != user.disabled:
        user.disabled = disabled
        revoke = revoke or disabled
    if display_name is not None:
        user.display_name = display_name or user.username
    if password_hash is not None:
        # A reset is how a leaked password is dealt with: what was signed in with it ends too;
        # an admin changing their own keeps the token they are using (like `self_lockout`).
        user.password_hash = password_hash
        revoke = revoke or user_id != actor.user_id
    await db.flush()
    return user, revoke


async def find_user(db: AsyncSession, username: str) -> User | None:
    return (await db.execute(select(User).where(User.username == username))).scalar_one_or_none()


async def create_community(db: AsyncSession, name: str, created_by: int | None,
                           join_policy: JoinPolicy = JoinPolicy.OPEN) -> Community:
    community = Community(name=name, created_by=created_by, join_policy=join_policy.value)
    db.add(community)
    try:
        await db.flush()
    except IntegrityError:
        await db.rollback()
        raise Conflict("小区名称已存在 / Community name already exists", field="name") from None
    return community


async def managed_community(db: AsyncSession, community_id: int, actor: Principal) -> Community:
    """The community, when `actor` manages it (404 when there is none, 403 when not theirs)."""
    community = await db.get(Community, community_id)
    if community is None:
        raise NotFound("小区不存在 / No such community")
    ensure_community_manager(community, actor)
    return community


async def set_join_policy(db: AsyncSession, community_id: int, actor: Principal,
                          policy: JoinPolicy) -> Community:
    """Open (invitees join at once) or approval (they wait for the manager): the manager's call."""
    community = await managed_community(db, community_id, actor)
    community.join_policy = policy.value
    await db.flush()
    return community


def ensure_community_manager(community: Community, actor: Principal) -> None:
    """Admins manage every community; a host only the ones they created.

    A membership unlocks community prices and group-buys on every host's sales, so another
    host must not be able to grant one.
    """
    if actor.is_admin or (actor.role is Role.HOST and community.created_by == actor.user_id):
        return
    raise Forbidden("这不是你的小区 / Not your community")


def led_by(user_id: int) -> Select[int]:
    """Ids of the communities this user is 团长 of, as a subquery."""
    return select(CommunityLeader.community_id).where(CommunityLeader.user_id == user_id)


def owned_by(user_id: int) -> Select[int]:
    return select(Community.id).where(Community.created_by == user_id)


def managed_scope(actor: Principal) -> ColumnElement[bool] | None:
    """The communities `actor` manages (owns or leads), as a condition on Community.id; None
    for an admin (all of them). The one rule of community tenancy, in SQL."""
    if actor.is_admin:
        return None
    if actor.role is Role.HOST:
        return or_(Community.id.in_(owned_by(actor.user_id)),
                   Community.id.in_(led_by(actor.user_id)))
    return Community.id.in_(led_by(actor.user_id))


async def leads(db: AsyncSession, community_id: int, user_id: int) -> bool:
    found = await db.execute(select(CommunityLeader.id).where(
        CommunityLeader.community_id == community_id, CommunityLeader.user_id == user_id))
    return found.first() is not None


async def may_manage_community(db: AsyncSession, community: Community, actor: Principal) -> bool:
    """Its owner (the host who created it, or an admin) or its 团长: who may work its orders,
    pickup day, members and join requests, and send its members a notice. Its pickup points,
    join policy, invites and 团长 stay the owner's (`ensure_community_manager`)."""
    if actor.is_admin or (actor.role is Role.HOST and community.created_by == actor.user_id):
        return True
    return await leads(db, community.id, actor.user_id)


async def worked_community(db: AsyncSession, community_id: int, actor: Principal) -> Community:
    """The community, when `actor` may manage it (404 when there is none, 403 when not)."""
    community = await db.get(Community, community_id)
    if community is None:
        raise NotFound("小区不存在 / No such community")
    if not await may_manage_community(db, community, actor):
        raise Forbidden("这不是你的小区 / Not your community")
    return community


async def led_communities(db: AsyncSession, user_id: int) -> list[int]:
    """Ids of the communities this user is 团长 of (the pages show him their tools)."""
    return list((await db.execute(led_by(user_id).order_by(CommunityLeader.community_id))).scalars())


async def leads_any(db: AsyncSession, user_id: int) -> bool:
    found = await db.execute(select(CommunityLeader.id).where(CommunityLeader.user_id == user_id)
                             .limit(1))
    return found.first() is not None


async def served_communities(db: AsyncSession, actor: Principal) -> list[tuple[Community, bool]]:
    """The communities `actor` manages, each with whether he owns it (False: he is its 团长)."""
    query = select(Community).order_by(Community.id)
    scope = managed_scope(actor)
    if scope is not None:
        query = query.where(scope)
    rows = list((await db.execute(query)).scalars())
    return [(c, actor.is_admin or c.created_by == actor.user_id) for c in rows]


async def appoint_leader(db: AsyncSession, community_id: int, user_id: int,
                         actor: Principal) -> None:
    """Make `user_id` 团长 of the community (its owner only); one statement, so appointments
    racing each other leave one row."""
    await managed_community(db, community_id, actor)
    user = await get_user(db, user_id)
    if user.disabled:
        raise Conflict("该用户已停用 / That user is disabled", reason="user_disabled")
    insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
    await db.execute(insert(CommunityLeader).values(
        community_id=community_id, user_id=user_id, appointed_by=actor.user_id,
        created_at=utcnow()).on_conflict_do_nothing(index_elements=["community_id", "user_id"]))


async def dismiss_leader(db: AsyncSession, community_id: int, user_id: int,
                         actor: Principal) -> bool:
    """Take the 团长 role away (its owner only); False when he was none."""
    await managed_community(db, community_id, actor)
    gone = await db.execute(delete(CommunityLeader).where(
        CommunityLeader.community_id == community_id, CommunityLeader.user_id == user_id)
        .execution_options(synchronize_session=False))
    return bool(gone.rowcount)  # type: ignore[attr-defined]


async def leaders_of(db: AsyncSession, community_id: int) -> list[dict[str, Any]]:
    rows = await db.execute(
        select(CommunityLeader, User.username, User.display_name)
        .join(User, User.id == CommunityLeader.user_id)
        .where(CommunityLeader.community_id == community_id).order_by(CommunityLeader.id))
    return [{"user_id": leader.user_id, "username": username, "display_name": name,
             "appointed_at": as_utc(leader.created_at).isoformat()}
            for leader, username, name in rows]


async def add_member(
    db: AsyncSession, community_id: int, user_id: int, approved_by: int | None,
    manager: Principal | None = None,
) -> Membership:
    """Add or approve a member; approving twice is harmless. `manager` is checked when given."""
    community = await db.get(Community, community_id)
    if community is None:
        raise NotFound("小区不存在 / No such community")
    if manager is not None:
        ensure_community_manager(community, manager)
    await get_user(db, user_id)
    status = "approved" if approved_by is not None else "pending"
    # One statement, so approvals racing each other (or a join) end in one row, not a 500.
    row = membership_insert(db, community_id, user_id, status, approved_by)
    await db.execute(row.on_conflict_do_update(
        index_elements=["community_id", "user_id"],
        set_={"status": status, "approved_by": approved_by}))
    return await membership_of(db, community_id, user_id)


async def request_membership(db: AsyncSession, community_id: int, user_id: int) -> Membership:
    """A viewer asks to join; a host or admin approves later with `add_member`. Asking again (or
    at once, twenty times) leaves the one membership as it is."""
    if await db.get(Community, community_id) is None:
        raise NotFound("小区不存在 / No such community")
    row = membership_insert(db, community_id, user_id, "pending", None)
    await db.execute(row.on_conflict_do_nothing(index_elements=["community_id", "user_id"]))
    return await membership_of(db, community_id, user_id)


def membership_insert(db: AsyncSession, community_id: int, user_id: int, status: str,
                      approved_by: int | None) -> Any:
    insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
    return insert(Membership).values(community_id=community_id, user_id=user_id, status=status,
                                     approved_by=approved_by, created_at=utcnow())


async def membership_of(db: AsyncSession, community_id: int, user_id: int) -> Membership:
    found = (await db.execute(
        select(Membership).where(Membership.community_id == community_id,
                                 Membership.user_id == user_id)
        .execution_options(populate_existing=True))).scalar_one()
    return found


async def member_communities(db: AsyncSession, user_id: int) -> list[int]:
    """Ids of the communities where this user is an approved member."""
    rows = await db.execute(
        select(Membership.community_id).where(
            Membership.user_id == user_id, Membership.status == "approved"
        )
    )
    return [row[0] for row in rows]
