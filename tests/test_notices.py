"""Notifications, 预约 and interest tags over the API and the socket, on SQLite and PostgreSQL.

A notification is its user's alone: the list, the read marks and the live `notification` event
never reach anyone else. 预约 is one row however often (or however concurrently) it is asked
for, and going live tells each subscriber once, live on their sockets.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest
import socketio

from commerce import notifications
from infra.settings import Settings
from server.keys import database_key
from tests.commerce_support import hold, make_shop, pay
from tests.conftest import Api, AppFactory
from tests.webrtc_clients import publish

pytestmark = pytest.mark.asyncio

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64 + b"\xff\xd9"
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


class Inbox:
    """A signed-in socket on `/me` (or `/live`) recording the `notification` events it gets."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.got: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    @classmethod
    async def open(cls, api: Api, token: str | None, namespace: str = "/me",
                   session_id: int | None = None) -> Inbox:
        inbox = cls()

        def on_notification(data: dict[str, Any]) -> None:
            inbox.got.append(data)
            inbox.arrived.set()

        inbox.client.on("notification", on_notification, namespace=namespace)
        auth: dict[str, Any] = {"token": token} if token else {}
        if session_id is not None:
            auth["session_id"] = session_id
        await inbox.client.connect(str(api.client.make_url("/")), namespaces=[namespace], auth=auth,
                                   transports=["websocket"], socketio_path="socket.io",
                                   wait_timeout=10)
        return inbox

    async def wait_for(self, kind: str, within_s: float) -> dict[str, Any]:
        """The first notification of `kind`, waiting up to `within_s` for it."""
        async def first() -> dict[str, Any]:
            while True:
                found = [n for n in self.got if n["kind"] == kind]
                if found:
                    return found[0]
                self.arrived.clear()
                await self.arrived.wait()
        return await asyncio.wait_for(first(), within_s)

    async def close(self) -> None:
        await self.client.disconnect()


async def _get(api: Api, path: str, token: str, status: int = 200) -> Any:
    resp = await api.client.get(path, headers=api.auth(token))
    assert resp.status == status, await resp.text()
    return await resp.json()


async def _post(api: Api, path: str, token: str, body: Any = None, status: int = 200,
                method: str = "POST") -> Any:
    resp = await api.client.request(method, path, json=body, headers=api.auth(token))
    assert resp.status == status, await resp.text()
    return await resp.json()


def _has_offset(value: str) -> bool:
    return datetime.fromisoformat(value).utcoffset() is not None


async def test_order_notifications_are_private_listed_and_delivered(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    sale = await shop.sale(per_buyer_limit=5)
    buyer_id, buyer = await api.user("viewer")
    _, other = await api.user("viewer")
    mine = await Inbox.open(api, buyer)
    mine_live = await Inbox.open(api, buyer, "/live", shop.session_id)
    theirs = await Inbox.open(api, other)
    theirs_live = await Inbox.open(api, other, "/live", shop.session_id)
    try:
        orders = []
        for _ in range(3):
            status, held = await hold(api, sale["id"], buyer)
            assert status == 201, held
            status, paid = await pay(api, held["hold_id"], buyer)
            assert status in (200, 201), paid
            orders.append(int(paid["order_id"]))
        await _post(api, f"/api/orders/{orders[0]}/ready", shop.host_token)
        ready = await mine.wait_for("order_ready", 5)
        assert ready["params"]["order_id"] == orders[0]
        assert ready["params"]["product_name"] == "白沙枇杷"
        assert ready["read_at"] is None and _has_offset(ready["created_at"])
        # Also on the buyer's /live socket (the live page hears it without /me).
        assert (await mine_live.wait_for("order_ready", 5))["id"] == ready["id"]
        await _post(api, f"/api/orders/{orders[1]}/refund", shop.host_token, {})
        refunded = await mine.wait_for("order_refunded", 5)
        assert refunded["params"]["amount_fen"] == 1000
        await _post(api, f"/api/orders/{orders[2]}/ready", shop.host_token)
        await mine.wait_for("order_ready", 5)

        listed = await _get(api, "/api/notifications?limit=2", buyer)
        assert listed["unread"] == 3
        assert [n["kind"] for n in listed["items"]] == ["order_ready", "order_refunded"]
        assert listed["next"] is not None
        rest = await _get(api, f"/api/notifications?limit=2&before={listed['next']}", buyer)
        assert [n["kind"] for n in rest["items"]] == ["order_ready"] and rest["next"] is None
        ids = [n["id"] for n in listed["items"] + rest["items"]]
        assert ids == sorted(ids, reverse=True)

        # Another user: sees nothing, cannot mark mine read, received nothing live.
        assert await _get(api, "/api/notifications", other) == {"items": [], "next": None,
                                                                 "unread": 0}
        assert (await _post(api, "/api/notifications/read", other, {"ids": ids}))["updated"] == 0
        assert (await _get(api, "/api/notifications", buyer))["unread"] == 3
        await asyncio.sleep(0.3)
        assert theirs.got == [] and theirs_live.got == []

        done = await _post(api, "/api/notifications/read", buyer, {"ids": [ids[0]]})
        assert done == {"updated": 1, "unread": 2}
        done = await _post(api, "/api/notifications/read", buyer, {"all": True})
        assert done == {"updated": 2, "unread": 0}
        await _post(api, "/api/notifications/read", buyer, {}, status=400)
        for bad in ("limit=51", "limit=0", "limit=x", "before=-1"):
            await _get(api, f"/api/notifications?{bad}", buyer, status=400)
        resp = await api.client.get("/api/notifications")
        assert resp.status == 401
        assert buyer_id > 0
    finally:
        for inbox in (mine, mine_live, theirs, theirs_live):
            await inbox.close()


async def test_claim_decision_notifies_the_buyer(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    sale = await shop.sale()
    _, buyer = await api.user("viewer")
    _, assistant = await api.user("assistant")
    status, held = await hold(api, sale["id"], buyer)
    assert status == 201
    _, paid = await pay(api, held["hold_id"], buyer)
    order_id = int(paid["order_id"])
    code = (await _get(api, f"/api/orders/{order_id}", buyer))["pickup_code"]
    await _post(api, f"/api/orders/{order_id}/ready", shop.host_token)
    await _post(api, f"/api/orders/{order_id}/picked-up", shop.host_token, {"pickup_code": code})
    resp = await api.client.post("/api/uploads?purpose=claim", data=JPEG,
                                 headers={**api.auth(buyer), "Content-Type": "image/jpeg"})
    upload = await resp.json()
    claim = await _post(api, "/api/claims", buyer, {"order_id": order_id, "reason": "spoiled",
                                                     "photos": [upload["id"]]}, status=201)
    if claim["status"] == "pending":
        await _post(api, f"/api/claims/{claim['id']}/reject", assistant, {"note": "照片看不清"})
    listed = await _get(api, "/api/notifications", buyer)
    decided = [n for n in listed["items"] if n["kind"] == "claim_decided"]
    assert len(decided) == 1 and decided[0]["params"]["claim_id"] == claim["id"]
    assert decided[0]["params"]["status"] in ("approved", "rejected")


@pytest.mark.races
async def test_subscribe_twenty_at_once_is_one_row(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    _, fan = await api.user("viewer")
    path = f"/api/sessions/{shop.session_id}/subscribe"
    replies = await asyncio.gather(*(api.client.post(path, headers=api.auth(fan))
                                     for _ in range(20)))
    assert [r.status for r in replies] == [200] * 20, [await r.text() for r in replies]
    async with api.app[database_key].session() as db:
        assert await notifications.subscriber_count(db, shop.session_id) == 1
    preview = await _get(api, f"/api/sessions/{shop.session_id}/preview", fan)
    assert preview["subscribers"] == 1 and preview["subscribed"] is True
    anon = await (await api.client.get(f"/api/sessions/{shop.session_id}/preview")).json()
    assert anon["subscribed"] is False and anon["subscribers"] == 1
    # Cancelling is idempotent too.
    for _ in range(2):
        assert await _post(api, path, fan, method="DELETE") == {"subscribed": False,
                                                                "subscribers": 0}
    await _post(api, f"/api/sessions/{10**9}/subscribe", fan, status=404)


async def test_going_live_tells_each_subscriber_once(any_db_api: Api) -> None:
    api = any_db_api
    host_id, host = await api.user("host")
    made = await _post(api, "/api/sessions", host,
                       {"title": "今晚八点 枇杷专场", "scheduled_at": "2030-01-01T20:00:00+08:00"},
                       status=201)
    session_id, key = made["id"], made["stream_key"]
    _, fan = await api.user("viewer")
    _, stranger = await api.user("viewer")
    await _post(api, f"/api/sessions/{session_id}/subscribe", fan)
    fan_inbox = await Inbox.open(api, fan)
    stranger_inbox = await Inbox.open(api, stranger)
    pub = second = None
    try:
        pub = await publish(api.client, session_id, key)
        assert pub.status == 201, pub.body
        # A wait bounded at 2 s (the promise to the subscriber), not a measurement of speed.
        notice = await fan_inbox.wait_for("session_live", 2.0)
        assert notice["params"] == {"session_id": session_id, "title": "今晚八点 枇杷专场"}
        assert notice["link"] == f"/live/{session_id}"
        # The publisher reconnecting does not tell anyone again.
        second = await publish(api.client, session_id, key)
        assert second.status == 201
        await asyncio.sleep(0.5)
        assert [n["kind"] for n in fan_inbox.got] == ["session_live"]
        assert stranger_inbox.got == []
        assert (await _get(api, "/api/notifications", stranger))["items"] == []
        listed = await _get(api, "/api/notifications", fan)
        assert [n["kind"] for n in listed["items"]] == ["session_live"]
        # A live session takes no more 预约.
        resp = await api.client.post(f"/api/sessions/{session_id}/subscribe",
                                     headers=api.auth(stranger))
        assert resp.status == 409
        assert host_id > 0
    finally:
        for p in (pub, second):
            if p is not None:
                await p.pc.close()
        await fan_inbox.close()
        await stranger_inbox.close()


@pytest.mark.races
async def test_going_live_races_notify_once(any_db_api: Api) -> None:
    """Twenty "it is live" decisions at once (publishers in several processes): one wins."""
    api = any_db_api
    shop = await make_shop(api)
    _, fan = await api.user("viewer")
    await _post(api, f"/api/sessions/{shop.session_id}/subscribe", fan)
    from commerce import live_sessions

    async def go() -> bool:
        async with api.app[database_key].session() as db:
            return await live_sessions.mark_live(db, shop.session_id)

    results = await asyncio.gather(*(go() for _ in range(20)))
    assert results.count(True) == 1
    made = []
    for _ in range(3):
        async with api.app[database_key].session() as db:
            made += await notifications.notify_subscribers(db, shop.session_id, {"title": "x"})
    assert len(made) == 1


async def test_no_me_socket_without_a_token(api: Api) -> None:
    with pytest.raises(socketio.exceptions.ConnectionError):
        await Inbox.open(api, None)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await Inbox.open(api, "not-a-token")


async def test_preview_cover_products_and_time(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    _, other_host = await api.user("host")
    resp = await api.client.post("/api/uploads?purpose=cover", data=JPEG,
                                 headers={**api.auth(shop.host_token), "Content-Type": "image/jpeg"})
    assert resp.status == 201, await resp.text()
    cover = await resp.json()
    body = {"cover_upload_id": cover["id"], "preview_text": "现摘枇杷,前30名送桑葚",
            "scheduled_at": "2030-06-01T20:00:00+08:00", "product_ids": [shop.product_id]}
    path = f"/api/sessions/{shop.session_id}/preview"
    data = await _post(api, path, shop.host_token, body, method="PUT")
    assert data["cover_url"] == cover["url"]
    assert [p["name"] for p in data["products"]] == ["白沙枇杷"]
    assert datetime.fromisoformat(data["scheduled_at"]) == datetime.fromisoformat(
        "2030-06-01T12:00:00+00:00")
    assert _has_offset(data["scheduled_at"])
    # The cover is public now (anyone may see the preview).
    assert (await api.client.get(cover["url"])).status == 200
    # Not another host's session, nor another host's product; a time needs its offset.
    await _post(api, path, other_host, {"preview_text": "x"}, status=403, method="PUT")
    resp = await api.client.post("/api/products", json={"name": "橄榄油", "price_fen": 9000},
                                 headers=api.auth(other_host))
    foreign = (await resp.json())["id"]
    await _post(api, path, shop.host_token, {"product_ids": [foreign]}, status=403, method="PUT")
    await _post(api, path, shop.host_token, {"scheduled_at": "2030-06-01T20:00:00"}, status=400,
                method="PUT")
    resp = await api.client.post("/api/sessions", json={"title": "t", "scheduled_at": "2030-06-01T20:00"},
                                 headers=api.auth(shop.host_token))
    assert resp.status == 400
    # A PDF is a valid upload but no cover.
    resp = await api.client.post("/api/uploads?purpose=cover", data=PDF,
                                 headers={**api.auth(shop.host_token),
                                          "Content-Type": "application/pdf"})
    pdf = await resp.json()
    await _post(api, path, shop.host_token, {"cover_upload_id": pdf["id"]}, status=415, method="PUT")


async def test_interest_tags(any_db_api: Api) -> None:
    api = any_db_api
    _, me = await api.user("viewer")
    _, other = await api.user("viewer")
    start = await _get(api, "/api/me/tags", me)
    assert start["tags"] == [] and "baking" in start["choices"] and start["max"] == 5
    saved = await _post(api, "/api/me/tags", me, {"tags": ["parent", "baking", "baking"]},
                        method="PUT")
    assert saved["tags"] == ["baking", "parent"]
    assert (await _get(api, "/api/me/tags", other))["tags"] == []
    await _post(api, "/api/me/tags", me, {"tags": ["<script>"]}, status=400, method="PUT")
    await _post(api, "/api/me/tags", me, {"tags": list(start["choices"][:6])}, status=400,
                method="PUT")
    # Saves at once leave one consistent set, never an error.
    sets = [["senior"], ["fruit", "pets"], ["office"]] * 7
    replies = await asyncio.gather(*(api.client.put("/api/me/tags", json={"tags": s},
                                                    headers=api.auth(me)) for s in sets))
    assert {r.status for r in replies} == {200}
    final = (await _get(api, "/api/me/tags", me))["tags"]
    assert final in (["senior"], ["fruit", "pets"], ["office"])
    assert (await api.client.get("/api/me/tags")).status == 401


async def test_notification_reaches_the_users_socket_in_another_process(
        make_api: AppFactory, settings: Settings) -> None:
    """Two apps on one database and one Redis, as two workers: the event is published in A,
    the user's socket is held by B."""
    api_a = await make_api(settings)
    api_b = await make_api(settings)
    shop = await make_shop(api_a)
    sale = await shop.sale()
    _, buyer = await api_a.user("viewer")
    _, other = await api_a.user("viewer")
    mine = await Inbox.open(api_b, buyer)
    theirs = await Inbox.open(api_b, other)
    try:
        status, held = await hold(api_a, sale["id"], buyer)
        assert status == 201, held
        _, paid = await pay(api_a, held["hold_id"], buyer)
        await _post(api_a, f"/api/orders/{paid['order_id']}/ready", shop.host_token)
        notice = await mine.wait_for("order_ready", 5)
        assert notice["params"]["order_id"] == paid["order_id"]
        await asyncio.sleep(0.3)
        assert theirs.got == []
    finally:
        await mine.close()
        await theirs.close()


async def test_a_disabled_users_me_socket_is_closed(api: Api) -> None:
    user_id, token = await api.user("viewer")
    inbox = await Inbox.open(api, token)
    try:
        resp = await api.client.patch(f"/api/users/{user_id}", json={"disabled": True},
                                      headers=api.auth(api.admin_token))
        assert resp.status == 200, await resp.text()
        for _ in range(100):
            if not inbox.client.namespaces:
                break
            await asyncio.sleep(0.1)
        assert not inbox.client.namespaces, "the /me socket of a disabled user stayed open"
        with pytest.raises(socketio.exceptions.ConnectionError):
            await Inbox.open(api, token)
    finally:
        await inbox.close()
