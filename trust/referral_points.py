"""Trust points for a referral that buys: the referrer earns them once, when the neighbour she
brought picks up her first order (commerce/referrals.py runs the hook inside the transaction that
records the pickup). Awarded against the referred order, so a claim refund of that order takes
them back like any other fact earned on it (trust/points.py)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from commerce.referrals import ReferralAttribution
from trust import points

REFERRAL_POINTS = 30


async def award_referral(db: AsyncSession, attribution: ReferralAttribution) -> None:
    await points.award(db, attribution.referrer_id, f"referral:{attribution.order_id}",
                       REFERRAL_POINTS, "推荐的邻居下单并提货 / a neighbour you referred picked up",
                       order_id=attribution.order_id)
