"""The official socket.io JS client (web/node_modules, from the npm registry) works unmodified."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import IN_CI, Api
from tests.realtime_support import connect, make_room

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "tests" / "js" / "live_client.mjs"


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (ROOT / "web/node_modules/socket.io-client").exists():
        if IN_CI:
            pytest.fail("node and web/node_modules (cd web && npm ci) are required in CI")
        pytest.skip("node or web/node_modules missing (cd web && npm ci)")
    return node


async def test_official_js_client_joins_sends_and_receives(api: Api) -> None:
    node = _node()
    room = await make_room(api)
    watcher = await connect(room.url, "/live", {"session_id": room.session_id})
    try:
        proc = await asyncio.create_subprocess_exec(
            node, str(CLIENT), room.url.rstrip("/"), str(room.session_id), room.viewer, "来自浏览器的问候",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, (out, err)
        got = json.loads(out.decode().strip().splitlines()[-1])
        assert got["hello"]["session_id"] == room.session_id and got["hello"]["can_send"] is True
        assert got["transport"] == "websocket"
        assert got["ack"]["ok"] is True
        mine = [c for c in got["comments"] if c["text"] == "来自浏览器的问候"]
        assert mine[0]["seq"] == got["ack"]["seq"] and mine[0]["user"]["id"] == room.viewer_id
        # and a Python client in the same room saw it too
        seen = await watcher.wait(lambda: watcher.comments())
        assert seen[0]["text"] == "来自浏览器的问候"
    finally:
        await watcher.close()
