"""The fast path's reliance on python-engineio internals (realtime/transport.py), checked for real:
websocket clients are written to directly, polling clients through their queue, both in order."""

from __future__ import annotations

import asyncio

import engineio
from engineio.async_drivers import aiohttp as eio_aiohttp

from realtime.transport import Frame, ws_text_frame
from server.realtime_component import hub_key
from tests.conftest import Api
from tests.realtime_support import connect, make_room


def test_frame_encoding() -> None:
    frame = Frame("/live", "comments", [{"text": "好"}])
    assert frame.text == '2/live,["comments",[{"text":"好"}]]'
    payload = ("4" + frame.text).encode()
    assert frame.ws == bytes([0x81, len(payload)]) + payload
    assert ws_text_frame(b"x" * 200)[:4] == bytes([0x81, 126, 0, 200])
    assert ws_text_frame(b"x" * 70000)[:2] == bytes([0x81, 127])
    assert frame.eio_packet.encode() == "4" + frame.text


def test_engineio_internals_we_rely_on_exist() -> None:
    assert hasattr(eio_aiohttp, "WebSocket") and "websocket" in eio_aiohttp._async
    assert hasattr(engineio.async_socket.AsyncSocket, "_websocket_handler")


async def test_websocket_clients_direct_polling_clients_queued(api: Api) -> None:
    hub = api.app[hub_key]
    room = await make_room(api)
    auth = {"session_id": room.session_id}
    fast = [await connect(room.url, "/live", auth) for _ in range(3)]
    slow = await connect(room.url, "/live", auth, transports=["polling"])
    sender = await connect(room.url, "/live", {**auth, "token": room.viewer})
    try:
        for client in [*fast, slow, sender]:
            await client.wait(lambda c=client: c.of("state"))
        direct, queued = hub.sockets.direct_writes, hub.sockets.queued_writes
        for i in range(5):
            assert (await sender.call("comment", {"text": f"#{i}"}))["ok"]
        want = [f"#{i}" for i in range(5)]
        for client in [*fast, slow]:
            await client.wait(lambda c=client: [x["text"] for x in c.comments()] == want)
        assert hub.sockets.direct_writes - direct >= 4  # 3 watchers + sender, ≥ 1 batch each
        assert hub.sockets.queued_writes - queued >= 1  # the polling client
        assert set(hub.sockets.by_eio_sid)  # websocket sockets are tracked ...
    finally:
        for client in [*fast, slow, sender]:
            await client.close()
    for _ in range(50):  # ... and forgotten when they close
        if not hub.sockets.by_eio_sid:
            break
        await asyncio.sleep(0.1)
    assert not hub.sockets.by_eio_sid
