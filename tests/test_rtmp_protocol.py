"""The RTMP listener refuses what is not RTMP, and messages over the size limit, by closing."""

from __future__ import annotations

import asyncio
import os

import pytest

from infra.settings import Settings
from media.replay_keys import rtmp_key
from media.rtmp_protocol import HANDSHAKE_SIZE, MAX_MESSAGE_BYTES, RtmpError, amf0_decode, amf0_encode
from tests.conftest import AppFactory


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        while await asyncio.wait_for(reader.read(65536), 5):
            pass
    except ConnectionResetError:
        pass
    return True


async def test_listener_closes_on_garbage_and_oversized_messages(
    make_api: AppFactory, settings: Settings
) -> None:
    api = await make_api(settings.with_(rtmp_port=0))
    port = api.app[rtmp_key].port

    # An HTTP request on the RTMP port: wrong version byte, closed without a reply.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\n" + b"x" * HANDSHAKE_SIZE)
    await writer.drain()
    assert await reader.read(10) == b""
    writer.close()

    # A real handshake, then a message header announcing more than the limit.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x03" + os.urandom(HANDSHAKE_SIZE))
    s0s1s2 = await reader.readexactly(1 + 2 * HANDSHAKE_SIZE)
    assert s0s1s2[0] == 3
    writer.write(s0s1s2[1:1 + HANDSHAKE_SIZE])
    too_big = (MAX_MESSAGE_BYTES + 1).to_bytes(3, "big")
    writer.write(bytes([0x03]) + b"\x00\x00\x00" + too_big + bytes([20]) + b"\x00\x00\x00\x00")
    await writer.drain()
    assert await _closed_by_server(reader)
    writer.close()


def test_amf0_round_trip_and_bounds() -> None:
    payload = amf0_encode("connect", 1.0, {"app": "live", "flashVer": "FMLE/3.0"}, None, True)
    assert amf0_decode(payload) == ["connect", 1.0, {"app": "live", "flashVer": "FMLE/3.0"}, None, True]
    # Deeply nested objects are refused instead of recursing without bound.
    nested = b"\x03\x00\x01a" * 50
    with pytest.raises(RtmpError, match="deep"):
        amf0_decode(nested)
    with pytest.raises(RtmpError, match="truncated"):
        amf0_decode(b"\x02\x00\x10abc")
