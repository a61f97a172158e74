"""Events are private by default: every kind published anywhere is classified, the bus refuses an
unclassified one, and an anonymous /live socket hears nothing about any buyer while orders are
paid, advanced, refunded and claimed (only public kinds and their listed fields reach a room)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from commerce.event_payloads import PAYLOADS, OrderRefunded, PayloadError, ProductPinned
from commerce.events import (
    EVENT_KINDS,
    PUBLIC_FIELDS,
    PUBLIC_KINDS,
    Audience,
    DomainEvent,
    EventBus,
    UnknownEventKind,
)
from tests.conftest import Api
from tests.realtime_support import Recorder, connect
from tests.trust_support import JPEG, buy, make_farm, pick_up, upload

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("server", "commerce", "realtime", "media")
# Keys that name a buyer or what a buyer paid: none may appear in anything a room is sent.
PERSONAL = {"user_id", "buyer", "buyer_id", "amount_fen", "refunded_fen", "refund_fen",
            "payment_ref", "refund_ref", "pickup_code", "order_id", "claim_id", "payout_fen",
            "compensation_fen", "phone", "address"}


# --- every published kind is classified ------------------------------------------------------

def _callee(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _kind_arg(call: ast.Call, position: int, keyword: str) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == keyword:
            return kw.value
    return call.args[position] if len(call.args) > position else None


def published_kinds(sources: dict[str, str]) -> Iterator[tuple[str, str | None]]:
    """(where, kind) for every DomainEvent made in `sources` (path -> code); kind is None when it
    cannot be read off the code. A kind passed in through a parameter (a helper that publishes
    the kind it is given) is followed one level up, to every call of that helper."""
    trees = {path: ast.parse(code) for path, code in sources.items()}
    forwarders: dict[str, tuple[int, str]] = {}  # helper name -> (argument position, name)
    for path, tree in trees.items():
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and _callee(node) == "DomainEvent"):
                continue
            where = f"{path}:{node.lineno}"
            arg = _kind_arg(node, 0, "kind")
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                yield where, arg.value
                continue
            scope: ast.AST | None = parents.get(node)
            while scope is not None and not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
                scope = parents.get(scope)
            params = [a.arg for a in scope.args.args] if scope is not None else []
            if not isinstance(arg, ast.Name) or scope is None or arg.id not in params:
                yield where, None
                continue
            position = params.index(arg.id) - (1 if params[0] in ("self", "cls") else 0)
            forwarders[scope.name] = (position, arg.id)
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or _callee(node) not in forwarders:
                continue
            position, keyword = forwarders[str(_callee(node))]
            arg = _kind_arg(node, position, keyword)
            ok = isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            yield f"{path}:{node.lineno}", arg.value if ok else None  # type: ignore[union-attr]


def subscribed_kinds(sources: dict[str, str]) -> Iterator[tuple[str, str | None]]:
    for path, code in sources.items():
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Call) and _callee(node) == "subscribe":
                kinds = _kind_arg(node, 1, "kinds")
                if isinstance(kinds, (ast.Tuple, ast.List, ast.Set)):
                    for element in kinds.elts:
                        ok = isinstance(element, ast.Constant) and isinstance(element.value, str)
                        yield f"{path}:{node.lineno}", element.value if ok else None  # type: ignore[attr-defined]


def _code() -> dict[str, str]:
    return {str(path.relative_to(ROOT)): path.read_text(encoding="utf-8")
            for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def test_every_published_kind_is_classified() -> None:
    code = _code()
    found = list(published_kinds(code))
    unclassified = [(where, kind) for where, kind in found if kind not in EVENT_KINDS]
    assert unclassified == [], "publish only kinds declared in commerce.events.EVENT_KINDS"
    # The scan sees the helpers' kinds and every part of the server that publishes.
    kinds = {kind for _where, kind in found}
    assert kinds == set(EVENT_KINDS), set(EVENT_KINDS) ^ kinds  # nothing declared but unused
    assert {where.split("/")[0] for where, _kind in found} == set(PACKAGES)
    wrong = [(where, kind) for where, kind in subscribed_kinds(code) if kind not in EVENT_KINDS]
    assert wrong == []


def test_the_scan_catches_an_unclassified_kind() -> None:
    sources = {"a.py": 'async def f(bus):\n    await bus.publish(DomainEvent("order_secrets", 1))\n',
               "b.py": ("class C:\n    async def say(self, kind, x):\n"
                        "        await self.bus.publish(DomainEvent(kind, 1, {}))\n"
                        "async def g(c):\n    await c.say('sale_opened', 1)\n"
                        "    await c.say('buyer_list', 2)\n"),
               "c.py": "def h(bus, k):\n    return DomainEvent(k + 'x', 1)\n"}
    found = sorted(published_kinds(sources), key=str)
    assert ("a.py:2", "order_secrets") in found
    assert ("b.py:5", "sale_opened") in found and ("b.py:6", "buyer_list") in found
    assert ("c.py:2", None) in found
    assert [k for _w, k in found if k not in EVENT_KINDS] != []


async def test_the_bus_refuses_unknown_kinds() -> None:
    with pytest.raises(UnknownEventKind):
        DomainEvent("order_secrets", 1, {"user_id": 7})
    bus = EventBus()

    async def handler(event: DomainEvent) -> None:
        return None

    with pytest.raises(UnknownEventKind):
        bus.subscribe(handler, kinds=("order_paid", "orders_piad"))


def test_public_kinds_list_fields_that_name_no_buyer() -> None:
    assert set(PUBLIC_FIELDS) == set(PUBLIC_KINDS)
    for kind, fields in PUBLIC_FIELDS.items():
        assert not fields & PERSONAL, kind
    for kind in ("order_paid", "order_refunded", "order_status"):
        assert EVENT_KINDS[kind] is Audience.USER
    for kind in ("claim_filed", "claim_decided"):
        assert EVENT_KINDS[kind] is Audience.STAFF
    private = DomainEvent("order_refunded", 1, OrderRefunded(
        order_id=1, sale_id=1, user_id=3, qty=1, community_id=None, amount_fen=100))
    assert private.public_data() is None
    # A field a payload does not declare cannot be published at all, so none can slip through.
    with pytest.raises(PayloadError, match="user_id"):
        DomainEvent("stock_changed", 1, {"sale_id": 1, "remaining": 2, "held": 0, "sold": 0,
                                         "gift_left": 0, "ver": 1, "user_id": 3})
    pinned = DomainEvent("product_pinned", 1, ProductPinned(
        id=1, session_id=1, product_id=2, batch_id=None, pinned_at="2026-11-22T08:00:00+00:00",
        unpinned_at=None, snapshot={}, name="枇杷"))
    # The payload's version stays in the server; what a room gets is the listed fields.
    assert "v" not in (pinned.public_data() or {}) and pinned.payload.v == 1
    for kind, model in PAYLOADS.items():
        if kind in PUBLIC_FIELDS:
            assert PUBLIC_FIELDS[kind] <= set(model.model_fields), kind


# --- an anonymous socket while buyers pay, are refunded and claim -----------------------------

def _keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield str(key)
            yield from _keys(inner)
    elif isinstance(value, (list, tuple)):
        for inner in value:
            yield from _keys(inner)


def _record_everything(recorder: Recorder) -> list[tuple[str, Any]]:
    """Every frame the socket gets, the ones Recorder does not name included."""
    unnamed: list[tuple[str, Any]] = []

    def anything(event: str, data: Any = None) -> None:
        unnamed.append((event, data))
        recorder.changed.set()

    recorder.client.on("*", anything, namespace="/live")
    return unnamed


async def test_an_anonymous_socket_hears_nothing_private(any_db_api: Api) -> None:
    api = any_db_api
    farm = await make_farm(api, price_fen=3000)
    anonymous = await connect(str(api.client.make_url("/")), "/live",
                              {"session_id": farm.session_id})
    unnamed = _record_everything(anonymous)
    try:
        await anonymous.wait(lambda: anonymous.of("state"))
        buyers = [await api.user("viewer") for _ in range(3)]
        orders = [await buy(farm, token, 1) for _uid, token in buyers]
        # staff moves one order on, refunds another; the third is picked up and claimed
        resp = await api.client.post(f"/api/orders/{orders[0]}/ready", headers=api.auth(farm.host))
        assert resp.status == 200, await resp.text()
        resp = await api.client.post(f"/api/orders/{orders[1]}/refund", json={"reason": "缺货"},
                                     headers=api.auth(farm.host))
        assert resp.status == 200, await resp.text()
        claimant = buyers[2][1]
        await pick_up(farm, claimant, orders[2])
        photo = (await (await upload(api, claimant, JPEG, "claim")).json())["id"]
        resp = await api.client.post("/api/claims", json={
            "order_id": orders[2], "reason": "spoiled", "description": "两个坏果",
            "photos": [photo], "bad_qty": 1}, headers=api.auth(claimant))
        assert resp.status == 201, await resp.text()
        claim = await resp.json()
        if claim["status"] == "pending":
            _, assistant = await api.user("assistant")
            resp = await api.client.post(f"/api/claims/{claim['id']}/reject",
                                         json={"note": "照片看不清"}, headers=api.auth(assistant))
            assert resp.status == 200, await resp.text()
        # the room did follow the sale: three paid orders counted, the refund's unit back
        await anonymous.wait(lambda: [s for s in anonymous.of("state")
                                      if s["orders_paid"] == 3 and s["sales"]
                                      and s["sales"][0]["sold"] == 2], timeout=10)
        # a marker after everything above: whatever was to reach the room has reached it
        resp = await api.client.post(f"/api/sessions/{farm.session_id}/end",
                                     headers=api.auth(farm.host))
        assert resp.status == 200, await resp.text()
        await anonymous.wait(lambda: anonymous.of("session_ended"), timeout=10)
    finally:
        await anonymous.close()
    forwarded = {data["kind"] for data in anonymous.of("event")}
    assert forwarded <= PUBLIC_KINDS, forwarded
    assert unnamed == [], unnamed
    leaked = sorted({key for _event, data in anonymous.events for key in _keys(data)} & PERSONAL)
    assert leaked == [], leaked
