"""The dashboard against a scenario whose true figures this test works out by itself.

The scenario is a list of facts (orders, refunds, pickups against their promise, viewers joining
and talking through real sockets, NPS answers, trace look-ups through the real API, group-buys);
`Truth` derives every figure from that list with plain loops, following the definitions and
nothing of commerce/dashboard.py, and the API, every CSV and the charts must agree with it. The
traps the old dashboard fell into are in the list: group-buy price rebates (not returns), a buyer
collecting long after the goods were ready on time (not late), viewers reconnecting (counted
once), staff talking in their own room (not audience), an order paid at 00:30 China time on the
1st (the new month there, still the old one in UTC), another host's shop (not in this one's view).
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from commerce import accounts, audience, catalog, live_sessions, refunds
from commerce.accounts import Principal, Role
from commerce.flash_sale.sales import Sale
from commerce.group_buys import GroupBuy
from commerce.orders import Order, OrderTransition
from server.commerce_keys import checkout_key
from server.keys import database_key, redis_key
from tests.conftest import Api
from tests.realtime_support import Recorder, connect
from trust.claims import Claim
from trust.nps import NpsResponse

CN = ZoneInfo("Asia/Shanghai")
NOW = datetime.now(UTC)
H = timedelta(hours=1)


def local(months_back: int, day: int, hour: int = 12, minute: int = 0) -> datetime:
    """A moment `months_back` calendar months before this one, China time, as UTC."""
    here = NOW.astimezone(CN)
    index = here.year * 12 + here.month - 1 - months_back
    return datetime(index // 12, index % 12 + 1, day, hour, minute, tzinfo=CN).astimezone(UTC)


# --- the scenario ------------------------------------------------------------------------------
# Sessions: S1 甲农场 and S2 乙农场 are the host's; S9 is another host's.
# Sales: (name, session, product, promised pickup). Products: PA from batch BA (甲农场), PB from
# batch BB (乙农场), PC without a batch, PZ the other host's.
SALES = {
    "A1": ("S1", "PA", local(3, 10, 18)),
    "B2": ("S2", "PB", local(1, 15, 12)),
    "C3": ("S2", "PC", NOW + 48 * H),  # promised in two days: not due yet
    "Z9": ("S9", "PZ", local(1, 20)),
}


@dataclass
class Sold:
    name: str
    buyer: str
    sale: str
    community: str | None
    qty: int
    unit_fen: int
    paid: datetime
    status: str
    ready: datetime | None = None
    delivered: datetime | None = None
    picked: datetime | None = None
    refunded: bool = False  # a real refund (money back, goods not kept)


ORDERS = [
    # ready a day before the promise, collected ten days later: on time all the same
    Sold("o1", "u1", "A1", "C1", 1, 6800, local(3, 5), "completed", ready=local(3, 9), picked=local(3, 20)),
    Sold("o2", "u2", "A1", "C1", 1, 5800, local(3, 5, 13), "picked_up", ready=local(3, 11),
         picked=local(3, 11, 15)),
    Sold("o3", "u3", "A1", "C2", 1, 6800, local(3, 6), "refunded", refunded=True),
    Sold("o4", "u4", "A1", "C2", 2, 6800, local(3, 6, 14), "picked_up", ready=local(3, 10, 17, 59),
      picked=local(3, 12)),
    Sold("o5", "u5", "A1", None, 1, 6800, local(3, 7), "paid"),  # never made ready: late
    # 00:30 on the 1st in China is still the month before in UTC
    Sold("o6", "u1", "B2", "C1", 1, 12800, local(2, 1, 0, 30), "delivered", delivered=local(1, 14)),
    Sold("o7", "u2", "B2", "C2", 1, 12800, local(1, 3), "ready_for_pickup", ready=local(1, 16)),
    Sold("o8", "u1", "B2", "C1", 2, 12800, local(1, 4), "refunded", refunded=True),
    Sold("o9", "u3", "B2", "C1", 1, 12800, local(1, 5), "cancelled"),  # never paid
    Sold("o10", "u4", "C3", None, 3, 3300, local(1, 6), "paid"),
    Sold("o99", "u1", "Z9", "C3", 1, 99900, local(1, 2), "completed", ready=local(1, 3), picked=local(1, 4)),
]
# Group-buys (sale, community, outcome, group price); a success rebates its orders' price.
GROUP_BUYS = [("A1", "C1", "succeeded", 4800), ("A1", "C2", "succeeded", 4800),
              ("B2", "C1", "failed", 9900), ("B2", "C2", "open", 9900), ("Z9", "C3", "succeeded", 100)]
CLAIMS = ["o2"]
NPS = [("o1", 10, local(3, 21)), ("o2", 3, local(3, 22)), ("o4", 9, local(2, 2)),
       ("o6", 7, local(1, 20)), ("o7", 10, local(1, 21)), ("o99", 0, local(1, 22))]
# Trace look-ups through GET /api/trace/{code}: (who, batch); None = not signed in. One per
# visitor per batch per day is counted, so u1's second look is not.
LOOKUPS = [("u1", "BA"), ("u1", "BA"), ("u4", "BA"), (None, "BA"), ("u2", "BB"), ("u5", "BZ")]
# Socket joins (session, who); who = a user, "host", "anon:<id>" or "anon" (no id: this socket).
JOINS = [("S1", "anon:viewerA-1234"), ("S1", "anon:viewerA-1234"), ("S1", "anon:viewerB-1234"),
         ("S1", "anon"), ("S1", "anon:viewerF-1234"), ("S1", "anon:viewerG-1234"), ("S1", "u1"),
         ("S1", "u2"), ("S1", "host"), ("S2", "u1"), ("S2", "anon:viewerA-1234"),
         ("S2", "anon:viewerC-1234"), ("S2", "anon:viewerD-1234"), ("S2", "anon:viewerE-1234")]
# What joined users do: (session, who, event, likes).
ACTS = [("S1", "u1", "comment", 0), ("S1", "u1", "comment", 0), ("S1", "u2", "like", 3),
        ("S1", "u1", "question", 0), ("S1", "host", "comment", 0), ("S2", "u1", "like", 1)]
FARMS = {"S1": "甲农场", "S2": "乙农场", "S9": "丙农场"}
BATCH_FARMS = {"BA": "甲农场", "BB": "乙农场", "BZ": "丙农场"}
PRODUCT_BATCH = {"PA": "BA", "PB": "BB", "PC": None, "PZ": "BZ"}
SESSION_HOST = {"S1": "host", "S2": "host", "S9": "other"}
PAID = {"paid", "ready_for_pickup", "picked_up", "delivered", "completed", "refunded"}
FULFILLED = {"picked_up", "delivered", "completed"}


# --- the truth, from the lists above -----------------------------------------------------------

def month(when: datetime) -> str:
    return when.astimezone(CN).strftime("%Y-%m")


def rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def nps_of(scores: list[int]) -> float | None:
    if not scores:
        return None
    return round(100 * (sum(s >= 9 for s in scores) - sum(s <= 6 for s in scores)) / len(scores), 1)


@dataclass
class Truth:
    host: str  # "host", "other" or "" (admin: everything)
    rebated: dict[str, int] = field(default_factory=dict)

    def sessions(self) -> list[str]:
        return [s for s, h in SESSION_HOST.items() if not self.host or h == self.host]

    def orders(self) -> list[Sold]:
        return [o for o in ORDERS if o.status in PAID and SALES[o.sale][0] in self.sessions()]

    def audience(self, session: str) -> dict[str, int]:
        viewers = set()
        for s, who in JOINS:
            if s != session or who == "host":
                continue
            viewers.add(f"socket-{len(viewers)}" if who == "anon" else who)
        talkers = {who for s, who, _e, _n in ACTS if s == session and who != "host"}
        acts = [(e, n) for s, who, e, n in ACTS if s == session and who != "host"]
        return {"viewers": len(viewers | talkers), "interacting": len(talkers),
                "comments": sum(e == "comment" for e, _ in acts),
                "questions": sum(e == "question" for e, _ in acts),
                "likes": sum(n for e, n in acts if e == "like")}

    @staticmethod
    def farm(o: Sold) -> str:
        session, product, _ = SALES[o.sale]
        batch = PRODUCT_BATCH[product]
        return BATCH_FARMS[batch] if batch else FARMS[session]

    def key(self, scope: str, o: Sold) -> str:
        if scope == "session":
            return SALES[o.sale][0]
        if scope == "farm":
            return self.farm(o)
        if scope == "community":
            return o.community or ""
        return "all"

    def groups(self, scope: str) -> dict[str, dict[str, Any]]:
        keys: dict[str, list[Sold]] = defaultdict(list)
        for o in self.orders():
            keys[self.key(scope, o)].append(o)
        if scope == "session":
            for s in self.sessions():
                keys.setdefault(s, [])
        if scope == "total":
            keys.setdefault("all", [])
        gbs: dict[str, list[str]] = defaultdict(list)
        for sale, community, outcome, _price in GROUP_BUYS:
            session, product, _ = SALES[sale]
            if session not in self.sessions() or outcome == "open":
                continue
            batch = PRODUCT_BATCH[product]
            key = {"session": session, "farm": BATCH_FARMS[batch] if batch else FARMS[session],
                   "community": community, "total": "all"}[scope]
            gbs[key].append(outcome)
            keys.setdefault(key, [])
        out = {}
        for key, orders in keys.items():
            sessions = {SALES[o.sale][0] for o in orders}
            if scope == "session":
                sessions = {key}
            elif scope == "total":
                sessions = set(self.sessions())
            buyers = {o.buyer for o in orders}
            gmv = sum(o.qty * o.unit_fen for o in orders)
            seen = {"viewers": 0, "interacting": 0}
            if scope != "community":
                for s in sessions:
                    a = self.audience(s)
                    seen["viewers"] += a["viewers"]
                    seen["interacting"] += a["interacting"]
            session_buyers = sum(len({o.buyer for o in orders if SALES[o.sale][0] == s})
                                 for s in sessions)
            if scope == "session":
                first = {}
                for o in self.orders():
                    k = (o.buyer, SALES[o.sale][0])
                    first[k] = min(first.get(k, o.paid), o.paid)
                repeat = sum(1 for b in buyers if any(
                    s != key and t < first[(b, key)] for (u, s), t in first.items() if u == b))
            else:
                repeat = sum(1 for b in buyers
                             if len({SALES[o.sale][0] for o in orders if o.buyer == b}) >= 2)
            on_time = due = 0
            for o in orders:
                promise = SALES[o.sale][2]
                done = o.ready or o.delivered
                if done is not None:
                    due += 1
                    on_time += done <= promise
                elif o.status == "paid" and promise < NOW:
                    due += 1
            fulfilled = [o for o in orders if o.status in FULFILLED or o.name in CLAIMS]
            claims = sum(o.name in CLAIMS for o in orders)
            returned = sum(o.refunded for o in orders)
            scores = [score for name, score, _at in NPS if name in {o.name for o in orders}]
            batch_buyers = {o.buyer for o in orders if PRODUCT_BATCH[SALES[o.sale][1]]}
            looked = {(who, b) for who, b in LOOKUPS if who}
            lookers = {o.buyer for o in orders
                       if (o.buyer, PRODUCT_BATCH[SALES[o.sale][1]]) in looked}
            batches = {PRODUCT_BATCH[SALES[o.sale][1]] for o in orders} - {None}
            lookups = len({(who or "anon", b) for who, b in LOOKUPS if b in batches})
            decided = gbs.get(key, [])
            out[key] = {
                "gmv_fen": gmv,
                "average_order_value_fen": (gmv + len(orders) // 2) // len(orders) if orders else None,
                "live_interaction_rate": (rate(seen["interacting"], seen["viewers"])
                                          if scope != "community" else None),
                "conversion_rate": (rate(session_buyers, seen["viewers"])
                                    if scope != "community" else None),
                "group_buy_success_rate": rate(decided.count("succeeded"), len(decided)),
                "repeat_purchase_rate": rate(repeat, len(buyers)),
                "on_time_fulfilment_rate": rate(on_time, due),
                "claim_rate": rate(claims, len(fulfilled)),
                "return_rate": rate(returned, len(orders)),
                "nps": nps_of(scores),
                "trace_lookup_rate": rate(len(lookers), len(batch_buyers)),
                "counts": {"orders": len(orders), "buyers": len(buyers), "trace_lookups": lookups,
                           "rebated_orders": sum(1 for o in orders
                                                 if o.name in self.rebated and not o.refunded),
                           "returned_orders": returned, **seen},
            }
        return out

    def cohorts(self) -> list[dict[str, Any]]:
        months: dict[str, set[str]] = defaultdict(set)
        for o in self.orders():
            months[o.buyer].add(month(o.paid))
        index = {m: int(m[:4]) * 12 + int(m[5:]) - 1 for ms in months.values() for m in ms}
        current = int(month(NOW)[:4]) * 12 + int(month(NOW)[5:]) - 1
        cohorts: dict[str, list[set[int]]] = defaultdict(list)
        for ms in months.values():
            cohorts[min(ms)].append({index[m] for m in ms})
        rows = []
        for first in sorted(cohorts):
            f = index[first]
            members = cohorts[first]
            repeaters = sum(len(m) >= 2 for m in members)
            rows.append({"cohort": first, "buyers": len(members), "repeat_buyers": repeaters,
                         "repeat_rate": rate(repeaters, len(members)),
                         "active": [sum(f + k in m for m in members)
                                    for k in range(min(12, current - f + 1))]})
        return rows

    def nps_trend(self) -> list[dict[str, Any]]:
        mine = {o.name for o in self.orders()}
        by: dict[str, list[int]] = defaultdict(list)
        for name, score, at in NPS:
            if name in mine:
                by[month(at)].append(score)
        return [{"month": m, "answers": len(s), "promoters": sum(x >= 9 for x in s),
                 "detractors": sum(x <= 6 for x in s), "nps": nps_of(s)} for m, s in sorted(by.items())]

    def group_buys(self) -> dict[str, dict[str, Any]]:
        tally: dict[str, dict[str, int]] = {}
        for sale, community, outcome, _price in GROUP_BUYS:
            if SALES[sale][0] not in self.sessions():
                continue
            t = tally.setdefault(community, {"succeeded": 0, "failed": 0, "open": 0})
            t[outcome] += 1
        return {c: {**t, "decided": t["succeeded"] + t["failed"],
                    "success_rate": rate(t["succeeded"], t["succeeded"] + t["failed"])}
                for c, t in tally.items()}


# --- seeding the scenario through the app --------------------------------------------------------

@dataclass
class World:
    tokens: dict[str, str]
    users: dict[str, int]
    ids: dict[str, int]  # S1, C1, BA, o1, ... -> row id
    names: dict[str, dict[str, str]]  # per scope: the key the API shows -> our name


async def seed(api: Api) -> World:
    tokens: dict[str, str] = {}
    users: dict[str, int] = {}
    for name, role in (("host", "host"), ("other", "host"), *((f"u{i}", "viewer") for i in range(1, 6))):
        users[name], tokens[name] = await api.user(role)
    ids: dict[str, int] = {}
    owners = {"host": Principal(users["host"], "host", Role.HOST),
              "other": Principal(users["other"], "other", Role.HOST)}
    async with api.app[database_key].session() as db:
        for name, owner in (("C1", "host"), ("C2", "host"), ("C3", "other")):
            ids[name] = (await accounts.create_community(db, f"{name} 小区-truth 名字很长的花园社区",
                                                         users[owner])).id
        for s, owner in SESSION_HOST.items():
            ids[s] = (await live_sessions.create_session(db, owners[owner], f"{s} 直播", farm=FARMS[s])).id
        for b, farm in BATCH_FARMS.items():
            owner = owners["other" if b == "BZ" else "host"]
            ids[b] = (await catalog.create_batch(db, owner, f"TRUTH-{b}", farm=farm)).id
        for p, b in PRODUCT_BATCH.items():
            owner = owners["other" if p == "PZ" else "host"]
            ids[p] = (await catalog.create_product(db, owner, p, 1000,
                                                   batch_id=ids[b] if b else None)).id
        for sale, (session, product, promise) in SALES.items():
            row = Sale(session_id=ids[session], product_id=ids[product], stock=100, price_fen=6800,
                       per_buyer_limit=5, starts_at=NOW - 200 * 24 * H, pickup_by=promise,
                       status="closed", created_by=users[SESSION_HOST[session]])
            db.add(row)
            await db.flush()
            ids[sale] = row.id
        for rank, o in enumerate(ORDERS):
            amount = o.qty * o.unit_fen
            order = Order(hold_id=f"truth-{o.name}", sale_id=ids[o.sale], session_id=ids[SALES[o.sale][0]],
                          user_id=users[o.buyer], qty=o.qty, unit_price_fen=o.unit_fen,
                          amount_fen=amount, refunded_fen=amount if o.refunded else 0,
                          community_id=ids[o.community] if o.community else None,
                          paid_rank=rank + 1, gift=False, payment_ref=f"truth-pay-{o.name}",
                          status=o.status, pickup_code="123456", paid_at=o.paid)
            db.add(order)
            await db.flush()
            ids[o.name] = order.id
            db.add(OrderTransition(order_id=order.id, from_status="held", to_status="paid", at=o.paid))
            for to, at in (("ready_for_pickup", o.ready), ("delivered", o.delivered),
                           ("picked_up", o.picked)):
                if at is not None:
                    db.add(OrderTransition(order_id=order.id, from_status="paid", to_status=to, at=at))
            if o.refunded:
                await refunds.record(db, refunds.refund_key("order", order.id, "refunded"),
                                     order.payment_ref, amount, "staff refund", order.id)
        for sale, community, outcome, price in GROUP_BUYS:
            db.add(GroupBuy(sale_id=ids[sale], community_id=ids[community], threshold=2,
                            unit="people", deadline=NOW - H, group_price_fen=price,
                            on_failure="refund", status=outcome, applied=True,
                            created_by=users[SESSION_HOST[SALES[sale][0]]]))
        for name in CLAIMS:
            o = next(x for x in ORDERS if x.name == name)
            db.add(Claim(order_id=ids[name], buyer_id=users[o.buyer],
                         product_id=ids[SALES[o.sale][1]], batch_id=None,
                         session_id=ids[SALES[o.sale][0]], reason="spoiled", bad_qty=1,
                         status="pending", due_at=NOW,
                         community_id=ids[o.community] if o.community else None))
        for name, score, at in NPS:
            o = next(x for x in ORDERS if x.name == name)
            db.add(NpsResponse(order_id=ids[name], user_id=users[o.buyer], score=score,
                               session_id=ids[SALES[o.sale][0]], created_at=at))
    names = {"session": {str(ids[k]): k for k in SESSION_HOST},
             "community": {"": "", **{str(ids[k]): k for k in ("C1", "C2", "C3")}},
             "farm": {farm: farm for farm in (*FARMS.values(), *BATCH_FARMS.values())}}
    return World(tokens, users, ids, names)


async def rebate(api: Api, w: World) -> dict[str, int]:
    """Succeeded group-buys give their orders the group price back through the real refund path."""
    checkout = api.app[checkout_key]
    given: dict[str, int] = {}
    for sale, community, outcome, price in GROUP_BUYS:
        if outcome != "succeeded":
            continue
        async with api.app[database_key].session() as db:
            group_id = (await db.execute(select(GroupBuy.id).where(
                GroupBuy.sale_id == w.ids[sale], GroupBuy.community_id == w.ids[community]))).scalar_one()
        for o in ORDERS:
            if o.sale == sale and o.community == community and o.status in PAID:
                fen = await refunds.refund_difference(
                    checkout.uow, checkout.provider, w.ids[o.name], price, "group-buy succeeded",
                    refunds.rebate_key(w.ids[o.name], group_id))
                if fen:
                    given[o.name] = fen
    return given


async def watch_and_talk(api: Api, w: World) -> None:
    url = str(api.client.make_url("/"))
    sockets: dict[tuple[str, str], Recorder] = {}
    opened: list[Recorder] = []
    for session, who in JOINS:
        auth: dict[str, Any] = {"session_id": w.ids[session]}
        if who.startswith("anon:"):
            auth["viewer"] = who[5:]
        elif who != "anon":
            auth["token"] = w.tokens[who]
        rec = await connect(url, "/live", auth)
        await rec.wait(lambda r=rec: r.of("state"))
        opened.append(rec)
        sockets[(session, who)] = rec
    try:
        for session, who, event, likes in ACTS:
            rec = sockets[(session, who)]
            data: dict[str, Any] = {"count": likes} if event == "like" else {"text": f"{who} 说话"}
            ack = await rec.call(event, data)
            assert "error" not in ack, ack
    finally:
        for rec in opened:
            await rec.close()


async def look_up(api: Api, w: World) -> None:
    for who, batch in LOOKUPS:
        headers = api.auth(w.tokens[who]) if who else {}
        resp = await api.client.get(f"/api/trace/TRUTH-{batch}", headers=headers)
        assert resp.status == 200, await resp.text()


# --- comparing -------------------------------------------------------------------------------------

METRICS = ("gmv_fen", "average_order_value_fen", "live_interaction_rate", "conversion_rate",
           "group_buy_success_rate", "repeat_purchase_rate", "on_time_fulfilment_rate", "claim_rate",
           "return_rate", "nps", "trace_lookup_rate")


def same(got: Any, want: Any) -> bool:
    if want is None or got is None or got == "":
        return want in (None, "") and got in (None, "")
    return abs(float(got) - float(want)) < 1e-9


def assert_row(where: str, got: dict[str, Any], want: dict[str, Any]) -> None:
    bad = {m: (got[m], want[m]) for m in METRICS if not same(got[m], want[m])}
    bad.update({c: (got["counts"][c], v) for c, v in want["counts"].items()
                if got["counts"][c] != v})
    assert not bad, (where, bad)


def read_csv(body: bytes) -> list[list[str]]:
    text = body.decode("utf-8")
    assert text.startswith("\ufeff")  # Excel reads UTF-8 only with the BOM
    return list(csv.reader(io.StringIO(text[1:])))


async def get_csv(api: Api, token: str, query: str) -> list[list[str]]:
    resp = await api.client.get(f"/api/dashboard.csv?{query}", headers=api.auth(token))
    assert resp.status == 200, await resp.text()
    return read_csv(await resp.read())


async def check_view(api: Api, w: World, token: str, truth: Truth) -> None:
    for scope in ("session", "farm", "community"):
        resp = await api.client.get(f"/api/dashboard?by={scope}", headers=api.auth(token))
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        want = truth.groups(scope)
        got = {w.names[scope][row["key"]]: row for row in body["rows"]}
        assert set(got) == set(want), (scope, set(got), set(want))
        for key, row in want.items():
            assert_row(f"{scope}:{key}", got[key], row)
        table = await get_csv(api, token, f"by={scope}&figure=groups")
        header = table[0]
        assert header[:2] == [scope, "label"]
        lines = {w.names[scope][line[0]]: dict(zip(header, line, strict=True))
                 for line in table[1:]}
        assert set(lines) == set(want)
        for key, row in want.items():
            for metric in METRICS:
                assert same(lines[key][metric] or None, row[metric]), (scope, key, metric)
            assert int(lines[key]["orders"]) == row["counts"]["orders"]
        metric_table = await get_csv(api, token, f"by={scope}&figure=return_rate")
        assert metric_table[0] == [scope, "label", "return_rate", "returned_orders", "orders"]
        for line in metric_table[1:]:
            row = want[w.names[scope][line[0]]]
            assert same(line[2] or None, row["return_rate"])
            assert [int(line[3]), int(line[4])] == [row["counts"]["returned_orders"],
                                                    row["counts"]["orders"]]
        if scope == "session":
            headline_want = truth.groups("total")["all"]
            assert_row("headline", body["headline"], headline_want)
            headline_csv = dict((line[0], line[1]) for line in await get_csv(api, token, "figure=headline"))
            for metric in METRICS:
                assert same(headline_csv[metric] or None, headline_want[metric]), metric
            assert body["cohorts"] == truth.cohorts()
            assert body["nps_trend"] == truth.nps_trend()
            gb_want = truth.group_buys()
            fields = ("succeeded", "failed", "open", "decided", "success_rate")
            gb_got = {w.names["community"][r["key"]]: {k: r[k] for k in fields}
                      for r in body["group_buys_by_community"]}
            assert gb_got == gb_want
            await check_figure_csvs(api, w, token, truth)


async def check_figure_csvs(api: Api, w: World, token: str, truth: Truth) -> None:
    cohorts = await get_csv(api, token, "figure=cohorts")
    assert cohorts[0][:4] == ["cohort", "buyers", "repeat_buyers", "repeat_rate"]
    for line, want in zip(cohorts[1:], truth.cohorts(), strict=True):
        assert line[0] == want["cohort"]
        assert [int(line[1]), int(line[2])] == [want["buyers"], want["repeat_buyers"]]
        assert same(line[3], want["repeat_rate"])
        assert [int(v) for v in line[4:] if v != ""] == want["active"]
    trend = await get_csv(api, token, "figure=nps_trend")
    assert trend[0] == ["month", "answers", "promoters", "detractors", "nps"]
    for line, want in zip(trend[1:], truth.nps_trend(), strict=True):
        assert line[0] == want["month"]
        assert [int(v) for v in line[1:4]] == [want["answers"], want["promoters"], want["detractors"]]
        assert same(line[4] or None, want["nps"])
    groups = await get_csv(api, token, "figure=group_buys_by_community")
    assert groups[0] == ["community", "label", "succeeded", "failed", "open", "decided", "success_rate"]
    got = {w.names["community"][line[0]]: line for line in groups[1:]}
    want_gb = truth.group_buys()
    assert set(got) == set(want_gb)
    for key, want in want_gb.items():
        line = got[key]
        assert [int(v) for v in line[2:6]] == [want[k] for k in ("succeeded", "failed", "open", "decided")]
        assert same(line[6] or None, want["success_rate"])


async def test_every_figure_matches_the_scenario(any_db_api: Api) -> None:
    api = any_db_api
    w = await seed(api)
    given = await rebate(api, w)
    # o1 and o2 (C1) and o4 (C2) paid above the group price; o3 was refunded before the outcome.
    assert set(given) == {"o1", "o2", "o4", "o99"}, given
    await watch_and_talk(api, w)
    await look_up(api, w)
    # The host ends S1: its audience is frozen into SQL; S2 is still read live from Redis.
    resp = await api.client.post(f"/api/sessions/{w.ids['S1']}/end", headers=api.auth(w.tokens["host"]))
    assert resp.status == 200, await resp.text()
    async with api.app[database_key].session() as db:
        frozen = await db.get(audience.SessionAudience, w.ids["S1"])
        assert frozen is not None
        assert frozen.counts() == audience.AudienceCounts(**Truth("host").audience("S1"))
        assert await db.get(audience.SessionAudience, w.ids["S2"]) is None
    live = await audience.live_counts(api.app[redis_key], w.ids["S2"])
    assert live == audience.AudienceCounts(**Truth("host").audience("S2"))

    truth = Truth("host", rebated=given)
    # Anchors, so the independent arithmetic above is itself checked against the story.
    head = truth.groups("total")["all"]
    assert head["return_rate"] == round(2 / 9, 4)  # o3 and o8; the rebated o1, o2, o4 are not
    assert head["on_time_fulfilment_rate"] == 0.5  # o1, o4, o6 on time; o2, o5, o7 late
    assert head["live_interaction_rate"] == 0.25 and head["conversion_rate"] == round(8 / 12, 4)
    assert head["nps"] == 40.0 and head["trace_lookup_rate"] == 0.6
    assert truth.cohorts()[0]["active"][:3] == [5, 1, 3]  # u1's o6 falls in China's next month
    await check_view(api, w, w.tokens["host"], truth)
    await check_view(api, w, w.tokens["other"], Truth("other", rebated=given))
    await check_view(api, w, api.admin_token, Truth("", rebated=given))


async def test_a_viewer_is_refused_and_a_host_sees_no_other_shop(api: Api) -> None:
    w = await seed(api)
    viewer = w.tokens["u1"]
    for path in ("/api/dashboard", "/api/dashboard.csv?figure=cohorts",
                 "/api/dashboard/charts/cohorts.svg"):
        resp = await api.client.get(path, headers=api.auth(viewer))
        assert resp.status in (401, 403), path
    other = await (await api.client.get("/api/dashboard?by=community",
                                        headers=api.auth(w.tokens["other"]))).json()
    assert {row["key"] for row in other["rows"]} == {str(w.ids["C3"])}
    assert {row["key"] for row in other["group_buys_by_community"]} == {str(w.ids["C3"])}
    assert other["headline"]["gmv_fen"] == 99900
    svg = await (await api.client.get("/api/dashboard/charts/group_buys_by_community.svg",
                                      headers=api.auth(w.tokens["host"]))).text()
    # Full names on the chart, never the other host's community.
    label = "C1 小区-truth 名字很长的花园社区"
    assert label.split(" ")[1] in svg and "C3 小区" not in svg
    bad = await api.client.get("/api/dashboard.csv?figure=planets", headers=api.auth(w.tokens["host"]))
    assert bad.status == 400


@pytest.mark.races
async def test_audience_counts_hold_under_concurrent_joins_talk_and_freezes(any_db_api: Api) -> None:
    """30 reconnects of one viewer count once, 30 new viewers 30 times, 30 like bursts exactly;
    20 session ends at once freeze one row with the same figures."""
    api = any_db_api
    redis = api.app[redis_key]
    host_id, _ = await api.user("host")
    async with api.app[database_key].session() as db:
        session_id = (await live_sessions.create_session(
            db, Principal(host_id, "h", Role.HOST), "并发")).id
    await asyncio.gather(
        *(audience.note_viewer(redis, session_id, "a:same-viewer-1") for _ in range(30)),
        *(audience.note_viewer(redis, session_id, f"a:viewer-{i:04d}") for i in range(30)),
        *(audience.note_interaction(redis, session_id, f"u:{i % 10}", audience.Interaction.LIKE, 2)
          for i in range(30)),
        *(audience.note_interaction(redis, session_id, "u:0", audience.Interaction.COMMENT)
          for _ in range(25)),
    )
    want = audience.AudienceCounts(viewers=41, interacting=10, comments=25, questions=0, likes=60)
    assert await audience.live_counts(redis, session_id) == want

    async def freeze() -> None:
        async with api.app[database_key].session() as db:
            await audience.freeze(db, redis, session_id)

    await asyncio.gather(*(freeze() for _ in range(20)))
    async with api.app[database_key].session() as db:
        rows = list((await db.execute(select(audience.SessionAudience).where(
            audience.SessionAudience.session_id == session_id))).scalars())
    assert len(rows) == 1 and rows[0].counts() == want
