"""The trust dashboard: the shop's figures per live session, farm or community, and over time.

Every figure is computed from stored rows in one pass (`compute`), so it is reproducible by hand.
Terms used below:
- *paid order*: an order whose payment went through: status paid, ready_for_pickup, picked_up,
  delivered, completed or refunded (commerce/orders.py; held/expired/cancelled never paid);
- *buyer*: a distinct user with ≥ 1 paid order in the group;
- an order's *farm*: its batch's farm (order_evidence, else the product's batch), else the live
  session's farm; its *community*: orders.community_id (None = bought without a community);
- *viewers* / *interacting viewers* of a session: distinct people who joined the room / who
  commented, asked, upvoted or liked, each counted once per session (commerce/audience.py, fed
  by realtime/). Anonymous viewers have no community, so the audience rates are None in the
  community view;
- *month*: a calendar month in the shop's zone (SHOP_TZ, China Standard Time).

Per-group metrics (ratios in [0, 1] unless said otherwise; None when the denominator is 0):
- gmv_fen = Σ amount_fen of paid orders (gross: refunds are not deducted; see return_rate);
- average_order_value_fen = gmv_fen / paid orders, rounded to the nearest fen (halves up);
- live_interaction_rate = Σ interacting viewers / Σ viewers over the group's sessions;
- conversion_rate = Σ over sessions of (buyers of that session) / Σ viewers of those sessions;
- group_buy_success_rate = group-buys decided "succeeded" / group-buys decided (succeeded +
  failed); open ones are not counted. A group-buy's group: its sale's session, the sale's
  product's farm, its community;
- repeat_purchase_rate = repeat buyers / buyers. Farm, community and total views: a repeat buyer
  has paid orders in ≥ 2 distinct sessions within the group. Session view: a buyer of the
  session who also has a paid order from an earlier session (paid before their first order here);
- on_time_fulfilment_rate = orders made ready for pickup (or delivered) by the time their sale
  promised (`sales.pickup_by`) / orders whose promise is due: fulfilled ones, plus unfulfilled
  ones whose promise has passed (late until fulfilled). How long the buyer then takes to collect
  does not count; orders of a sale without a promise, and orders refunded or cancelled before
  they were fulfilled, are not in it;
- claim_rate = after-sales claims filed on the group's orders / the group's fulfilled orders
  (picked_up, delivered or completed at the time of computing, plus orders with a claim);
- return_rate = paid orders that got money back other than a group-buy price rebate (status
  refunded, or any refund whose key is not a rebate: staff refunds, failed group-buys, claims)
  / paid orders. A rebate lowers the price of goods the buyer keeps: it is not a return;
- nps = 100 × (promoters 9–10 − detractors 0–6) / answers of the group's orders, in [−100, 100];
- trace_lookup_rate = buyers who, signed in, looked up the trace of a batch they bought in the
  group / buyers with ≥ 1 batch-linked order in the group. `trace_lookups` (every counted look-up
  of the group's batches, through the trace page or its API, anonymous scans included, one per
  visitor per batch per day) is reported next to it as a count.

Figures over time and places:
- cohorts: buyers by the month of their first paid order; for each later month (offset 0–11)
  how many of them paid an order in that month;
- nps_trend: NPS of the answers given in each month (answers about the orders in view);
- group_buys_by_community: per community, group-buys succeeded / failed / still open, and the
  success rate of the decided ones;
- headline: every per-group metric over all orders in view at once (the "total" group);
- referral_share (new buyers per month and the share who came through a neighbour's link) and
  commission (money by status): defined in commerce/referral_metrics.py.

A host sees the figures of their own sessions only (`host_id`); platform staff see all.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from commerce import audience, referral_metrics
from commerce.accounts import Community
from commerce.base import as_utc, utcnow
from commerce.catalog import Batch, Product
from commerce.flash_sale.sales import Sale
from commerce.group_buys import GroupBuy, GroupStatus
from commerce.live_sessions import LiveSession
from commerce.orders import Order, OrderStatus, OrderTransition
from commerce.refunds import Refund, is_price_rebate
from trust.claims import Claim
from trust.evidence import FULFILLED, OrderEvidence
from trust.nps import NpsResponse, nps
from trust.trace import TraceLookupDaily, TraceLookupUser

Scope = Literal["session", "farm", "community"]
SCOPES: tuple[Scope, ...] = ("session", "farm", "community")
SHOP_TZ = ZoneInfo("Asia/Shanghai")
COHORT_MONTHS = 12
CHUNK = 500
PAID_EVER = (OrderStatus.PAID.value, OrderStatus.READY.value, OrderStatus.PICKED_UP.value,
             OrderStatus.DELIVERED.value, OrderStatus.COMPLETED.value, OrderStatus.REFUNDED.value)
FULFILMENT_STEPS = (OrderStatus.READY.value, OrderStatus.DELIVERED.value)
METRICS = ("gmv_fen", "average_order_value_fen", "live_interaction_rate", "conversion_rate",
           "group_buy_success_rate", "repeat_purchase_rate", "on_time_fulfilment_rate",
           "claim_rate", "return_rate", "nps", "trace_lookup_rate")
MONEY = frozenset(("gmv_fen", "average_order_value_fen"))
COUNTS = ("sessions", "viewers", "interacting", "comments", "questions", "likes", "buyers",
          "session_buyers", "repeat_buyers", "orders", "group_buys_succeeded",
          "group_buys_decided", "fulfilled_on_time", "fulfilment_due", "claims", "fulfilled",
          "returned_orders", "rebated_orders", "nps_answers", "trace_lookup_buyers",
          "batch_buyers", "trace_lookups")
# What each metric is the ratio of (numerator, denominator), for its CSV and for checking it.
BEHIND: dict[str, tuple[str, str]] = {
    "gmv_fen": ("gmv_fen", "orders"),
    "average_order_value_fen": ("gmv_fen", "orders"),
    "live_interaction_rate": ("interacting", "viewers"),
    "conversion_rate": ("session_buyers", "viewers"),
    "group_buy_success_rate": ("group_buys_succeeded", "group_buys_decided"),
    "repeat_purchase_rate": ("repeat_buyers", "buyers"),
    "on_time_fulfilment_rate": ("fulfilled_on_time", "fulfilment_due"),
    "claim_rate": ("claims", "fulfilled"),
    "return_rate": ("returned_orders", "orders"),
    "nps": ("nps_answers", "nps_answers"),
    "trace_lookup_rate": ("trace_lookup_buyers", "batch_buyers"),
}
FIGURES = ("headline", "groups", "cohorts", "nps_trend", "group_buys_by_community",
           "referral_share", "commission")


@dataclass
class OrderRow:
    id: int
    user_id: int
    session_id: int
    community_id: int | None
    status: str
    paid_at: datetime
    amount_fen: int
    batch_id: int | None
    farm: str
    pickup_by: datetime | None
    returned: bool = False
    rebated: bool = False


@dataclass
class Group:
    key: str
    label: str
    orders: list[OrderRow] = field(default_factory=list)
    sessions: set[int] = field(default_factory=set)
    group_buys: list[str] = field(default_factory=list)


@dataclass
class Facts:
    """Everything read from storage once; every figure is derived from it."""

    now: datetime
    orders: list[OrderRow]
    sessions: dict[int, LiveSession]
    communities: dict[int, str]
    batch_farms: dict[int, str]
    group_buys: list[tuple[str, int, int, int | None]]  # status, community, session, batch
    audience: dict[int, audience.AudienceCounts]
    fulfilled_at: dict[int, datetime]
    claimed: set[int]
    answers: dict[int, tuple[int, datetime]]  # order id -> (score, answered at)
    looked: set[tuple[int, int]]  # (batch id, user id)
    lookups_by_batch: dict[int, int]


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def month_of(when: datetime) -> str:
    return as_utc(when).astimezone(SHOP_TZ).strftime("%Y-%m")


def _month_index(month: str) -> int:
    year, mon = month.split("-")
    return int(year) * 12 + int(mon) - 1


def _month_name(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


async def load(db: AsyncSession, redis: Redis, since: datetime | None = None,
               now: datetime | None = None, host_id: int | None = None) -> Facts:
    now = now or utcnow()
    session_query = select(LiveSession)
    if host_id is not None:
        session_query = session_query.where(LiveSession.host_id == host_id)
    sessions = {s.id: s for s in (await db.execute(session_query)).scalars()}
    batch_farms = {b.id: b.farm for b in (await db.execute(select(Batch))).scalars()}
    query = (
        select(Order, Sale.pickup_by, OrderEvidence.batch_id, Product.batch_id, LiveSession.farm)
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
    orders: list[OrderRow] = []
    for order, pickup_by, evidence_batch, product_batch, session_farm in await db.execute(query):
        batch_id = evidence_batch if evidence_batch is not None else product_batch
        farm = batch_farms.get(batch_id, "") if batch_id is not None else ""
        orders.append(OrderRow(
            id=order.id, user_id=order.user_id, session_id=order.session_id,
            community_id=order.community_id, status=order.status, paid_at=as_utc(order.paid_at),
            amount_fen=order.amount_fen, batch_id=batch_id, farm=farm or session_farm or "",
            pickup_by=as_utc(pickup_by) if pickup_by is not None else None,
            returned=order.status == OrderStatus.REFUNDED.value,
        ))
    by_id = {o.id: o for o in orders}
    ids = sorted(by_id)
    fulfilled_at: dict[int, datetime] = {}
    claimed: set[int] = set()
    answers: dict[int, tuple[int, datetime]] = {}
    # Per chunk of the orders in view (an IN list of bounded length on both databases).
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        for order_id, key in await db.execute(
                select(Refund.order_id, Refund.key).where(Refund.order_id.in_(chunk))):
            row = by_id[order_id] if order_id is not None else None
            if row is None:
                continue
            if is_price_rebate(key):
                row.rebated = True
            else:
                row.returned = True
        for order_id, at in await db.execute(
                select(OrderTransition.order_id, OrderTransition.at)
                .where(OrderTransition.order_id.in_(chunk),
                       OrderTransition.to_status.in_(FULFILMENT_STEPS))):
            at = as_utc(at)
            if order_id not in fulfilled_at or at < fulfilled_at[order_id]:
                fulfilled_at[order_id] = at
        claimed.update(oid for (oid,) in await db.execute(
            select(Claim.order_id).where(Claim.order_id.in_(chunk))))
        answers.update({oid: (score, as_utc(at)) for oid, score, at in await db.execute(
            select(NpsResponse.order_id, NpsResponse.score, NpsResponse.created_at)
            .where(NpsResponse.order_id.in_(chunk)))})

    gb_query = (
        select(GroupBuy.status, GroupBuy.community_id, Sale.session_id, Product.batch_id)
        .join(Sale, Sale.id == GroupBuy.sale_id).outerjoin(Product, Product.id == Sale.product_id)
    )
    group_buys = [(status, community, session, batch)
                  for status, community, session, batch in await db.execute(gb_query)
                  if session in sessions]

    looked = {(b, u) for b, u in await db.execute(
        select(TraceLookupUser.batch_id, TraceLookupUser.user_id))}
    lookups_by_batch: dict[int, int] = defaultdict(int)
    lookup_query = select(TraceLookupDaily.batch_id, TraceLookupDaily.count)
    if since is not None:
        lookup_query = lookup_query.where(TraceLookupDaily.day >= since.date().isoformat())
    for batch_id, count in await db.execute(lookup_query):
        lookups_by_batch[batch_id] += count
    return Facts(
        now=now, orders=orders, sessions=sessions,
        communities={c.id: c.name for c in (await db.execute(select(Community))).scalars()},
        batch_farms=batch_farms, group_buys=group_buys,
        audience=await audience.counts(db, redis, sorted(sessions)), fulfilled_at=fulfilled_at,
        claimed=claimed, answers=answers, looked=looked, lookups_by_batch=dict(lookups_by_batch),
    )


GroupScope = Literal["session", "farm", "community", "total"]


def _key(scope: GroupScope, row: OrderRow) -> str:
    if scope == "session":
        return str(row.session_id)
    if scope == "farm":
        return row.farm
    if scope == "community":
        return str(row.community_id) if row.community_id is not None else ""
    return "all"


def groups(facts: Facts, scope: GroupScope) -> list[dict[str, Any]]:
    """One row per session / farm / community (or one "all" row) with every metric and the
    counts behind it."""
    found: dict[str, Group] = {}

    def group(key: str) -> Group:
        if key not in found:
            if scope == "session":
                session = facts.sessions.get(int(key))
                label = session.title if session is not None else key
            elif scope == "farm":
                label = key or "(未知农场)"
            elif scope == "community":
                label = facts.communities.get(int(key), key) if key else "(无小区)"
            else:
                label = "全部"
            found[key] = Group(key, label)
        return found[key]

    if scope == "total":
        group("all")  # the headline exists with nothing sold yet
    for row in facts.orders:
        g = group(_key(scope, row))
        g.orders.append(row)
        g.sessions.add(row.session_id)
    if scope in ("session", "total"):
        for sid in facts.sessions:
            group(str(sid) if scope == "session" else "all").sessions.add(sid)
    for status, community_id, session_id, batch_id in facts.group_buys:
        if status == GroupStatus.OPEN.value:
            continue
        if scope == "session":
            key = str(session_id)
        elif scope == "farm":
            farm = facts.batch_farms.get(batch_id, "") if batch_id is not None else ""
            key = farm or facts.sessions[session_id].farm or ""
        elif scope == "community":
            key = str(community_id)
        else:
            key = "all"
        group(key).group_buys.append(status)

    first_paid: dict[tuple[int, int], datetime] = {}
    for o in facts.orders:
        k = (o.user_id, o.session_id)
        first_paid[k] = min(first_paid.get(k, o.paid_at), o.paid_at)
    audience_known = scope != "community"
    result = []
    for g in sorted(found.values(), key=lambda g: g.key):
        c: dict[str, int] = dict.fromkeys(COUNTS, 0)
        c["sessions"] = len(g.sessions)
        c["orders"] = len(g.orders)
        buyers = {o.user_id for o in g.orders}
        c["buyers"] = len(buyers)
        if audience_known:
            for sid in g.sessions:
                counts = facts.audience.get(sid, audience.AudienceCounts())
                c["viewers"] += counts.viewers
                c["interacting"] += counts.interacting
                c["comments"] += counts.comments
                c["questions"] += counts.questions
                c["likes"] += counts.likes
        c["session_buyers"] = sum(len({o.user_id for o in g.orders if o.session_id == sid})
                                  for sid in g.sessions)
        c["group_buys_decided"] = len(g.group_buys)
        c["group_buys_succeeded"] = sum(1 for s in g.group_buys if s == GroupStatus.SUCCEEDED.value)
        if scope == "session":
            sid = int(g.key)
            c["repeat_buyers"] = sum(1 for b in buyers if any(
                s != sid and t < first_paid[(b, sid)] for (u, s), t in first_paid.items() if u == b))
        else:
            c["repeat_buyers"] = sum(
                1 for b in buyers if len({o.session_id for o in g.orders if o.user_id == b}) >= 2)
        gmv = sum(o.amount_fen for o in g.orders)
        for o in g.orders:
            _fulfilment(facts, o, c)
            if o.status in FULFILLED or o.id in facts.claimed:
                c["fulfilled"] += 1
            c["claims"] += o.id in facts.claimed
            c["returned_orders"] += o.returned
            c["rebated_orders"] += o.rebated and not o.returned
        scores = [facts.answers[o.id][0] for o in g.orders if o.id in facts.answers]
        c["nps_answers"] = len(scores)
        batch_buyers = {o.user_id for o in g.orders if o.batch_id is not None}
        c["batch_buyers"] = len(batch_buyers)
        c["trace_lookup_buyers"] = len({o.user_id for o in g.orders if o.batch_id is not None
                                        and (o.batch_id, o.user_id) in facts.looked})
        c["trace_lookups"] = sum(facts.lookups_by_batch.get(b, 0)
                                 for b in {o.batch_id for o in g.orders if o.batch_id is not None})
        c["gmv_fen"] = gmv
        metrics: dict[str, float | int | None] = {
            "gmv_fen": gmv,
            "average_order_value_fen": (gmv + len(g.orders) // 2) // len(g.orders) if g.orders else None,
            "live_interaction_rate": _ratio(c["interacting"], c["viewers"]) if audience_known else None,
            "conversion_rate": _ratio(c["session_buyers"], c["viewers"]) if audience_known else None,
            "group_buy_success_rate": _ratio(c["group_buys_succeeded"], c["group_buys_decided"]),
            "repeat_purchase_rate": _ratio(c["repeat_buyers"], c["buyers"]),
            "on_time_fulfilment_rate": _ratio(c["fulfilled_on_time"], c["fulfilment_due"]),
            "claim_rate": _ratio(c["claims"], c["fulfilled"]),
            "return_rate": _ratio(c["returned_orders"], c["orders"]),
            "nps": nps(scores),
            "trace_lookup_rate": _ratio(c["trace_lookup_buyers"], c["batch_buyers"]),
        }
        result.append({"key": g.key, "label": g.label, **metrics, "counts": c})
    return result


def _fulfilment(facts: Facts, o: OrderRow, c: dict[str, int]) -> None:
    """Count the order in the on-time figure: see on_time_fulfilment_rate above."""
    if o.pickup_by is None:
        return
    done = facts.fulfilled_at.get(o.id)
    if done is not None:
        c["fulfilment_due"] += 1
        c["fulfilled_on_time"] += done <= o.pickup_by
    elif o.status == OrderStatus.PAID.value and facts.now > o.pickup_by:
        c["fulfilment_due"] += 1


def cohorts(facts: Facts) -> list[dict[str, Any]]:
    """Buyers by first-order month, and how many of them bought in each month after."""
    months: dict[int, set[int]] = defaultdict(set)
    for o in facts.orders:
        months[o.user_id].add(_month_index(month_of(o.paid_at)))
    by_cohort: dict[int, list[set[int]]] = {}
    for seen in months.values():
        first = min(seen)
        by_cohort.setdefault(first, [])
        by_cohort[first].append(seen)
    current = _month_index(month_of(facts.now))
    rows = []
    for first in sorted(by_cohort):
        members = by_cohort[first]
        span = min(COHORT_MONTHS, current - first + 1)
        active = [sum(1 for seen in members if first + k in seen) for k in range(max(span, 1))]
        rows.append({
            "cohort": _month_name(first), "buyers": len(members), "active": active,
            "repeat_buyers": sum(1 for seen in members if len(seen) >= 2),
            "repeat_rate": _ratio(sum(1 for seen in members if len(seen) >= 2), len(members)),
        })
    return rows


def nps_trend(facts: Facts) -> list[dict[str, Any]]:
    by_month: dict[str, list[int]] = defaultdict(list)
    for score, at in facts.answers.values():
        by_month[month_of(at)].append(score)
    return [{"month": month, "answers": len(scores),
             "promoters": sum(1 for s in scores if s >= 9),
             "detractors": sum(1 for s in scores if s <= 6), "nps": nps(scores)}
            for month, scores in sorted(by_month.items())]


def group_buys_by_community(facts: Facts) -> list[dict[str, Any]]:
    tally: dict[int, dict[str, int]] = {}
    for status, community_id, _session, _batch in facts.group_buys:
        counts = tally.setdefault(community_id, dict.fromkeys(("succeeded", "failed", "open"), 0))
        counts[status] += 1
    return [{"key": str(cid), "label": facts.communities.get(cid, str(cid)), **counts,
             "decided": counts["succeeded"] + counts["failed"],
             "success_rate": _ratio(counts["succeeded"], counts["succeeded"] + counts["failed"])}
            for cid, counts in sorted(tally.items())]


async def compute(
    db: AsyncSession, redis: Redis, scope: Scope, since: datetime | None = None,
    now: datetime | None = None, host_id: int | None = None,
) -> list[dict[str, Any]]:
    """The per-group rows only (see `report` for every figure)."""
    return groups(await load(db, redis, since, now, host_id), scope)


async def report(
    db: AsyncSession, redis: Redis, scope: Scope, since: datetime | None = None,
    now: datetime | None = None, host_id: int | None = None,
) -> dict[str, Any]:
    facts = await load(db, redis, since, now, host_id)
    referrals = await referral_metrics.figures(db, since, host_id)
    return {"headline": groups(facts, "total")[0], "rows": groups(facts, scope),
            "cohorts": cohorts(facts), "nps_trend": nps_trend(facts),
            "group_buys_by_community": group_buys_by_community(facts),
            # commerce/referral_metrics.py defines these
            "referral_share": referrals["referral_share"], "commission": referrals["commission"],
            "referral_totals": referrals["totals"]}


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


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def _safe(lines: list[list[str]]) -> list[list[str]]:
    return [[spreadsheet_safe(cell) for cell in line] for line in lines]


def csv_rows(scope: str, rows: list[dict[str, Any]]) -> list[list[str]]:
    """Header + one line per group: metrics first, then the counts behind them; every cell
    passed through `spreadsheet_safe` (keys and labels are people's text)."""
    out = [[scope, "label", *METRICS, *COUNTS]]
    for row in rows:
        out.append([_cell(row["key"]), _cell(row["label"]),
                    *(_cell(row[m]) for m in METRICS),
                    *(_cell(row["counts"].get(n, 0)) for n in COUNTS)])
    return _safe(out)


def metric_csv_rows(scope: str, metric: str, rows: list[dict[str, Any]]) -> list[list[str]]:
    """One metric per group with the two counts it is made of."""
    num, den = BEHIND[metric]
    out = [[scope, "label", metric, num, den]]
    for row in rows:
        out.append([_cell(row["key"]), _cell(row["label"]), _cell(row[metric]),
                    _cell(row["counts"][num]), _cell(row["counts"][den])])
    return _safe(out)


def figure_csv_rows(name: str, data: dict[str, Any]) -> list[list[str]]:
    """headline | cohorts | nps_trend | group_buys_by_community as CSV lines."""
    if name == "headline":
        head = data["headline"]
        return _safe([["figure", "value"], *([m, _cell(head[m])] for m in METRICS),
                      *([n, _cell(head["counts"][n])] for n in COUNTS)])
    if name == "cohorts":
        width = max((len(r["active"]) for r in data["cohorts"]), default=1)
        out = [["cohort", "buyers", "repeat_buyers", "repeat_rate",
                *(f"month_{k}" for k in range(width))]]
        for r in data["cohorts"]:
            out.append([r["cohort"], _cell(r["buyers"]), _cell(r["repeat_buyers"]),
                        _cell(r["repeat_rate"]), *(_cell(v) for v in r["active"]),
                        *([""] * (width - len(r["active"])))])
        return _safe(out)
    if name == "nps_trend":
        return _safe([["month", "answers", "promoters", "detractors", "nps"],
                      *([r["month"], _cell(r["answers"]), _cell(r["promoters"]),
                         _cell(r["detractors"]), _cell(r["nps"])] for r in data["nps_trend"])])
    if name == "group_buys_by_community":
        return _safe([["community", "label", "succeeded", "failed", "open", "decided",
                       "success_rate"],
                      *([r["key"], r["label"], _cell(r["succeeded"]), _cell(r["failed"]),
                         _cell(r["open"]), _cell(r["decided"]), _cell(r["success_rate"])]
                        for r in data["group_buys_by_community"])])
    if name == "referral_share":
        return _safe([["month", "new_buyers", "referred_buyers", "referral_share"],
                      *([r["month"], _cell(r["new_buyers"]), _cell(r["referred_buyers"]),
                         _cell(r["referral_share"])] for r in data["referral_share"])])
    if name == "commission":
        return _safe([["status", "rows", "amount_fen"],
                      *([r["status"], _cell(r["rows"]), _cell(r["amount_fen"])]
                        for r in data["commission"])])
    raise KeyError(name)
