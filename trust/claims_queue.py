"""What the claims queue page shows of each claim: who, what, which batch, its photos, and
whether the refund and the compensation actually left (read from the money-out ledger)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from commerce.accounts import User
from commerce.catalog import Batch, Product
from commerce.orders import Order
from commerce.refunds import Refund, RefundStatus, compensation_key, refund_key
from trust.claims import Claim, ClaimPolicy
from trust.uploads import Upload


def _state(row: Refund | None) -> str | None:
    """`paid` once the provider confirmed, `pending` while it is owed, `awaiting_payee` (待领取)
    while it waits for the buyer to link an account, None when nothing is owed."""
    if row is None:
        return None
    if row.status == RefundStatus.AWAITING_PAYEE.value:
        return "awaiting_payee"
    return "paid" if row.status == RefundStatus.DONE.value else "pending"


async def money_status(db: AsyncSession, claims: list[Claim]) -> dict[int, dict[str, str | None]]:
    """Per claim: the ledger state of its refund and of its compensation transfer."""
    keys = {c.id: (refund_key("order", c.order_id, "claim"), compensation_key(c.id)) for c in claims}
    wanted = [k for pair in keys.values() for k in pair]
    rows: dict[str, Refund] = {}
    if wanted:
        rows = {r.key: r for r in (await db.execute(
            select(Refund).where(Refund.key.in_(wanted)))).scalars()}
    return {cid: {"refund_status": _state(rows.get(rk)), "compensation_status": _state(rows.get(ck)),
                  # Why a compensation waits (no_wechat_account, no_alipay_account), and which
                  # provider pays it (the one that took the order's money).
                  "compensation_waiting_reason": (rows[ck].waiting_reason or None) if ck in rows
                  else None,
                  "compensation_provider": (rows[ck].provider or None) if ck in rows else None}
            for cid, (rk, ck) in keys.items()}


async def with_money(db: AsyncSession, claim: Claim) -> dict[str, Any]:
    """One claim as the API shows it, with its ledger state."""
    return {**claim.public_dict(), **(await money_status(db, [claim]))[claim.id]}


async def queue_view(db: AsyncSession, claims: list[Claim]) -> list[dict[str, Any]]:
    """The queue rows: the claim, its ledger state, and the names and links a person needs."""
    if not claims:
        return []
    money = await money_status(db, claims)
    products = {p.id: p for p in (await db.execute(select(Product).where(
        Product.id.in_({c.product_id for c in claims})))).scalars()}
    batch_ids = {c.batch_id for c in claims if c.batch_id is not None}
    batches = {b.id: b for b in (await db.execute(select(Batch).where(
        Batch.id.in_(batch_ids))))
        .scalars()} if batch_ids else {}
    buyers = {u.id: u for u in (await db.execute(select(User).where(
        User.id.in_({c.buyer_id for c in claims})))).scalars()}
    orders = {o.id: o for o in (await db.execute(select(Order).where(
        Order.id.in_({c.order_id for c in claims})))).scalars()}
    policies = {p.product_id: p for p in (await db.execute(select(ClaimPolicy).where(
        ClaimPolicy.product_id.in_({c.product_id for c in claims})))).scalars()}
    photo_ids = [pid for c in claims for pid in (c.photos or [])]
    names = {u.id: u.name for u in (await db.execute(select(Upload).where(
        Upload.id.in_(photo_ids)))).scalars()} if photo_ids else {}
    out = []
    for claim in claims:
        product, order = products.get(claim.product_id), orders.get(claim.order_id)
        batch = batches.get(claim.batch_id) if claim.batch_id is not None else None
        buyer, policy = buyers.get(claim.buyer_id), policies.get(claim.product_id)
        out.append({
            **claim.public_dict(), **money[claim.id],
            "product_name": product.name if product is not None else "",
            "buyer_name": (buyer.display_name or buyer.username) if buyer is not None else "",
            "order_amount_fen": order.amount_fen if order is not None else 0,
            "unit_price_fen": order.unit_price_fen if order is not None else 0,
            "multiplier": policy.multiplier if policy is not None else 1,
            "batch_code": batch.code if batch is not None else None,
            "trace_url": f"/trace/{batch.code}" if batch is not None else None,
            "replay_url": f"/replays/{claim.session_id}",
            "photo_urls": [f"/api/uploads/{names[p]}" for p in (claim.photos or []) if p in names],
        })
    return out
