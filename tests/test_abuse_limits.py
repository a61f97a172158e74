"""Abuse limits, each shown to bite: rate limits per user and per address (shared by processes
through Redis), login lockout with backoff, body size limits, and clients that stop reading
(a Socket.IO consumer and an HLS segment reader) being cut off while others carry on."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import socketio
from redis.asyncio import Redis

from commerce.errors import RateLimited
from infra.settings import Settings, SettingsError
from media.recordings import recordings_key
from server.rate_limits import RateLimiter, Rule
from server.realtime_component import hub_key
from tests.commerce_support import bulk_buyers, hold, make_shop
from tests.conftest import Api, AppFactory
from tests.realtime_support import connect, make_room

NAT = "203.0.113.7"  # documentation addresses (RFC 5737): one 小区 behind one NAT ...
OTHER = "198.51.100.20"  # ... and somebody else


def xff(ip: str) -> dict[str, str]:
    """The test client is on loopback, a trusted proxy by default: it may say who the client is."""
    return {"X-Forwarded-For": ip}


# --- the limiter itself ---------------------------------------------------------------------

def limiter(**changes: Any) -> RateLimiter:
    return RateLimiter(Settings(secret_key="x" * 32).with_(**changes))


async def test_a_request_during_a_sync_still_sees_the_batch_being_sent(redis_url: str) -> None:
    """While the counts admitted here travel to Redis, they still count: the sixth request on a
    limit of five, arriving while the sync waits for Redis, is refused."""
    rl = limiter(rate_limit_exempt=())
    rl.redis = Redis.from_url(redis_url)
    rule = Rule("during_sync", 5, 60, "ip")
    try:
        for _ in range(5):
            rl.hit([(rule, NAT)])
        syncing = asyncio.create_task(rl.sync())
        await asyncio.sleep(0)  # the sync has taken the batch and waits on Redis
        with pytest.raises(RateLimited):
            rl.hit([(rule, NAT)])
        await syncing
        with pytest.raises(RateLimited):
            rl.hit([(rule, NAT)])
    finally:
        await rl.redis.aclose()


def test_sliding_window_counts_the_previous_window_and_not_refusals() -> None:
    rl = limiter(rate_limit_exempt=())
    rule = Rule("t", 10, 10, "ip")
    start = 1_000_000.0  # a window boundary
    for _ in range(10):
        rl.hit([(rule, NAT)], now=start + 5)
    with pytest.raises(RateLimited) as refused:
        rl.hit([(rule, NAT)], now=start + 5)
    # From the next window on, the 10 count less and less: room for one 1 s after it starts.
    assert refused.value.details["retry_after"] == 6
    for _ in range(50):  # refusals are not counted
        with pytest.raises(RateLimited):
            rl.hit([(rule, NAT)], now=start + 6)
    # Half-way into the next window, half of the previous one still counts: 5 more get in.
    for _ in range(5):
        rl.hit([(rule, NAT)], now=start + 15)
    with pytest.raises(RateLimited) as refused:
        rl.hit([(rule, NAT)], now=start + 15)
    assert refused.value.details["retry_after"] == 1  # one request's worth frees up each second
    # Subjects and rules are independent; a disabled rule admits everything.
    rl.hit([(rule, OTHER)], now=start + 15)
    for _ in range(100):
        rl.hit([(Rule("t", 0, 10, "ip"), NAT)], now=start + 15)


def test_counters_two_windows_old_are_forgotten_unless_counts_wait_to_be_shared() -> None:
    """The sweep keeps memory bounded: a counter is forgotten once two windows have passed,
    but not while this process still holds counts of it that Redis has not seen."""
    rl = limiter()
    rule = Rule("t", 100, 10, "user")
    old = time.time() - 100
    rl.hit([(rule, "1"), (rule, "2")], now=old)
    rl.hit([(rule, "3")], now=time.time())  # recent: its time has not come
    shared = f"rl:t:user:1:{int(old // 10)}"
    rl._pending.pop(shared)  # as if a sync had carried it to Redis ...
    rl._known[shared] = 1  # ... and learned the total
    rl._sweep()
    assert sorted(key.split(":")[3] for key in rl._ttl) == ["2", "3"]
    assert shared not in rl._known
    rl._pending.clear()
    rl._swept = 0.0  # the next second's sweep
    rl._sweep()
    assert [key.split(":")[3] for key in rl._ttl] == ["3"]


def test_a_refused_check_counts_nothing_for_the_other_rules() -> None:
    rl = limiter(rate_limit_exempt=())
    user, ip = Rule("h", 100, 10, "user"), Rule("h", 2, 10, "ip")
    rl.hit([(user, "1"), (ip, NAT)], now=5.0)
    rl.hit([(user, "1"), (ip, NAT)], now=5.0)
    with pytest.raises(RateLimited) as refused:
        rl.hit([(user, "1"), (ip, NAT)], now=5.0)
    assert refused.value.details["reason"] == "h_per_ip"
    assert rl._count("rl:h:user:1:0") == 2


def test_client_address_trusts_forwarded_for_only_from_trusted_proxies() -> None:
    rl = limiter()
    # Directly connected clients cannot pick their address.
    assert rl.client_ip("192.0.2.5", "1.2.3.4") == "192.0.2.5"
    # Behind the local proxy: the right-most entry it appended; left ones are client-made.
    assert rl.client_ip("127.0.0.1", f"1.2.3.4, {NAT}") == NAT
    assert rl.client_ip("127.0.0.1", f"{NAT}, 127.0.0.1") == NAT
    assert rl.client_ip("127.0.0.1", "not-an-ip") == "127.0.0.1"
    assert rl.client_ip("::ffff:203.0.113.7", None) == NAT
    assert rl.client_ip(None, None) == "unknown"
    # Loopback is exempt from per-address limits (health checks, the bench, a local proxy).
    assert rl.is_exempt("127.0.0.1") and rl.is_exempt("::1") and not rl.is_exempt(NAT)
    untrusting = limiter(trusted_proxies=())
    assert untrusting.client_ip("127.0.0.1", NAT) == "127.0.0.1"


def test_limits_are_read_from_the_environment() -> None:
    env = {"LINLI_SECRET_KEY": "x" * 32, "LINLI_RATE_HOLDS_PER_USER": "30/5s",
           "LINLI_RATE_COMMENTS_PER_IP": "0", "LINLI_TRUSTED_PROXIES": "10.0.0.0/8",
           "LINLI_RATE_LIMITS": "off", "LINLI_SOCKET_MAX_QUEUED_BYTES": "65536"}
    settings = Settings.from_env(env)
    assert settings.rate_holds_per_user == (30, 5)
    assert settings.rate_comments_per_ip[0] == 0
    assert settings.trusted_proxies == ("10.0.0.0/8",) and settings.rate_limits is False
    assert settings.socket_max_queued_bytes == 65536
    defaults = Settings.from_env({"LINLI_SECRET_KEY": "x" * 32})
    assert defaults.rate_holds_per_user == (100, 10) and defaults.rate_limits is True
    for bad in ({"LINLI_RATE_HOLDS_PER_IP": "lots"}, {"LINLI_TRUSTED_PROXIES": "proxy.local"}):
        with pytest.raises(SettingsError, match=next(iter(bad))):
            Settings.from_env({"LINLI_SECRET_KEY": "x" * 32, **bad})


# --- holds ----------------------------------------------------------------------------------

async def _admit(rl: RateLimiter, rule: Rule, subject: str) -> bool:
    try:
        rl.hit([(rule, subject)])
    except RateLimited:
        return False
    return True


async def test_processes_together_exceed_a_limit_by_at_most_each_others_slack_plus_one(
        redis_url: str) -> None:
    """The worst case the module states for P processes: `limit + (P - 1) × (slack + 1)`.
    Two processes keep `slack` counts in the slow lane (far below the limit), a third fills the
    limit seeing only shared counts, then each of the two admits one more on its stale total
    before that count moves it to the fast lane and it learns. Random schedules stay within it."""
    import random

    rule = Rule("bound", 80, 600, "ip")
    assert rule.slack == 10
    clients = [Redis.from_url(redis_url) for _ in range(3)]
    try:
        async def fresh() -> list[RateLimiter]:
            for client in clients:
                await client.delete(*(await client.keys("rl:bound:*")) or ["rl:none"])
            limiters = []
            for client in clients:
                rl = limiter(rate_limit_exempt=())
                rl.redis = client
                limiters.append(rl)
            return limiters

        async def tick(limiters: list[RateLimiter]) -> None:
            for rl in limiters:
                await rl.sync(everything=False)

        async def total() -> int:
            (key,) = await clients[0].keys("rl:bound:*")
            return int(await clients[0].get(key) or 0)

        bound = rule.limit + 2 * (rule.slack + 1)
        slow_a, slow_b, filler = procs = await fresh()
        for rl in procs:  # everybody learns the counter once
            assert await _admit(rl, rule, NAT)
            await tick(procs)
        for rl in (slow_a, slow_b):
            for _ in range(rule.slack):
                assert await _admit(rl, rule, NAT)
                await tick(procs)
        assert await total() == 3  # the slow lane held them back
        while await _admit(filler, rule, NAT):
            await tick(procs)
        for rl in (slow_a, slow_b):
            assert await _admit(rl, rule, NAT)  # its stale total is far below the limit
            await tick(procs)
            assert not await _admit(rl, rule, NAT)  # now it knows
        for rl in procs:
            await rl.sync()
        assert await total() == bound

        rng = random.Random(18)
        for _ in range(20):
            procs = await fresh()
            for _step in range(400):
                rl = rng.choice(procs)
                await _admit(rl, rule, NAT)
                if rng.random() < 0.05:
                    await rng.choice(procs).sync()  # a slow tick somewhere
                await tick(procs)
            for rl in procs:
                await rl.sync()
            assert await total() <= bound
    finally:
        for client in clients:
            await client.aclose()


def assert_rate_limited(status: int, body: dict[str, Any], reason: str) -> None:
    assert status == 429, body
    assert body["error"]["code"] == "rate_limited" and body["error"]["reason"] == reason, body
    assert body["error"]["retry_after"] >= 1


async def test_holds_are_limited_per_buyer_and_per_address(make_api: AppFactory,
                                                           settings: Settings) -> None:
    api = await make_api(settings.with_(rate_holds_per_user=(3, 60), rate_holds_per_ip=(5, 60)))
    shop = await make_shop(api)
    sale = await shop.sale(stock=100, per_buyer_limit=10)
    (_a, a), (_b, b) = await bulk_buyers(api, 2)
    for _ in range(3):
        assert (await hold(api, sale["id"], a))[0] == 201
    resp = await api.client.post(f"/api/sales/{sale['id']}/holds", json={"qty": 1},
                                 headers={**api.auth(a), "Idempotency-Key": "k"})
    assert_rate_limited(resp.status, await resp.json(), "holds_per_user")
    assert int(resp.headers["Retry-After"]) >= 1
    assert (await hold(api, sale["id"], b))[0] == 201  # another buyer is not affected

    # Per address: two neighbours behind one NAT share its allowance (5), others do not.
    async def from_ip(token: str, ip: str) -> tuple[int, dict[str, Any]]:
        resp = await api.client.post(f"/api/sales/{sale['id']}/holds", json={"qty": 1},
                                     headers={**api.auth(token), **xff(ip),
                                              "Idempotency-Key": uuid.uuid4().hex})
        return resp.status, dict(await resp.json())

    (_c, c), (_d, d), (_e, e), (_f, f) = await bulk_buyers(api, 4)
    statuses = [(await from_ip(t, NAT))[0] for t in (c, c, d, d, e)]
    assert statuses == [201] * 5
    status, body = await from_ip(e, NAT)
    assert_rate_limited(status, body, "holds_per_ip")
    assert (await from_ip(f, OTHER))[0] == 201  # another address is open
    view = await (await api.client.get(f"/api/sales/{sale['id']}")).json()
    assert view["held"] == 3 + 1 + 5 + 1  # refused requests held nothing


async def test_hold_limits_are_shared_by_processes_through_redis(
        make_api: AppFactory, settings: Settings, redis_client: Redis) -> None:
    shared = settings.with_(rate_holds_per_user=(3, 60))
    first, second = await make_api(shared), await make_api(shared)  # same Redis, same SQL
    shop = await make_shop(first)
    sale = await shop.sale(stock=100, per_buyer_limit=10)
    ((_u, token),) = await bulk_buyers(first, 1)
    assert [(await hold(first, sale["id"], token))[0] for _ in range(3)] == [201] * 3
    assert (await hold(first, sale["id"], token))[0] == 429
    await asyncio.sleep(0.3)  # the first process has added its counts to Redis
    # The second process admits at most what it sees in one sync interval, then refuses.
    admitted = 0
    for _ in range(5):
        status, _body = await hold(second, sale["id"], token)
        admitted += status == 201
        await asyncio.sleep(0.15)
    assert admitted <= 1, admitted
    assert (await hold(second, sale["id"], token))[0] == 429
    # The shared counters expire on their own (two windows).
    keys = await redis_client.keys("rl:holds:user:*")
    ttls = [await redis_client.ttl(k) for k in keys]
    assert ttls and all(0 < ttl <= 121 for ttl in ttls), ttls


async def test_limits_can_be_turned_off_for_benchmarks(make_api: AppFactory,
                                                      settings: Settings) -> None:
    api = await make_api(settings.with_(rate_holds_per_user=(1, 60), rate_limits=False))
    shop = await make_shop(api)
    sale = await shop.sale(stock=100, per_buyer_limit=10)
    ((_u, token),) = await bulk_buyers(api, 1)
    assert [(await hold(api, sale["id"], token))[0] for _ in range(4)] == [201] * 4


# --- login ----------------------------------------------------------------------------------

async def login(api: Api, username: str, password: str, ip: str | None = None) -> Any:
    return await api.client.post("/api/auth/token", json={"username": username,
                                                          "password": password},
                                 headers=xff(ip) if ip else {})


async def test_login_lockout_backs_off_and_a_success_clears_it(api: Api,
                                                               redis_client: Redis) -> None:
    await api.user("viewer", "neighbour")
    for _ in range(5):
        assert (await login(api, "neighbour", "wrong")).status == 401
    waits = []
    for _ in range(3):
        resp = await login(api, "neighbour", "password-neighbour")
        assert resp.status == 429
        body = await resp.json()
        assert body["error"]["code"] == "rate_limited" and body["error"]["reason"] == "login_locked"
        waits.append(int(resp.headers["Retry-After"]))
        # Let the lock run out (instead of sleeping), then fail once more: the wait doubles.
        await redis_client.delete("login:lock:u:neighbour")
        assert (await login(api, "neighbour", "wrong")).status == 401
    assert waits == [2, 4, 8], waits
    await redis_client.delete("login:lock:u:neighbour")
    assert (await login(api, "neighbour", "password-neighbour")).status == 200
    # The success cleared the count: five fresh mistakes are allowed again.
    for _ in range(5):
        assert (await login(api, "neighbour", "wrong")).status == 401


async def test_login_per_address_lockout_and_attempt_rate(make_api: AppFactory,
                                                          settings: Settings) -> None:
    api = await make_api(settings.with_(login_free_failures_per_ip=3,
                                        rate_login_per_ip=(8, 60)))
    await api.user("viewer", "alice_x")
    # Guessing across many accounts from one address locks the address ...
    for name in ("u1", "u2", "u3"):
        assert (await login(api, name, "guess", NAT)).status == 401
    resp = await login(api, "alice_x", "password-alice_x", NAT)
    assert resp.status == 429 and (await resp.json())["error"]["reason"] == "login_locked"
    # ... not other addresses, and not loopback (exempt: health checks, a local proxy).
    assert (await login(api, "alice_x", "password-alice_x", OTHER)).status == 200
    for name in ("u1", "u2", "u3", "u4"):
        assert (await login(api, name, "guess")).status == 401
    assert (await login(api, "alice_x", "password-alice_x")).status == 200
    # Every attempt (right or wrong) costs an argon2 hash: at most 8 a minute per address.
    codes = [(await login(api, "alice_x", "password-alice_x", OTHER)).status for _ in range(8)]
    assert codes == [200] * 7 + [429], codes
    resp = await login(api, "alice_x", "password-alice_x", OTHER)
    assert (await resp.json())["error"]["reason"] == "login_per_ip"
    assert int(resp.headers["Retry-After"]) >= 1


# --- Socket.IO: comments and joins per address ----------------------------------------------

async def sio_from(url: str, auth: dict[str, Any], ip: str) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, namespaces=["/live"], auth=auth, headers=xff(ip),
                         transports=["websocket"], wait_timeout=10)
    return client


async def test_comments_are_limited_per_address(make_api: AppFactory, settings: Settings) -> None:
    api = await make_api(settings.with_(rate_comments_per_ip=(3, 60)))
    room = await make_room(api)
    _, other_viewer = await api.user("viewer")
    auth = {"session_id": room.session_id}
    a = await sio_from(room.url, {**auth, "token": room.viewer}, NAT)
    b = await sio_from(room.url, {**auth, "token": other_viewer}, NAT)
    c = await sio_from(room.url, {**auth, "token": room.host}, OTHER)
    try:
        acks = [await s.call("comment", {"text": f"#{i}"}, namespace="/live", timeout=10)
                for i, s in enumerate((a, b, a, b))]
        assert [x["ok"] for x in acks] == [True, True, True, False]
        assert acks[3]["error"]["code"] == "rate_limited"
        assert acks[3]["error"]["reason"] == "comments_per_ip"
        ack = await c.call("comment", {"text": "别的小区"}, namespace="/live", timeout=10)
        assert ack["ok"], ack
    finally:
        for s in (a, b, c):
            await s.disconnect()


async def test_socket_joins_are_limited_per_address(make_api: AppFactory,
                                                    settings: Settings) -> None:
    api = await make_api(settings.with_(rate_socket_connects_per_ip=(2, 60)))
    room = await make_room(api)
    auth = {"session_id": room.session_id}
    joined = [await sio_from(room.url, auth, NAT) for _ in range(2)]
    refused = socketio.AsyncClient(reconnection=False)
    reasons: list[Any] = []
    refused.on("connect_error", lambda data=None: reasons.append(data), namespace="/live")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect(room.url, namespaces=["/live"], auth=auth, headers=xff(NAT),
                              transports=["websocket"], wait_timeout=10)
    await refused.disconnect()
    assert reasons and reasons[0]["data"]["code"] == "rate_limited"
    assert reasons[0]["data"]["retry_after"] >= 1
    other = await sio_from(room.url, auth, OTHER)
    for client in (*joined, other):
        await client.disconnect()


# --- sizes ----------------------------------------------------------------------------------

async def test_body_size_limits_are_413(make_api: AppFactory, settings: Settings) -> None:
    api = await make_api(settings.with_(max_body_bytes=4096, max_upload_bytes=8192))
    _, host = await api.user("host")
    big = json.dumps({"title": "x" * 5000}).encode()
    headers = {**api.auth(host), "Content-Type": "application/json"}
    resp = await api.client.post("/api/sessions", data=big, headers=headers)
    assert resp.status == 413 and (await resp.json())["error"]["code"] == "body_too_large"

    async def chunked() -> Any:  # no Content-Length: counted as it arrives
        for i in range(0, len(big), 1000):
            yield big[i:i + 1000]

    resp = await api.client.post("/api/sessions", data=chunked(), headers=headers)
    assert resp.status == 413
    small = await api.client.post("/api/sessions", json={"title": "小"}, headers=api.auth(host))
    assert small.status == 201
    # Uploads have their own, larger limit; a declared oversize is refused before reading.
    resp = await api.client.post("/api/uploads", data=b"\xff" * 9000,
                                 headers={**api.auth(host), "Content-Type": "image/jpeg"})
    assert resp.status == 413 and (await resp.json())["error"]["code"] == "upload_too_large"


# --- consumers that stop reading ------------------------------------------------------------

def _frame(payload: bytes) -> bytes:
    """A masked client → server WebSocket text frame (RFC 6455 §5.2)."""
    mask = os.urandom(4)
    size = len(payload)
    header = bytes([0x81, 0x80 | size]) if size < 126 else bytes([0x81, 0x80 | 126]) + size.to_bytes(2, "big")
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class StalledClient:
    """A raw socket with a tiny receive buffer that does a handshake, then never reads again."""

    def __init__(self, host: str, port: int | None) -> None:
        assert port is not None
        self.host, self.port = host, port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Set before connecting, so the advertised window stays small.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.setblocking(False)
        self.buf = b""

    async def open(self, request: bytes) -> None:
        loop = asyncio.get_running_loop()
        await loop.sock_connect(self.sock, (self.host, self.port))
        await loop.sock_sendall(self.sock, request)

    async def read_until(self, marker: bytes, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while marker not in self.buf:
                chunk = await loop.sock_recv(self.sock, 4096)
                assert chunk, "closed during the handshake"
                self.buf += chunk

    async def drain_until_closed(self, timeout: float = 10.0) -> int:  # noqa: ASYNC109
        """Read what is left; returns the bytes read before the server closed the connection."""
        loop = asyncio.get_running_loop()
        total = 0
        async with asyncio.timeout(timeout):
            while True:
                try:
                    chunk = await loop.sock_recv(self.sock, 65536)
                except ConnectionResetError:
                    return total
                if not chunk:
                    return total
                total += len(chunk)

    def close(self) -> None:
        self.sock.close()


@pytest.mark.slow
async def test_a_socket_client_that_stops_reading_is_dropped_others_keep_receiving(
        make_api: AppFactory, settings: Settings) -> None:
    api = await make_api(settings.with_(socket_max_queued_bytes=64 * 1024))
    hub = api.app[hub_key]
    room = await make_room(api)
    auth = {"session_id": room.session_id}
    reader = await connect(room.url, "/live", auth)
    notices: list[int] = []
    reader.client.on("notice", lambda data: notices.append(data["n"]), namespace="/live")
    await reader.wait(lambda: reader.of("state"))

    server = api.client.server
    stalled = StalledClient(server.host, server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    await stalled.open(
        f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {server.host}:{server.port}"
        f"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
    await stalled.read_until(b'"sid"')  # Engine.IO open packet
    await asyncio.get_running_loop().sock_sendall(
        stalled.sock, _frame(b"40/live," + json.dumps(auth).encode()))
    await stalled.read_until(b'"hello"')  # joined the room: from now on it never reads
    assert hub.rooms.count(room.session_id) == 2
    dropped = hub.sockets.dropped_slow
    try:
        # ~6 MB of room events (more than any kernel buffer), each its own frame.
        blob = "邻" * 3000
        for batch in range(12):
            await hub.history.append(room.session_id, *[
                {"ev": "notice", "n": batch * 50 + i, "blob": blob} for i in range(50)])
            await asyncio.sleep(0.05)
        for _ in range(150):
            if hub.rooms.count(room.session_id) == 1:
                break
            await asyncio.sleep(0.1)
        assert hub.rooms.count(room.session_id) == 1, "the stalled client was not dropped"
        assert hub.sockets.dropped_slow == dropped + 1
        # The reader that keeps up got every event, in order, and keeps receiving.
        await reader.wait(lambda: len(notices) >= 600, timeout=20)
        await hub.history.append(room.session_id, {"ev": "notice", "n": 600, "blob": ""})
        await reader.wait(lambda: notices[-1:] == [600], timeout=10)
        assert notices == list(range(601))
        # The stalled side finds its connection closed, far short of what was sent.
        received = await stalled.drain_until_closed()
        assert received < 3_000_000, received
    finally:
        stalled.close()
        await reader.close()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


async def test_an_hls_reader_that_stops_reading_is_cut_at_the_deadline(
        make_api: AppFactory, settings: Settings) -> None:
    api = await make_api(settings.with_(media_send_timeout_s=1))
    _, host = await api.user("host")
    resp = await api.client.post("/api/sessions", json={"title": "慢读者"}, headers=api.auth(host))
    session_id = (await resp.json())["id"]
    segment = os.urandom(16 * 1024 * 1024)  # bigger than the kernel's socket buffers
    _write(api.app[recordings_key].recording_dir(session_id) / "seg_000001.ts", segment)

    server = api.client.server
    stalled = StalledClient(server.host, server.port)
    await stalled.open(f"GET /hls/{session_id}/seg_000001.ts HTTP/1.1\r\n"
                       f"Host: {server.host}:{server.port}\r\n\r\n".encode())
    try:
        await stalled.read_until(b"\r\n\r\n")
        assert stalled.buf.startswith(b"HTTP/1.1 200")
        # Meanwhile a normal viewer fetches the same segment in full.
        started = time.monotonic()
        whole = await api.client.get(f"/hls/{session_id}/seg_000001.ts")
        assert whole.status == 200 and await whole.read() == segment
        await asyncio.sleep(max(0.0, 2.5 - (time.monotonic() - started)))  # past the deadline
        received = await stalled.drain_until_closed()
        assert received < len(segment) - 1024 * 1024, received
    finally:
        stalled.close()
