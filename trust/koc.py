"""The 品鉴官 programme's workflow: a host opens it, neighbours apply, the host selects.

Entry criteria are checked here, on the server, at application time: picked-up orders and
reviews counted in the programme's scope (the host's shop, or one community's orders). The
quota is a counter on the programme row: a selection takes a seat with a conditional UPDATE
(`selected < quota`) and moves the application in the same transaction, so twenty selections
at once on a quota of five select exactly five. A lapsed member's seat is given back by
`lapse_members` (run when the host reads the list, and by the sweep).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from commerce.accounts import Community, Principal, Role, User, ensure_community_manager
from commerce.base import utcnow
from commerce.catalog import Product
from commerce.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound
from commerce.live_sessions import LiveSession
from commerce.orders import Order
from trust.evidence import FULFILLED
from trust.programmes import MAX_BADGE, MAX_RULES, Application, AppStatus, Programme, is_active
from trust.reviews import Review, mask_name

MAX_QUOTA = 10_000
MAX_EXIT_DAYS = 365
MAX_CRITERION = 1000


class QuotaFull(DomainError):
    code = "quota_full"
    status = 409
    default_message = "名额已满 / The programme's quota is full"


class CriteriaNotMet(DomainError):
    code = "criteria_not_met"
    status = 409
    default_message = "尚未达到申请条件 / Entry criteria not met"


def _ensure_host(actor: Principal) -> None:
    if actor.role not in (Role.HOST, Role.ADMIN):
        raise Forbidden("只有主播可以开设品鉴官计划 / Only hosts run programmes")


def _own(programme: Programme, actor: Principal) -> None:
    if not actor.is_admin and (actor.role is not Role.HOST or programme.host_id != actor.user_id):
        raise Forbidden("这不是你的计划 / Not your programme")


def _check(values: dict[str, Any]) -> None:
    bounds = {"quota": (1, MAX_QUOTA), "min_orders": (0, MAX_CRITERION),
              "min_reviews": (0, MAX_CRITERION), "exit_days": (1, MAX_EXIT_DAYS)}
    for name, (low, high) in bounds.items():
        if name in values and not low <= int(values[name]) <= high:
            raise InvalidInput(f"{name} 须为 {low}–{high} / {name} must be {low}–{high}", field=name)
    if "rules" in values and len(values["rules"]) > MAX_RULES:
        raise InvalidInput(f"规则最多 {MAX_RULES} 字 / rules: at most {MAX_RULES}", field="rules")
    if "badge" in values and not 1 <= len(values["badge"].strip()) <= MAX_BADGE:
        raise InvalidInput(f"徽章 1–{MAX_BADGE} 字 / badge 1–{MAX_BADGE} characters", field="badge")


async def open_programme(db: AsyncSession, actor: Principal, values: dict[str, Any]) -> Programme:
    _ensure_host(actor)
    _check(values)
    community_id = values.get("community_id")
    if community_id is not None:
        community = await db.get(Community, community_id)
        if community is None:
            raise NotFound("小区不存在 / No such community")
        ensure_community_manager(community, actor)
    programme = Programme(
        host_id=actor.user_id, community_id=community_id, title=values["title"].strip(),
        rules=values.get("rules", ""), badge=values.get("badge", "品鉴官").strip(),
        quota=values["quota"], min_orders=values.get("min_orders", 0),
        min_reviews=values.get("min_reviews", 0), exit_days=values.get("exit_days", 30))
    db.add(programme)
    await db.flush()
    return programme


async def get_programme(db: AsyncSession, programme_id: int) -> Programme:
    programme = await db.get(Programme, programme_id)
    if programme is None:
        raise NotFound("计划不存在 / No such programme", programme_id=programme_id)
    return programme


async def update_programme(db: AsyncSession, actor: Principal, programme_id: int,
                           values: dict[str, Any]) -> Programme:
    programme = await get_programme(db, programme_id)
    _own(programme, actor)
    _check(values)
    if "quota" in values:
        # Lowering the quota below the seats taken would strand members: refused, atomically.
        moved = await db.execute(update(Programme).where(
            Programme.id == programme_id, Programme.selected <= values["quota"])
            .values(quota=values["quota"]).execution_options(synchronize_session=False))
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict("名额少于已选人数 / Quota below the members selected",
                           reason="quota_below_selected")
    for name in ("title", "rules", "badge", "min_orders", "min_reviews", "exit_days", "open"):
        if name in values:
            setattr(programme, name, values[name])
    await db.flush()
    await db.refresh(programme)
    return programme


async def list_programmes(db: AsyncSession, host_id: int | None = None,
                          community_id: int | None = None, only_open: bool = True) -> list[Programme]:
    query = select(Programme).order_by(Programme.id.desc()).limit(100)
    if host_id is not None:
        query = query.where(Programme.host_id == host_id)
    if community_id is not None:
        query = query.where(Programme.community_id == community_id)
    if only_open:
        query = query.where(Programme.open.is_(True))
    return list((await db.execute(query)).scalars())


async def progress(db: AsyncSession, programme: Programme, user_id: int) -> dict[str, int]:
    """What the entry criteria count for this neighbour, in the programme's scope."""
    orders = (select(func.count(Order.id)).where(Order.user_id == user_id,
                                                 Order.status.in_(FULFILLED)))
    if programme.community_id is not None:
        orders = orders.where(Order.community_id == programme.community_id)
    else:
        orders = orders.join(LiveSession, LiveSession.id == Order.session_id).where(
            LiveSession.host_id == programme.host_id)
    reviews = (select(func.count(Review.id)).join(Product, Product.id == Review.product_id)
               .where(Review.user_id == user_id, Product.owner_id == programme.host_id))
    return {"orders": int((await db.execute(orders)).scalar_one()),
            "reviews": int((await db.execute(reviews)).scalar_one())}


async def apply(db: AsyncSession, actor: Principal, programme_id: int, note: str) -> Application:
    programme = await get_programme(db, programme_id)
    if not programme.open:
        raise Conflict("计划已停止招募 / The programme is not taking applications",
                       reason="programme_closed")
    if len(note) > 300:
        raise InvalidInput("最多 300 字 / At most 300 characters", field="note")
    done = await progress(db, programme, actor.user_id)
    if done["orders"] < programme.min_orders or done["reviews"] < programme.min_reviews:
        raise CriteriaNotMet(need={"orders": programme.min_orders,
                                   "reviews": programme.min_reviews}, have=done)
    existing = (await db.execute(select(Application).where(
        Application.programme_id == programme_id, Application.user_id == actor.user_id)
    )).scalar_one_or_none()
    if existing is not None:
        if existing.status in (AppStatus.APPLIED.value, AppStatus.SELECTED.value):
            return existing
        # A lapsed or refused neighbour may try again.
        existing.status = AppStatus.APPLIED.value
        existing.note = note
        existing.applied_at = utcnow()
        existing.selected_at = None
        await db.flush()
        return existing
    application = Application(programme_id=programme_id, user_id=actor.user_id, note=note)
    db.add(application)
    try:
        await db.flush()
    except IntegrityError:
        raise Conflict("已申请 / Already applied", reason="already_applied") from None
    return application


async def _application(db: AsyncSession, actor: Principal, application_id: int
                       ) -> tuple[Application, Programme]:
    application = await db.get(Application, application_id)
    if application is None:
        raise NotFound("申请不存在 / No such application", application_id=application_id)
    programme = await get_programme(db, application.programme_id)
    _own(programme, actor)
    return application, programme


async def select_member(db: AsyncSession, actor: Principal, application_id: int) -> Application:
    """Take a quota seat and select the applicant, both or neither."""
    application, programme = await _application(db, actor, application_id)
    seat = await db.execute(
        update(Programme).where(Programme.id == programme.id, Programme.selected < Programme.quota)
        .values(selected=Programme.selected + 1).execution_options(synchronize_session=False))
    if seat.rowcount != 1:  # type: ignore[attr-defined]
        raise QuotaFull(quota=programme.quota)
    moved = await db.execute(
        update(Application).where(Application.id == application_id,
                                  Application.status == AppStatus.APPLIED.value)
        .values(status=AppStatus.SELECTED.value, selected_at=utcnow(), last_post_at=None)
        .execution_options(synchronize_session=False))
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        # Raising rolls the seat back with the transaction.
        raise Conflict("申请不在待选状态 / The application is not waiting",
                       reason="not_applied")
    await db.refresh(application)
    return application


async def reject(db: AsyncSession, actor: Principal, application_id: int) -> Application:
    application, _programme = await _application(db, actor, application_id)
    moved = await db.execute(
        update(Application).where(Application.id == application_id,
                                  Application.status == AppStatus.APPLIED.value)
        .values(status=AppStatus.REJECTED.value).execution_options(synchronize_session=False))
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("申请不在待选状态 / The application is not waiting", reason="not_applied")
    await db.refresh(application)
    return application


async def lapse_members(db: AsyncSession, programme_id: int | None = None) -> int:
    """Mark members past the exit rule lapsed and give their seats back; how many lapsed."""
    query = (select(Application, Programme).join(Programme, Programme.id == Application.programme_id)
             .where(Application.status == AppStatus.SELECTED.value))
    if programme_id is not None:
        query = query.where(Programme.id == programme_id)
    now = utcnow()
    lapsed = 0
    for application, programme in list(await db.execute(query)):
        if is_active(application, programme, now):
            continue
        moved = await db.execute(
            update(Application).where(Application.id == application.id,
                                      Application.status == AppStatus.SELECTED.value)
            .values(status=AppStatus.LAPSED.value).execution_options(synchronize_session=False))
        if moved.rowcount == 1:  # type: ignore[attr-defined]
            await db.execute(update(Programme).where(Programme.id == programme.id,
                                                     Programme.selected > 0)
                             .values(selected=Programme.selected - 1)
                             .execution_options(synchronize_session=False))
            lapsed += 1
    return lapsed


async def applications(db: AsyncSession, actor: Principal, programme_id: int) -> list[dict[str, Any]]:
    programme = await get_programme(db, programme_id)
    _own(programme, actor)
    await lapse_members(db, programme_id)
    rows = await db.execute(
        select(Application, User.display_name, User.username).join(User, User.id == Application.user_id)
        .where(Application.programme_id == programme_id).order_by(Application.id))
    items = []
    for application, display, username in rows:
        items.append({**application.public_dict(), "name": display or username,
                      "progress": await progress(db, programme, application.user_id)})
    return items


async def mine(db: AsyncSession, user_id: int) -> list[dict[str, Any]]:
    rows = await db.execute(select(Application, Programme)
                            .join(Programme, Programme.id == Application.programme_id)
                            .where(Application.user_id == user_id).order_by(Application.id))
    now = utcnow()
    return [{**a.public_dict(), "programme": p.public_dict(),
             "active": is_active(a, p, now)} for a, p in rows]


async def public_name(db: AsyncSession, user_id: int) -> str:
    user = await db.get(User, user_id)
    if user is None or user.disabled:
        raise NotFound("用户不存在 / No such neighbour")
    return mask_name(user.display_name or user.username)
