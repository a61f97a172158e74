"""What the orders page shows under one order: its evidence, and what the buyer may still do
(claim, review, answer the survey)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from commerce.catalog import Batch
from commerce.orders import Order
from trust.claims import Claim, get_policy
from trust.evidence import FULFILLED, evidence_for, picked_up_at
from trust.nps import NpsResponse
from trust.reviews import Review
from trust.trace_signing import iso


async def after_sales_view(db: AsyncSession, order: Order) -> dict[str, Any]:
    """What the orders page shows under one order: its evidence and what the buyer may do next."""
    evidence = await evidence_for(db, order)
    batch = await db.get(Batch, evidence.batch_id) if evidence.batch_id is not None else None
    claim = (await db.execute(select(Claim).where(Claim.order_id == order.id))).scalar_one_or_none()
    review = (await db.execute(select(Review.id).where(Review.order_id == order.id))).first()
    answered = (await db.execute(
        select(NpsResponse.id).where(NpsResponse.order_id == order.id))).first()
    policy = await get_policy(db, evidence.product_id)
    fulfilled = order.status in FULFILLED
    return {
        "order_id": order.id, "status": order.status, "refunded_fen": order.refunded_fen,
        "evidence": evidence.public_dict(),
        "batch": batch.public_dict() if batch is not None else None,
        "trace_url": f"/trace/{batch.code}" if batch is not None else None,
        "claim": claim.public_dict() if claim is not None else None,
        "claim_policy": policy.public_dict() if policy is not None else None,
        "can_claim": fulfilled and claim is None,
        "can_review": fulfilled and review is None,
        "reviewed": review is not None,
        "nps_pending": fulfilled and answered is None,
        "picked_up_at": iso(await picked_up_at(db, order.id)),
    }
