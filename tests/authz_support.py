"""The authorization matrix's machinery: roles, one seeded world, and how a cell is judged.

A cell is (operation, role). Its outcome is judged by class, not by exact status: `ok` means the
request got past authorization (2xx, or a domain 4xx such as 400/404/409 for a probe body that
is deliberately wrong after the auth check), `401` that the caller must sign in, `403` that this
caller may not. A few cells expect one specific refusal (`409:not_member`).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import socketio
from aiohttp.test_utils import TestClient

from realtime import questions
from server.keys import database_key
from tests.conftest import Api

# Who can be asking. `buyer` owns the hold, order, claim and upload under test; `viewer` is any
# other neighbour; `member` belongs to host A's community, `other_member` only to host B's;
# `leader` is a neighbour host A appointed 团长 of his community.
ROLES = ("anon", "viewer", "buyer", "member", "other_member", "leader", "other_host", "host",
         "assistant", "admin")
USERS = frozenset(ROLES) - {"anon"}
HOSTS = frozenset({"host", "other_host", "admin"})
OWNER = frozenset({"host", "admin"})  # the session's (product's, batch's) own host, or an admin
STAFF_OF = frozenset({"host", "assistant", "admin"})  # moderation and fulfilment rights on A
BUYER_OR_STAFF = STAFF_OF | {"buyer"}
PLATFORM_STAFF = frozenset({"host", "other_host", "assistant", "admin"})
ADMIN = frozenset({"admin"})
WORKS_A = OWNER | {"leader"}  # community A's managers: its host, an admin, its 团长
DECIDERS = frozenset({"assistant", "admin"})
BUYER = frozenset({"buyer"})
PUBLIC = frozenset(ROLES)

NO_SUCH = 999_999_999  # an id no row has: the allowed caller gets 404 after the auth check
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64 + b"\xff\xd9"
# Passes the WHIP/WHEP offer sanity check (v=0, one m= line), so the stream key is looked at.
SDP_OFFER = (b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
             b"m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=sendonly\r\n"
             b"a=rtpmap:96 VP8/90000\r\n")

AUTH_CODES = {"unauthorized": "401", "login_required": "401", "token_missing": "401",
              "forbidden": "403", "not_your_order": "403", "cannot_sanction": "403:cannot_sanction"}
STAFF_ROLES = ("host", "assistant", "admin")  # the staff of session A, who may try sanctions


@dataclass
class World:
    """Two hosts, each with a session; host A's side fully furnished. Ids are attributes."""

    api: Api
    tokens: dict[str, str | None] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)
    usernames: dict[str, str] = field(default_factory=dict)
    session_a: int = 0
    session_b: int = 0
    session_end: int = 0  # host A's, for the "end" probe (ending twice is idempotent)
    session_ended: int = 0  # host A's, ended at seed time: WHIP and replay rebuild probes
    stream_key_ended: str = ""
    stream_key_b: str = ""
    community_a: int = 0
    community_b: int = 0
    pickup_a: int = 0  # community A's default pickup point, added by host A
    invite_a: str = ""  # a live invite link to community A, made by host A
    invite_revoked: str = ""  # one host A revoked: accepting it is refused after the auth check
    batch_a: int = 0
    batch_code_a: str = ""
    product_a: int = 0
    product_b: int = 0
    sale_a: int = 0
    sale_members: int = 0  # members of community A only
    sale_close: int = 0
    group_buy: int = 0
    hold_pay: str = ""
    hold_release: str = ""
    order_paid: int = 0
    order_refunded: int = 0
    order_picked: int = 0
    review: int = 0
    claim: int = 0
    upload_url: str = ""
    question: int = 0
    troll: int = 0
    other_assistant: int = 0  # sanction targets: an assistant and an admin other than the actors
    other_admin: int = 0
    chart_url: str = ""
    programme_a: int = 0  # host A's 品鉴官 programme
    application_a: int = 0  # the viewer's application to it, waiting

    @property
    def client(self) -> TestClient[Any, Any]:
        return self.api.client

    @property
    def url(self) -> str:
        return str(self.client.make_url("/"))

    def headers(self, role: str) -> dict[str, str]:
        token = self.tokens.get(role)
        return {"Authorization": f"Bearer {token}"} if token else {}


Value = Any  # a literal, or a callable of the World for ids known only after seeding


@dataclass(frozen=True)
class Op:
    """One REST probe: the declared route, the concrete request, and who gets past auth."""

    method: str
    route: str  # as in the OpenAPI document / the router
    target: str  # str.format'ed with w=World
    allowed: frozenset[str]
    json: Value = None
    data: bytes | None = None
    content_type: str | None = None
    variant: str = ""
    anon: str = "401"  # what an anonymous caller gets on a protected route
    special: tuple[tuple[str, str], ...] = ()  # role -> expected, overriding the rule
    idempotency: bool = False  # send an Idempotency-Key per role (holds)
    # WHIP: hosts send their stream key (the own host the right one, the other host the key of
    # their own session); accounts send their login token, which is no stream key at all.
    stream_key: bool = False

    @property
    def id(self) -> str:
        return f"{self.method} {self.route}" + (f" [{self.variant}]" if self.variant else "")

    def expect(self, role: str) -> str:
        special = dict(self.special)
        if role in special:
            return special[role]
        if role in self.allowed:
            return "ok"
        return self.anon if role == "anon" else "403"

    async def call(self, w: World, role: str) -> tuple[int, str]:
        headers = w.headers(role)
        if self.stream_key and role in ("host", "other_host"):
            key = w.stream_key_ended if role == "host" else w.stream_key_b
            headers["Authorization"] = f"Bearer {key}"
        if self.idempotency:
            headers["Idempotency-Key"] = f"authz-{self.variant or 'main'}-{role}"
        kwargs: dict[str, Any] = {}
        if self.data is not None:
            kwargs["data"] = self.data
            headers["Content-Type"] = self.content_type or "application/octet-stream"
        elif self.json is not None:
            kwargs["json"] = self.json(w) if callable(self.json) else self.json
        resp = await w.client.request(self.method, self.target.format(w=w), headers=headers,
                                      **kwargs)
        return resp.status, error_code(await resp.read())


@dataclass(frozen=True)
class Event:
    """One Socket.IO client event (or `connect`) of a namespace, and who may send it."""

    namespace: str
    name: str
    allowed: frozenset[str]
    payload: Value = None
    variant: str = ""
    special: tuple[tuple[str, str], ...] = ()  # role -> expected, overriding the rule

    @property
    def id(self) -> str:
        return f"{self.namespace} {self.name}" + (f" [{self.variant}]" if self.variant else "")

    def expect(self, role: str) -> str:
        special = dict(self.special)
        if role in special:
            return special[role]
        if role in self.allowed:
            return "ok"
        return "401" if role == "anon" else "403"

    def body(self, w: World) -> dict[str, Any]:
        value = self.payload(w) if callable(self.payload) else self.payload
        return dict(value or {})


async def _ok(resp: Any, *statuses: int) -> dict[str, Any]:
    assert resp.status in (statuses or (200, 201)), f"{resp.method} {resp.url}: {await resp.text()}"
    return dict(await resp.json())


async def seed_world(api: Api) -> World:
    """Everything the matrix probes, made through the API as the people themselves would."""
    w = World(api)
    w.tokens["anon"] = None
    w.tokens["admin"] = api.admin_token
    for role in ROLES[1:-1]:
        kind = role if role in ("host", "assistant") else "host" if role == "other_host" else "viewer"
        name = f"{role}_{uuid.uuid4().hex[:8]}"
        w.ids[role], w.tokens[role] = await api.user(kind, name)
        w.usernames[role] = name
    w.troll, _ = await api.user("viewer")
    w.other_assistant, _ = await api.user("assistant")
    w.other_admin, _ = await api.user("admin")
    post, get = api.client.post, api.client.get
    h_a, h_b = w.headers("host"), w.headers("other_host")
    tag = uuid.uuid4().hex[:6]

    w.community_a = (await _ok(await post("/api/communities", json={"name": f"阳光花园-{tag}"},
                                          headers=h_a)))["id"]
    w.community_b = (await _ok(await post("/api/communities", json={"name": f"翠湖小区-{tag}"},
                                          headers=h_b)))["id"]
    await _ok(await post(f"/api/communities/{w.community_a}/members",
                         json={"user_id": w.ids["member"]}, headers=h_a))
    await _ok(await post(f"/api/communities/{w.community_b}/members",
                         json={"user_id": w.ids["other_member"]}, headers=h_b))
    await _ok(await api.client.put(f"/api/communities/{w.community_a}/leaders/{w.ids['leader']}",
                                   headers=h_a))
    w.pickup_a = (await _ok(await post(f"/api/communities/{w.community_a}/pickup-points",
                                       json={"name": "3号楼门卫室"}, headers=h_a), 201))["id"]
    w.invite_a = (await _ok(await post(f"/api/communities/{w.community_a}/invites", json={},
                                       headers=h_a)))["code"]
    w.invite_revoked = (await _ok(await post(f"/api/communities/{w.community_a}/invites",
                                             json={}, headers=h_a)))["code"]
    await _ok(await api.client.delete(f"/api/invites/{w.invite_revoked}", headers=h_a))

    async def session(headers: dict[str, str], title: str) -> dict[str, Any]:
        return await _ok(await post("/api/sessions", json={"title": title}, headers=headers))

    w.session_a = (await session(h_a, "枇杷专场"))["id"]
    made_b = await session(h_b, "橄榄油专场")
    w.session_b, w.stream_key_b = made_b["id"], made_b["stream_key"]
    w.session_end = (await session(h_a, "要结束的直播"))["id"]
    ended = await session(h_a, "已结束的直播")
    w.session_ended, w.stream_key_ended = ended["id"], ended["stream_key"]
    await _ok(await post(f"/api/sessions/{w.session_ended}/end", headers=h_a))

    w.batch_code_a = f"AUTHZ-{tag}"
    w.batch_a = (await _ok(await post("/api/batches", json={"code": w.batch_code_a, "farm": "老张农场"},
                                      headers=h_a)))["id"]
    w.product_a = (await _ok(await post("/api/products", json={
        "name": "白沙枇杷", "price_fen": 1000, "batch_id": w.batch_a}, headers=h_a)))["id"]
    w.product_b = (await _ok(await post("/api/products", json={"name": "橄榄油", "price_fen": 9000},
                                        headers=h_b)))["id"]

    async def product_a(name: str) -> int:
        return int((await _ok(await post("/api/products", json={"name": name, "price_fen": 1000},
                                         headers=h_a)))["id"])

    # One product has one sale at a time in a session: each sale here sells its own.
    async def sale(product_id: int | None = None, **extra: Any) -> int:
        body = {"product_id": product_id or w.product_a, "stock": 1000, "price_fen": 1000,
                "per_buyer_limit": 20, **extra}
        return int((await _ok(await post(f"/api/sessions/{w.session_a}/sales", json=body,
                                         headers=h_a)))["id"])

    w.sale_a = await sale()
    w.sale_members = await sale(await product_a("枇杷 社区专享"), community_ids=[w.community_a],
                                community_price_fen=800, members_only=True)
    w.sale_close = await sale(await product_a("枇杷 待关闭"))
    deadline = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    w.group_buy = (await _ok(await post(f"/api/sales/{w.sale_a}/group-buys", json={
        "community_id": w.community_a, "threshold": 5, "deadline": deadline,
        "group_price_fen": 900}, headers=h_a)))["group_id"]

    buyer = w.headers("buyer")

    async def hold() -> str:
        resp = await post(f"/api/sales/{w.sale_a}/holds", json={"qty": 1},
                          headers={**buyer, "Idempotency-Key": uuid.uuid4().hex})
        return str((await _ok(resp))["hold_id"])

    async def order() -> int:
        return int((await _ok(await post(f"/api/holds/{await hold()}/pay", headers=buyer)))["order_id"])

    w.hold_pay, w.hold_release = await hold(), await hold()
    w.order_paid, w.order_refunded, w.order_picked = await order(), await order(), await order()
    await _ok(await post(f"/api/orders/{w.order_refunded}/refund", json={}, headers=h_a))
    code = (await _ok(await get(f"/api/orders/{w.order_picked}", headers=buyer)))["pickup_code"]
    await _ok(await post(f"/api/orders/{w.order_picked}/ready", headers=h_a))
    await _ok(await post(f"/api/orders/{w.order_picked}/picked-up", json={"pickup_code": code},
                         headers=h_a))

    # A private claim photo, attached to a claim that an assistant then decides.
    resp = await post("/api/uploads?purpose=claim", data=JPEG,
                      headers={**buyer, "Content-Type": "image/jpeg"})
    photo = await _ok(resp, 201)
    w.upload_url = str(photo["url"])
    w.claim = (await _ok(await post("/api/claims", json={
        "order_id": w.order_picked, "reason": "spoiled", "photos": [photo["id"]]},
        headers=buyer)))["id"]
    # The picked-up order's review, which host A (the product's host) may answer in public.
    w.review = (await _ok(await post("/api/reviews", json={
        "order_id": w.order_picked, "stars": 4, "text": "seed"}, headers=buyer), 201))["id"]
    claim = await _ok(await get(f"/api/claims/{w.claim}", headers=buyer))
    if claim["status"] == "pending":
        await _ok(await post(f"/api/claims/{w.claim}/reject", json={"note": "seed"},
                             headers=w.headers("assistant")))

    async with api.app[database_key].session() as db:
        asked = await questions.ask(db, w.session_a, w.ids["viewer"], "邻居", "能送到小区门口吗?")
        w.question = asked.id
    w.programme_a = (await _ok(await post("/api/koc/programmes", json={
        "title": "矩阵品鉴官", "quota": 3}, headers=h_a), 201))["id"]
    w.application_a = (await _ok(await post(f"/api/koc/programmes/{w.programme_a}/apply",
                                            json={}, headers=w.headers("viewer")), 201))["id"]
    board = await _ok(await get("/api/dashboard", headers=h_a))
    w.chart_url = str(next(iter(board["charts"].values())))
    return w


# --- judging ---------------------------------------------------------------------------------

def outcome_class(status: int, code: str) -> str:
    """ok | 401 | 403 | 5xx, with the error code kept for cells expecting one refusal."""
    if status >= 500:
        return f"{status}:{code}"
    if status in (401, 403):
        return str(status)
    return "ok"


def matches(expected: str, status: int, code: str) -> bool:
    if ":" in expected:
        want_status, _, want_code = expected.partition(":")
        return status == int(want_status) and code == want_code
    return outcome_class(status, code) == expected


def socket_class(ack: Any) -> tuple[str, str]:
    """(class, detail) of an ack `{"ok": true, ...}` or `{"ok": false, "error": {"code"}}`."""
    if not isinstance(ack, dict):
        return "bad-ack", repr(ack)[:80]
    if ack.get("ok") is True:
        return "ok", ""
    code = str((ack.get("error") or {}).get("code", ""))
    if code == "internal":
        return "500:internal", code
    return AUTH_CODES.get(code, "ok"), code


def error_code(raw: bytes) -> str:
    with contextlib.suppress(ValueError, AttributeError, TypeError, KeyError):
        return str(json.loads(raw)["error"]["code"])
    return ""


def deny_first(roles: Iterable[str], expect: Callable[[str], str]) -> list[str]:
    """Refused callers go first, so a probe that an allowed caller consumes is still there."""
    return sorted(roles, key=lambda role: (expect(role) == "ok", ROLES.index(role)))


async def socket_connect(url: str, namespace: str,
                         auth: dict[str, Any]) -> tuple[socketio.AsyncClient | None, str]:
    """A connected client, or None with the class of the refusal (401/403/other)."""
    client = socketio.AsyncClient(reconnection=False)
    reasons: list[Any] = []
    client.on("connect_error", lambda data=None: reasons.append(data), namespace=namespace)
    try:
        await client.connect(url, namespaces=[namespace], auth=auth, transports=["websocket"],
                             socketio_path="socket.io", wait_timeout=10)
    except socketio.exceptions.ConnectionError:
        await client.disconnect()
        data = reasons[0].get("data", {}) if reasons and isinstance(reasons[0], dict) else {}
        code = str(data.get("code", "")) if isinstance(data, dict) else ""
        return None, AUTH_CODES.get(code, f"refused:{code}")
    return client, "ok"
