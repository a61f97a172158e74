"""Helpers for realtime tests: a recording python-socketio client and room setup through the API."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import socketio

from tests.conftest import Api

LIVE_EVENTS = ("hello", "comments", "state", "reload", "questions", "question", "comment_deleted",
               "pinned", "unpinned", "refused", "muted", "unmuted", "banned", "event",
               "sale_opened", "sale_closed", "group_outcome", "session_ended", "question_rejected")
MOD_EVENTS = ("mod_state", "questions", "question", "mod_log", "refused")


@dataclass
class Recorder:
    """A socket.io client that records every event it receives, in order."""

    client: socketio.AsyncClient
    namespace: str
    events: list[tuple[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def of(self, name: str) -> list[Any]:
        return [data for event, data in self.events if event == name]

    def comments(self) -> list[dict[str, Any]]:
        return [c for batch in self.of("comments") for c in batch]

    async def wait(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; got {[e for e, _ in self.events][-20:]}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    async def call(self, event: str, data: Any) -> Any:
        return await self.client.call(event, data, namespace=self.namespace, timeout=10)

    async def close(self) -> None:
        await self.client.disconnect()


async def connect(url: str, namespace: str, auth: dict[str, Any],
                  transports: list[str] | None = None, http_session: Any = None) -> Recorder:
    client = socketio.AsyncClient(reconnection=False, http_session=http_session)
    recorder = Recorder(client, namespace)
    names = LIVE_EVENTS if namespace == "/live" else MOD_EVENTS
    for name in names:
        def handler(data: Any = None, _name: str = name) -> None:
            recorder.events.append((_name, data))
            recorder.changed.set()
        client.on(name, handler, namespace=namespace)
    await client.connect(url, namespaces=[namespace], auth=auth,
                         transports=transports or ["websocket"], socketio_path="socket.io",
                         wait_timeout=10)
    return recorder


async def refused_reason(url: str, namespace: str, auth: dict[str, Any]) -> Any:
    """Connect expecting a refusal; returns the reason dict the server gave."""
    client = socketio.AsyncClient(reconnection=False)
    reasons: list[Any] = []
    client.on("connect_error", lambda data=None: reasons.append(data), namespace=namespace)
    try:
        await client.connect(url, namespaces=[namespace], auth=auth, transports=["websocket"],
                             wait_timeout=10)
    except socketio.exceptions.ConnectionError:
        assert reasons, "refused without a reason"
        return reasons[0]["data"]
    finally:
        await client.disconnect()
    raise AssertionError("connection was accepted")


@dataclass
class Room:
    url: str
    session_id: int
    host_id: int
    host: str
    viewer_id: int
    viewer: str


async def make_room(api: Api) -> Room:
    host_id, host = await api.user("host")
    viewer_id, viewer = await api.user("viewer")
    resp = await api.client.post("/api/sessions", json={"title": "苹果直播"}, headers=api.auth(host))
    assert resp.status == 201, await resp.text()
    session_id = int((await resp.json())["id"])
    return Room(str(api.client.make_url("/")), session_id, host_id, host, viewer_id, viewer)
