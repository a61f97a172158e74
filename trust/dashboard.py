"""The trust dashboard: the seeds' metrics per live session, farm or community.

Every figure is computed from stored rows in one pass (`Facts`), so it is reproducible by hand.
Terms used below:
- *paid order*: an order whose payment went through: status paid, ready_for_pickup, picked_up,
  delivered, completed or refunded (commerce/orders.py; held/expired/cancelled never paid);
- *buyer*: a distinct user with ≥ 1 paid order in the group;
- an order's *farm*: its batch's farm (order_evidence, else the product's batch), else the live
  session's farm; its *community*: orders.community_id (None = bought without a community);
- *viewers* / *interacting viewers* of a session: distinct viewers and distinct viewers who
  commented/asked/liked (commerce/audience.py, written by realtime). Anonymous viewers have no
  community, so the two audience-based rates are None in the community view.

Metrics (each a ratio in [0, 1] unless said otherwise; None when the denominator is 0):
- live_interaction_rate = Σ interacting viewers / Σ viewers over the group's sessions
- conversion_rate = Σ over sessions of (buyers of that session) / Σ viewers of those sessions
- group_buy_success_rate = group-buys decided "succeeded" / group-buys decided (succeeded +
  failed); open ones are not counted. A group-buy's group: its sale's session, the sale's
  product's farm, its community.
- repeat_purchase_rate = repeat buyers / buyers. Farm and community views: a repeat buyer has
  paid orders in ≥ 2 distinct sessions within the group. Session view: a buyer of the session
  who also has a paid order from an earlier session (paid before their first order here).
- on_time_pickup_rate = orders picked up within PICKUP_WINDOW of becoming ready_for_pickup /
  orders that became ready and were either picked up or have passed the window.
- claim_rate = after-sales claims filed on the group's orders / the group's fulfilled orders
  (picked_up, delivered or completed at the time of computing, plus orders with a claim).
- refund_rate = paid orders with any refund (refunded_fen > 0 or status refunded) / paid orders.
- nps = 100 × (promoters 9–10 − detractors 0–6) / answers of the group's orders, in [−100, 100].
- trace_lookup_rate = buyers who, signed in, looked up the trace of a batch they bought in the
  group / buyers with ≥ 1 batch-linked order in the group. `trace_lookups` (all look-ups of the
  group's batches, anonymous scans included) is reported next to it as a count.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from commerce import audience
from commerce.accounts import Community
from commerce.base import as_utc, utcnow
from commerce.catalog import Batch, Product
from commerce.flash_sale.sales import Sale
from commerce.group_buys import GroupBuy, GroupStatus
from commerce.live_sessions import LiveSession
from commerce.orders import Order, OrderStatus, OrderTransition
from trust.claims import Claim
from trust.evidence import FULFILLED, OrderEvidence
from trust.nps import NpsResponse, nps
from trust.trace import TraceLookupDaily, TraceLookupUser

Scope = Literal["session", "farm", "community"]
SCOPES: tuple[Scope, ...] = ("session", "farm", "community")
PICKUP_WINDOW = timedelta(hours=48)
PAID_EVER = (OrderStatus.PAID.value, OrderStatus.READY.value, OrderStatus.PICKED_UP.value,
             OrderStatus.DELIVERED.value, OrderStatus.COMPLETED.value, OrderStatus.REFUNDED.value)
METRICS = ("live_interaction_rate", "conversion_rate", "group_buy_success_rate",
           "repeat_purchase_rate", "on_time_pickup_rate", "claim_rate", "refund_rate", "nps",
           "trace_lookup_rate")
COUNTS = ("sessions", "viewers", "interacting", "buyers", "orders", "group_buys_succeeded",
          "group_buys_decided", "pickups_on_time", "pickups_due", "claims", "fulfilled",
          "refunded_orders", "nps_answers", "trace_lookup_buyers", "batch_buyers", "trace_lookups")


@dataclass
class OrderRow:
    id: int
    user_id: int
    session_id: int
    community_id: int | None
    status: str
    paid_at: datetime
    refunded: bool
    batch_id: int | None
    farm: str


@dataclass
class Group:
    key: str
    label: str
    orders: list[OrderRow] = field(default_factory=list)
    sessions: set[int] = field(default_factory=set)
    group_buys: list[str] = field(default_factory=list)


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


async def _load_orders(db: AsyncSession, since: datetime | None, host_id: int | None) -> list[OrderRow]:
    query = (
        select(Order, Sale.product_id, OrderEvidence.batch_id, Product.batch_id, LiveSession.farm)
        .join(Sale, Sale.id == Order.sale_id)
        .join(LiveSession, LiveSession.id == Order.session_id)
        .outerjoin(Product, Product.id == Sale.product_id)
        .outerjoin(OrderEvidence, OrderEvidence.order_id == Order.id)
        .where(Order.status.in_(PAID_EVER))
    )
    if since is not None:
        query = query.where(Order.paid_at >= since)
    if host_id is not None:
        query = query.where(LiveSession.host_id == host_id)
    batch_farms = {b.id: b.farm for b in (await db.execute(select(Batch))).scalars()}
    rows: list[OrderRow] = []
    for order, _product_id, evidence_batch, product_batch, session_farm in await db.execute(query):
        batch_id = evidence_batch if evidence_batch is not None else product_batch
        farm = batch_farms.get(batch_id, "") if batch_id is not None else ""
        rows.append(OrderRow(
            id=order.id, user_id=order.user_id, session_id=order.session_id,
            community_id=order.community_id, status=order.status, paid_at=as_utc(order.paid_at),
            refunded=order.refunded_fen > 0 or order.status == OrderStatus.REFUNDED.value,
            batch_id=batch_id, farm=farm or session_farm or "",
        ))
    return rows


def _key(scope: Scope, row: OrderRow) -> str:
    if scope == "session":
        return str(row.session_id)
    if scope == "farm":
        return row.farm
    return str(row.community_id) if row.community_id is not None else ""


async def compute(
    db: AsyncSession, redis: Redis, scope: Scope, since: datetime | None = None,
    now: datetime | None = None, host_id: int | None = None,
) -> list[dict[str, Any]]:
    """One row per session / farm / community with every metric and the counts behind it.

    `host_id` limits everything to that host's sessions (a host sees only their own figures).
    """
    now = now or utcnow()
    orders = await _load_orders(db, since, host_id)
    session_query = select(LiveSession)
    if host_id is not None:
        session_query = session_query.where(LiveSession.host_id == host_id)
    sessions = {s.id: s for s in (await db.execute(session_query)).scalars()}
    communities = {c.id: c.name for c in (await db.execute(select(Community))).scalars()}
    groups: dict[str, Group] = {}

    def group(key: str) -> Group:
        if key not in groups:
            if scope == "session":
                label = sessions[int(key)].title if int(key) in sessions else key
            elif scope == "farm":
                label = key or "(未知农场 / unknown farm)"
            else:
                label = communities.get(int(key), key) if key else "(无小区 / no community)"
            groups[key] = Group(key, label)
        return groups[key]

    for row in orders:
        g = group(_key(scope, row))
        g.orders.append(row)
        g.sessions.add(row.session_id)
    if scope == "session":
        for sid in sessions:
            group(str(sid)).sessions.add(sid)

    # Group-buys: decided outcomes, attributed through their sale.
    gb_rows = await db.execute(
        select(GroupBuy.status, GroupBuy.community_id, Sale.session_id, Product.batch_id)
        .join(Sale, Sale.id == GroupBuy.sale_id).outerjoin(Product, Product.id == Sale.product_id)
        .where(GroupBuy.status.in_([GroupStatus.SUCCEEDED.value, GroupStatus.FAILED.value]))
    )
    batch_farms = {b.id: b.farm for b in (await db.execute(select(Batch))).scalars()}
    for status, community_id, session_id, batch_id in gb_rows:
        if session_id not in sessions:
            continue
        if scope == "session":
            key = str(session_id)
        elif scope == "farm":
            farm = batch_farms.get(batch_id, "") if batch_id is not None else ""
            key = farm or (sessions[session_id].farm if session_id in sessions else "")
        else:
            key = str(community_id)
        group(key).group_buys.append(status)

    audience_counts = await audience.counts(db, redis, sorted(sessions)) if scope != "community" else {}
    order_ids = [o.id for o in orders]
    ready_at, picked_at = await _pickup_times(db, order_ids)
    claimed = {oid for (oid,) in await db.execute(select(Claim.order_id))}
    scores = {oid: score for oid, score in await db.execute(
        select(NpsResponse.order_id, NpsResponse.score))}
    looked = {(b, u) for b, u in await db.execute(
        select(TraceLookupUser.batch_id, TraceLookupUser.user_id))}
    lookups_by_batch: dict[int, int] = defaultdict(int)
    for batch_id, count in await db.execute(select(TraceLookupDaily.batch_id, TraceLookupDaily.count)):
        lookups_by_batch[batch_id] += count
    first_paid: dict[tuple[int, int], datetime] = {}
    for o in orders:
        k = (o.user_id, o.session_id)
        first_paid[k] = min(first_paid.get(k, o.paid_at), o.paid_at)

    result = []
    for g in sorted(groups.values(), key=lambda g: g.key):
        c: dict[str, int] = dict.fromkeys(COUNTS, 0)
        c["sessions"] = len(g.sessions)
        c["orders"] = len(g.orders)
        buyers = {o.user_id for o in g.orders}
        c["buyers"] = len(buyers)
        if scope != "community":
            for sid in g.sessions:
                v, i = audience_counts.get(sid, (0, 0))
                c["viewers"] += v
                c["interacting"] += i
        session_buyers = sum(len({o.user_id for o in g.orders if o.session_id == sid})
                             for sid in g.sessions)
        c["group_buys_decided"] = len(g.group_buys)
        c["group_buys_succeeded"] = sum(1 for s in g.group_buys if s == GroupStatus.SUCCEEDED.value)
        if scope == "session":
            sid = int(g.key)
            repeat = sum(1 for b in buyers if any(
                s != sid and t < first_paid[(b, sid)] for (u, s), t in first_paid.items() if u == b))
        else:
            repeat = sum(1 for b in buyers if len({o.session_id for o in g.orders if o.user_id == b}) >= 2)
        for o in g.orders:
            if o.id in ready_at:
                picked = picked_at.get(o.id)
                if picked is not None and picked - ready_at[o.id] <= PICKUP_WINDOW:
                    c["pickups_on_time"] += 1
                    c["pickups_due"] += 1
                elif picked is not None or now - ready_at[o.id] > PICKUP_WINDOW:
                    c["pickups_due"] += 1
            if o.status in FULFILLED or o.id in claimed:
                c["fulfilled"] += 1
            c["claims"] += o.id in claimed
            c["refunded_orders"] += o.refunded
        answers = [scores[o.id] for o in g.orders if o.id in scores]
        c["nps_answers"] = len(answers)
        batch_buyers = {o.user_id for o in g.orders if o.batch_id is not None}
        c["batch_buyers"] = len(batch_buyers)
        c["trace_lookup_buyers"] = len({o.user_id for o in g.orders
                                        if o.batch_id is not None and (o.batch_id, o.user_id) in looked})
        c["trace_lookups"] = sum(lookups_by_batch.get(b, 0)
                                 for b in {o.batch_id for o in g.orders if o.batch_id is not None})
        audience_known = scope != "community"
        metrics: dict[str, float | None] = {
            "live_interaction_rate": _ratio(c["interacting"], c["viewers"]) if audience_known else None,
            "conversion_rate": _ratio(session_buyers, c["viewers"]) if audience_known else None,
            "group_buy_success_rate": _ratio(c["group_buys_succeeded"], c["group_buys_decided"]),
            "repeat_purchase_rate": _ratio(repeat, c["buyers"]),
            "on_time_pickup_rate": _ratio(c["pickups_on_time"], c["pickups_due"]),
            "claim_rate": _ratio(c["claims"], c["fulfilled"]),
            "refund_rate": _ratio(c["refunded_orders"], c["orders"]),
            "nps": nps(answers),
            "trace_lookup_rate": _ratio(c["trace_lookup_buyers"], c["batch_buyers"]),
        }
        c["repeat_buyers"] = repeat
        c["session_buyers"] = session_buyers
        result.append({"key": g.key, "label": g.label, **metrics, "counts": c})
    return result


async def _pickup_times(
    db: AsyncSession, order_ids: list[int]
) -> tuple[dict[int, datetime], dict[int, datetime]]:
    """First time each order became ready_for_pickup, and first time it was picked up."""
    ready: dict[int, datetime] = {}
    picked: dict[int, datetime] = {}
    if not order_ids:
        return ready, picked
    rows = await db.execute(
        select(OrderTransition.order_id, OrderTransition.to_status, OrderTransition.at)
        .where(OrderTransition.to_status.in_([OrderStatus.READY.value, OrderStatus.PICKED_UP.value]))
        .order_by(OrderTransition.at)
    )
    wanted = set(order_ids)
    for order_id, to_status, at in rows:
        if order_id not in wanted:
            continue
        target = ready if to_status == OrderStatus.READY.value else picked
        target.setdefault(order_id, as_utc(at))
    return ready, picked


# A spreadsheet runs a cell starting with one of these as a formula, or (TAB, CR, LF) trims it
# and then does ("CSV injection", OWASP): =HYPERLINK(...) in a farm name would run on the
# staff's machine. The full-width forms are there for CJK input methods' spreadsheets.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")


def spreadsheet_safe(cell: str) -> str:
    """The cell, or with a leading `'` when a spreadsheet would read it as a formula.

    Numbers (a negative NPS) stay numbers; leading spaces do not hide a formula start.
    """
    if _NUMBER.fullmatch(cell):
        return cell
    if cell.startswith(FORMULA_STARTS) or cell.lstrip(" ").startswith(FORMULA_STARTS):
        return "'" + cell
    return cell


def csv_rows(scope: Scope, rows: list[dict[str, Any]]) -> list[list[str]]:
    """Header + one line per group: metrics first, then the counts behind them; every cell
    passed through `spreadsheet_safe` (keys and labels are people's text)."""
    count_names = [*COUNTS, "repeat_buyers", "session_buyers"]
    out = [[scope, "label", *METRICS, *count_names]]
    for row in rows:
        out.append([
            str(row["key"]), str(row["label"]),
            *("" if row[m] is None else str(row[m]) for m in METRICS),
            *(str(row["counts"].get(n, 0)) for n in count_names),
        ])
    return [[spreadsheet_safe(cell) for cell in line] for line in out]
