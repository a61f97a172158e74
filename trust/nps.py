"""NPS: one question after pickup ("0–10, would you recommend us to a neighbour?"), one per order.

NPS of a set of answers = 100 × (promoters − detractors) / answers, promoters 9–10, detractors
0–6; None when there are no answers. The answer row keeps the order's session, batch, farm and
community so scores per session, farm and community are plain GROUP BYs.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.accounts import Principal
from commerce.base import Base, as_utc, utcnow
from commerce.catalog import Batch
from commerce.errors import Conflict, InvalidInput
from commerce.live_sessions import LiveSession
from commerce.orders import Order
from trust.evidence import FULFILLED, fulfilled_order

MAX_COMMENT = 500


class NpsResponse(Base):
    __tablename__ = "nps_responses"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    score: Mapped[int] = mapped_column()
    comment: Mapped[str] = mapped_column(String(MAX_COMMENT), default="")
    session_id: Mapped[int] = mapped_column(ForeignKey("live_sessions.id"), index=True)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"), nullable=True)
    farm: Mapped[str] = mapped_column(String(120), default="", index=True)
    community_id: Mapped[int | None] = mapped_column(nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def nps(scores: list[int]) -> float | None:
    if not scores:
        return None
    promoters = sum(1 for s in scores if s >= 9)
    detractors = sum(1 for s in scores if s <= 6)
    return round(100 * (promoters - detractors) / len(scores), 1)


async def farm_of(db: AsyncSession, session_id: int, batch_id: int | None) -> str:
    """The farm an order came from: its batch's farm, else the live session's farm."""
    if batch_id is not None:
        batch = await db.get(Batch, batch_id)
        if batch is not None and batch.farm:
            return batch.farm
    session = await db.get(LiveSession, session_id)
    return session.farm if session is not None else ""


async def answer(
    db: AsyncSession, actor: Principal, order_id: int, score: int, comment: str = ""
) -> NpsResponse:
    if not 0 <= score <= 10:
        raise InvalidInput("分数须为 0–10 / score must be 0–10", field="score")
    if len(comment) > MAX_COMMENT:
        raise InvalidInput(f"最多 {MAX_COMMENT} 字 / At most {MAX_COMMENT} characters",
                           field="comment")
    facts = await fulfilled_order(db, order_id, actor)
    if (await db.execute(select(NpsResponse.id).where(NpsResponse.order_id == order_id))).first():
        raise Conflict("已回答过该订单的问卷 / Survey already answered", reason="already_answered")
    ev = facts.evidence
    response = NpsResponse(
        order_id=order_id, user_id=actor.user_id, score=score, comment=comment.strip(),
        session_id=ev.session_id, batch_id=ev.batch_id,
        farm=await farm_of(db, ev.session_id, ev.batch_id), community_id=facts.order.community_id,
    )
    db.add(response)
    try:
        await db.flush()
    except IntegrityError:
        raise Conflict("已回答过该订单的问卷 / Survey already answered",
                       reason="already_answered") from None
    return response


async def pending_surveys(db: AsyncSession, actor: Principal) -> list[int]:
    """The actor's picked-up orders not yet answered: what the orders page asks about."""
    answered = select(NpsResponse.order_id).where(NpsResponse.user_id == actor.user_id)
    rows = await db.execute(
        select(Order.id).where(Order.user_id == actor.user_id, Order.status.in_(FULFILLED),
                               Order.id.not_in(answered)).order_by(Order.id.desc()).limit(50)
    )
    return [int(r[0]) for r in rows]


REPORT_ROWS = 20_000  # answers a report reads at most (newest first)
TREND_WEEKS = 12


async def report(
    db: AsyncSession, *, host_id: int | None, session_id: int | None = None,
    batch_id: int | None = None, limit: int = 20, before_id: int | None = None,
) -> dict[str, Any]:
    """The shop's NPS: score, the 0–10 distribution, the score per ISO week (last
    TREND_WEEKS weeks that have answers) and one page of answers, newest first.

    With `host_id`, only answers about that host's sessions (what a host may see)."""
    where: list[Any] = []
    if host_id is not None:
        where.append(NpsResponse.session_id.in_(
            select(LiveSession.id).where(LiveSession.host_id == host_id)))
    if session_id is not None:
        where.append(NpsResponse.session_id == session_id)
    if batch_id is not None:
        where.append(NpsResponse.batch_id == batch_id)
    rows = list(await db.execute(
        select(NpsResponse.score, NpsResponse.created_at).where(*where)
        .order_by(NpsResponse.id.desc()).limit(REPORT_ROWS)))
    scores = [int(score) for score, _at in rows]
    weeks: dict[str, list[int]] = defaultdict(list)
    for score, at in rows:
        year, week, _day = as_utc(at).isocalendar()
        weeks[f"{year}-W{week:02d}"].append(int(score))
    trend = [{"week": week, "score": nps(weeks[week]), "count": len(weeks[week])}
             for week in sorted(weeks)[-TREND_WEEKS:]]
    page_query = select(NpsResponse).where(*where)
    if before_id is not None:
        page_query = page_query.where(NpsResponse.id < before_id)
    page = list((await db.execute(page_query.order_by(NpsResponse.id.desc()).limit(limit))).scalars())
    items = [{"id": r.id, "order_id": r.order_id, "score": r.score, "comment": r.comment,
              "session_id": r.session_id, "batch_id": r.batch_id,
              "created_at": as_utc(r.created_at).isoformat()} for r in page]
    after = items[-1]["id"] if len(items) == limit else None
    return {
        "score": nps(scores), "count": len(scores),
        "promoters": sum(1 for s in scores if s >= 9),
        "passives": sum(1 for s in scores if 7 <= s <= 8),
        "detractors": sum(1 for s in scores if s <= 6),
        "distribution": {str(s): scores.count(s) for s in range(11)},
        "trend": trend, "items": items, "next": str(after) if after is not None else None,
    }
