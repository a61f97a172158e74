"""The slice of RTMP a publisher needs: handshake, chunk streams, AMF0 commands.

Enough for ffmpeg, OBS and phone apps to `connect` / `createStream` / `publish` and send FLV
audio/video messages. Every size is bounded: a hostile client cannot make us allocate much.
"""

from __future__ import annotations

import asyncio
import os
import struct
from dataclasses import dataclass
from typing import Any

HANDSHAKE_SIZE = 1536
MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # a 4K keyframe fits; anything larger is an attack
MAX_CHUNK_SIZE = 1 << 24
MAX_CHUNK_STREAMS = 64
MAX_AMF_DEPTH = 8

MSG_SET_CHUNK_SIZE = 1
MSG_ABORT = 2
MSG_ACK = 3
MSG_USER_CONTROL = 4
MSG_WINDOW_ACK = 5
MSG_PEER_BANDWIDTH = 6
MSG_AUDIO = 8
MSG_VIDEO = 9
MSG_DATA_AMF3 = 15
MSG_COMMAND_AMF3 = 17
MSG_DATA_AMF0 = 18
MSG_COMMAND_AMF0 = 20


class RtmpError(Exception):
    """The peer broke the protocol or a limit; the connection is closed."""


@dataclass
class Message:
    type_id: int
    stream_id: int
    timestamp: int
    payload: bytes


# --- AMF0 ------------------------------------------------------------------------------------

class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise RtmpError("truncated AMF0 value")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk


def _read_value(r: _Reader, depth: int = 0) -> Any:
    if depth > MAX_AMF_DEPTH:
        raise RtmpError("AMF0 nesting too deep")
    marker = r.take(1)[0]
    if marker == 0x00:
        return struct.unpack(">d", r.take(8))[0]
    if marker == 0x01:
        return r.take(1)[0] != 0
    if marker == 0x02:
        (length,) = struct.unpack(">H", r.take(2))
        return r.take(length).decode("utf-8", "replace")
    if marker in (0x03, 0x08):
        if marker == 0x08:
            r.take(4)  # ECMA array count: advisory, the end marker is authoritative
        obj: dict[str, Any] = {}
        while True:
            (length,) = struct.unpack(">H", r.take(2))
            if length == 0 and r.data[r.pos:r.pos + 1] == b"\x09":
                r.take(1)
                return obj
            key = r.take(length).decode("utf-8", "replace")
            obj[key] = _read_value(r, depth + 1)
    if marker in (0x05, 0x06):
        return None
    if marker == 0x0A:
        (count,) = struct.unpack(">I", r.take(4))
        if count > 1024:
            raise RtmpError("AMF0 array too long")
        return [_read_value(r, depth + 1) for _ in range(count)]
    if marker == 0x0B:
        r.take(10)
        return None
    if marker == 0x0C:
        (length,) = struct.unpack(">I", r.take(4))
        return r.take(length).decode("utf-8", "replace")
    raise RtmpError(f"unsupported AMF0 marker {marker:#x}")


def amf0_decode(data: bytes) -> list[Any]:
    r = _Reader(data)
    values: list[Any] = []
    while r.pos < len(data) and len(values) < 32:
        values.append(_read_value(r))
    return values


def _encode_value(value: Any) -> bytes:
    if value is None:
        return b"\x05"
    if isinstance(value, bool):
        return b"\x01" + (b"\x01" if value else b"\x00")
    if isinstance(value, int | float):
        return b"\x00" + struct.pack(">d", float(value))
    if isinstance(value, str):
        raw = value.encode()
        return b"\x02" + struct.pack(">H", len(raw)) + raw
    if isinstance(value, dict):
        body = b"".join(struct.pack(">H", len(k.encode())) + k.encode() + _encode_value(v)
                        for k, v in value.items())
        return b"\x03" + body + b"\x00\x00\x09"
    raise TypeError(f"cannot AMF0-encode {type(value).__name__}")


def amf0_encode(*values: Any) -> bytes:
    return b"".join(_encode_value(v) for v in values)


# --- handshake and chunks ----------------------------------------------------------------------

async def server_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Plain (unsigned) handshake: clients that publish do not verify the server's digest."""
    c0c1 = await reader.readexactly(1 + HANDSHAKE_SIZE)
    if c0c1[0] != 3:
        raise RtmpError("not RTMP (version byte)")
    s1 = struct.pack(">II", 0, 0) + os.urandom(HANDSHAKE_SIZE - 8)
    writer.write(b"\x03" + s1 + c0c1[1:])
    await writer.drain()
    await reader.readexactly(HANDSHAKE_SIZE)


@dataclass
class _ChunkState:
    timestamp: int = 0
    delta: int = 0
    length: int = 0
    type_id: int = 0
    stream_id: int = 0
    extended: bool = False
    buffer: bytearray | None = None


class ChunkReader:
    """Reassembles messages from interleaved chunk streams."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self.chunk_size = 128
        self._states: dict[int, _ChunkState] = {}
        self.bytes_read = 0

    async def _read(self, n: int) -> bytes:
        data = await self._reader.readexactly(n)
        self.bytes_read += n
        return data

    async def read_message(self) -> Message:
        while True:
            message = await self._read_chunk()
            if message is None:
                continue
            if message.type_id == MSG_SET_CHUNK_SIZE:
                size = struct.unpack(">I", message.payload[:4])[0] & 0x7FFFFFFF
                if not 1 <= size <= MAX_CHUNK_SIZE:
                    raise RtmpError("bad chunk size")
                self.chunk_size = size
                continue
            if message.type_id == MSG_ABORT:
                csid = struct.unpack(">I", message.payload[:4])[0]
                if csid in self._states:
                    self._states[csid].buffer = None
                continue
            return message

    async def _read_chunk(self) -> Message | None:
        first = (await self._read(1))[0]
        fmt, csid = first >> 6, first & 0x3F
        if csid == 0:
            csid = 64 + (await self._read(1))[0]
        elif csid == 1:
            b = await self._read(2)
            csid = 64 + b[0] + b[1] * 256
        state = self._states.get(csid)
        if state is None:
            if len(self._states) >= MAX_CHUNK_STREAMS:
                raise RtmpError("too many chunk streams")
            if fmt != 0:
                raise RtmpError("chunk stream starts without a full header")
            state = self._states[csid] = _ChunkState()
        starting = state.buffer is None
        if fmt <= 2:
            header = await self._read((11, 7, 3)[fmt])
            ts = int.from_bytes(header[0:3], "big")
            if fmt <= 1:
                state.length = int.from_bytes(header[3:6], "big")
                state.type_id = header[6]
                if state.length > MAX_MESSAGE_BYTES:
                    raise RtmpError("message too large")
            if fmt == 0:
                state.stream_id = int.from_bytes(header[7:11], "little")
            state.extended = ts == 0xFFFFFF
            if state.extended:
                ts = int.from_bytes(await self._read(4), "big")
            if fmt == 0:
                state.timestamp, state.delta = ts, 0
            else:
                state.delta = ts
                state.timestamp = (state.timestamp + ts) & 0xFFFFFFFF
        else:
            if state.extended:
                await self._read(4)
            if starting:
                state.timestamp = (state.timestamp + state.delta) & 0xFFFFFFFF
        if starting:
            state.buffer = bytearray()
        assert state.buffer is not None
        take = min(self.chunk_size, state.length - len(state.buffer))
        if take > 0:
            state.buffer += await self._read(take)
        if len(state.buffer) < state.length:
            return None
        payload = bytes(state.buffer)
        state.buffer = None
        return Message(state.type_id, state.stream_id, state.timestamp, payload)


class ChunkWriter:
    """Serialises our (few, small) messages; the chunk size we announce is used for them."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.chunk_size = 128

    def send(self, csid: int, type_id: int, payload: bytes, stream_id: int = 0,
             timestamp: int = 0) -> None:
        header = bytes([csid & 0x3F]) + min(timestamp, 0xFFFFFF).to_bytes(3, "big")
        header += len(payload).to_bytes(3, "big") + bytes([type_id]) + stream_id.to_bytes(4, "little")
        out = bytearray(header)
        for offset in range(0, len(payload), self.chunk_size):
            if offset:
                out.append(0xC0 | (csid & 0x3F))
            out += payload[offset:offset + self.chunk_size]
        self._writer.write(bytes(out))

    def set_chunk_size(self, size: int) -> None:
        self.send(2, MSG_SET_CHUNK_SIZE, struct.pack(">I", size))
        self.chunk_size = size

    def control(self, type_id: int, payload: bytes) -> None:
        self.send(2, type_id, payload)

    def command(self, *values: Any, stream_id: int = 0) -> None:
        self.send(3 if stream_id == 0 else 5, MSG_COMMAND_AMF0, amf0_encode(*values), stream_id)

    async def drain(self) -> None:
        await self._writer.drain()


def flv_header(has_audio: bool, has_video: bool) -> bytes:
    flags = (0x04 if has_audio else 0) | (0x01 if has_video else 0)
    return b"FLV\x01" + bytes([flags]) + struct.pack(">I", 9) + struct.pack(">I", 0)


def flv_tag(type_id: int, timestamp: int, payload: bytes) -> bytes:
    ts = timestamp & 0xFFFFFFFF
    header = bytes([type_id]) + len(payload).to_bytes(3, "big") + (ts & 0xFFFFFF).to_bytes(3, "big")
    header += bytes([ts >> 24]) + b"\x00\x00\x00"
    return header + payload + struct.pack(">I", len(payload) + 11)
