"""The dashboard's referral figures, from stored rows.

- *new buyer* of a month: a user whose first order (every order row was paid) was paid in that
  month, in the shop's zone (Asia/Shanghai);
- *referred* new buyer: one whose first order is attributed to a referrer
  (referral_attributions); referral_share = referred / new buyers (None when there are none);
- commission by status: Σ (amount − reversed) of the rows pending and due, Σ paid_fen of the
  rows paid, Σ reversed_fen of every row (what refunds took back).

A host sees the new buyers whose first order was in one of his sessions, and the commissions
on his sessions' orders; `since` keeps first orders (and commissions) from then on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from commerce.base import as_utc
from commerce.commissions import Commission, CommissionStatus
from commerce.live_sessions import LiveSession
from commerce.orders import Order
from commerce.referrals import ReferralAttribution

SHOP_TZ = ZoneInfo("Asia/Shanghai")
STATUSES = tuple(s.value for s in CommissionStatus)


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


async def figures(db: AsyncSession, since: datetime | None = None,
                  host_id: int | None = None) -> dict[str, Any]:
    first = (select(Order.user_id, func.min(Order.id).label("first_id"))
             .group_by(Order.user_id).subquery())
    query = (select(Order.paid_at, ReferralAttribution.id)
             .join(first, first.c.first_id == Order.id)
             .outerjoin(ReferralAttribution, ReferralAttribution.order_id == Order.id))
    if since is not None:
        query = query.where(Order.paid_at >= since)
    if host_id is not None:
        query = query.where(Order.session_id.in_(
            select(LiveSession.id).where(LiveSession.host_id == host_id)))
    months: dict[str, list[int]] = {}
    for paid_at, attributed in (await db.execute(query)).all():
        month = as_utc(paid_at).astimezone(SHOP_TZ).strftime("%Y-%m")
        counts = months.setdefault(month, [0, 0])
        counts[0] += 1
        counts[1] += attributed is not None
    share: list[dict[str, Any]] = [
        {"month": m, "new_buyers": c[0], "referred_buyers": c[1], "referral_share": _ratio(c[1], c[0])}
        for m, c in sorted(months.items())]
    new = sum(c[0] for c in months.values())
    referred = sum(c[1] for c in months.values())

    money = (select(Commission.status, func.count(Commission.id),
                    func.coalesce(func.sum(Commission.amount_fen - Commission.reversed_fen), 0),
                    func.coalesce(func.sum(Commission.paid_fen), 0),
                    func.coalesce(func.sum(Commission.reversed_fen), 0))
             .group_by(Commission.status))
    if since is not None:
        money = money.where(Commission.created_at >= since)
    if host_id is not None:
        money = money.where(Commission.host_id == host_id)
    rows_of = dict.fromkeys(STATUSES, 0)
    amount_of = dict.fromkeys(STATUSES, 0)
    for status, rows, net, paid, reversed_ in (await db.execute(money)).all():
        rows_of[status] += int(rows)
        amount_of[CommissionStatus.REVERSED.value] += int(reversed_)
        if status == CommissionStatus.PAID.value:
            amount_of[status] += int(paid)
        elif status != CommissionStatus.REVERSED.value:
            amount_of[status] += int(net)
    return {"referral_share": share,
            "commission": [{"status": s, "rows": rows_of[s], "amount_fen": amount_of[s]}
                           for s in STATUSES],
            "totals": {"new_buyers": new, "referred_buyers": referred,
                       "referral_share": _ratio(referred, new),
                       **{f"commission_{s}_fen": amount_of[s] for s in STATUSES}}}
