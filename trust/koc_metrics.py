"""The dashboard's 品鉴官 and 晒单 figures, computed from stored rows.

- ugc_rate (晒单率) = 晒单 written from picked-up orders (pending or approved; hidden ones do
  not count) / picked-up orders (picked_up, delivered or completed; samples are in neither);
- per batch: approved 晒单 (from orders and from samples), the batch's picked-up orders, its
  samples sent, and its ugc_rate as above;
- koc_members: members of the programmes in view whose membership is live (exit rule applied);
  koc_active: those of them with a 晒单 written in the last ACTIVE_DAYS days;
  koc_activity_rate = koc_active / koc_members;
- point_liabilities: trust points neighbours hold and could still spend (unexpired lots' remainders
  less debts, `trust.points.liabilities`). Points are the platform's, so this is one figure for
  every viewer of the dashboard.

A host sees his own batches and programmes; platform staff see all. `since` limits orders to
those paid, and 晒单 to those written, since then.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from commerce.base import as_utc, utcnow
from commerce.catalog import Batch
from commerce.orders import Order
from trust import points
from trust.evidence import FULFILLED, OrderEvidence
from trust.programmes import Application, AppStatus, Programme, is_active
from trust.samples import Sample
from trust.ugc import Post, PostStatus

ACTIVE_DAYS = 30
MAX_BATCHES = 200


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


async def figures(db: AsyncSession, host_id: int | None = None,
                  since: datetime | None = None) -> dict[str, Any]:
    now = utcnow()
    batches = select(Batch.id, Batch.code, Batch.farm)
    if host_id is not None:
        batches = batches.where(Batch.owner_id == host_id)
    names = {int(i): (str(code), str(farm or "")) for i, code, farm in await db.execute(batches)}

    picked = (select(OrderEvidence.batch_id, Order.id)
              .join(Order, Order.id == OrderEvidence.order_id)
              .where(Order.status.in_(FULFILLED)))
    if since is not None:
        picked = picked.where(Order.paid_at >= since)
    picked_by_batch: dict[int, set[int]] = defaultdict(set)
    for batch_id, order_id in await db.execute(picked):
        if batch_id is not None and int(batch_id) in names:
            picked_by_batch[int(batch_id)].add(int(order_id))
    picked_orders = set().union(*picked_by_batch.values()) if picked_by_batch else set()

    posts = select(Post.batch_id, Post.order_id, Post.status, Post.user_id, Post.created_at)
    if since is not None:
        posts = posts.where(Post.created_at >= since)
    from_orders: dict[int, int] = defaultdict(int)
    approved: dict[int, int] = defaultdict(int)
    written_by: dict[int, datetime] = {}
    ugc_from_picked = 0
    for batch_id, post_order, status, user_id, created in await db.execute(posts):
        if int(batch_id) not in names:
            continue
        if status == PostStatus.APPROVED.value:
            approved[int(batch_id)] += 1
        if status != PostStatus.HIDDEN.value:
            written_by[int(user_id)] = max(as_utc(created), written_by.get(int(user_id), as_utc(created)))
            if post_order is not None and int(post_order) in picked_orders:
                from_orders[int(batch_id)] += 1
                ugc_from_picked += 1

    samples = dict((int(b), int(n)) for b, n in await db.execute(
        select(Sample.batch_id, func.count(Sample.id)).group_by(Sample.batch_id)))

    members = select(Application, Programme).join(Programme, Programme.id == Application.programme_id)\
        .where(Application.status == AppStatus.SELECTED.value)
    if host_id is not None:
        members = members.where(Programme.host_id == host_id)
    live = {a.user_id for a, p in await db.execute(members) if is_active(a, p, now)}
    recent = now - timedelta(days=ACTIVE_DAYS)
    active = {u for u in live if u in written_by and written_by[u] >= recent}

    by_batch: list[dict[str, Any]] = []
    for batch_id in sorted((set(picked_by_batch) | set(approved) | set(samples)) & set(names)):
        code, farm = names[batch_id]
        n_picked = len(picked_by_batch.get(batch_id, ()))
        by_batch.append({
            "key": code, "label": f"{code} · {farm}" if farm else code,
            "posts": approved.get(batch_id, 0), "picked_up": n_picked,
            "samples": samples.get(batch_id, 0),
            "ugc_rate": _ratio(from_orders.get(batch_id, 0), n_picked)})
    by_batch.sort(key=lambda r: (-int(r["posts"]), str(r["key"])))
    return {
        "headline": {
            "ugc_rate": _ratio(ugc_from_picked, len(picked_orders)),
            "ugc_from_picked_up": ugc_from_picked, "picked_up_orders": len(picked_orders),
            "ugc_approved": sum(approved.values()),
            "koc_members": len(live), "koc_active": len(active),
            "koc_activity_rate": _ratio(len(active), len(live)),
            "point_liabilities": await points.liabilities(db, now),
        },
        "ugc_by_batch": by_batch[:MAX_BATCHES],
    }


HEADLINE = ("ugc_rate", "ugc_from_picked_up", "picked_up_orders", "ugc_approved", "koc_members",
            "koc_active", "koc_activity_rate", "point_liabilities")


def csv_lines(data: dict[str, Any]) -> list[list[str]]:
    """The headline, then one line per batch (cells made spreadsheet-safe by the caller)."""
    head = data["headline"]
    out = [["figure", "value"], *([name, "" if head[name] is None else str(head[name])]
                                  for name in HEADLINE), []]
    out.append(["batch", "label", "posts", "picked_up", "samples", "ugc_rate"])
    for row in data["ugc_by_batch"]:
        out.append([row["key"], row["label"], str(row["posts"]), str(row["picked_up"]),
                    str(row["samples"]), "" if row["ugc_rate"] is None else str(row["ugc_rate"])])
    return out
