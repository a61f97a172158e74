"""Handing a request to the process that holds what it is about (a reverse proxy).

A forwarded request carries `X-Linli-Forwarded: <timestamp>.<from>.<peer>.<mac>`, an HMAC of the
app secret over the request line and the original client's address, so it is believed only
from another process of this cluster: it is never forwarded again (no loops while ownership
moves) and its client address stands for the original one (rate limits and seat caps count the
client, not the forwarding process). Hop-by-hop headers are dropped both ways; everything else
(Authorization, Content-Type, Location, ETag, Link, ...) passes unchanged, as do status and body.
A WebSocket upgrade is proxied frame by frame.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import time

import aiohttp
from aiohttp import WSMsgType, web
from yarl import URL

log = logging.getLogger(__name__)

HEADER = "X-Linli-Forwarded"
MAX_SKEW_S = 60
# A long-poll waits up to ping_interval + ping_timeout on the owner; give it room.
READ_TIMEOUT_S = 90
CONNECT_TIMEOUT_S = 3

_HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", "Host", "Content-Length", HEADER,
    "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Extensions",
    "Sec-WebSocket-Accept", "Sec-WebSocket-Protocol",
))


class OwnerUnreachable(Exception):
    """The target process did not accept the connection: it is gone (or not yet listening)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class Signer:
    def __init__(self, secret: str, process_id: str) -> None:
        self._key = hashlib.sha256(b"linli-forward\0" + secret.encode()).digest()
        self.process_id = process_id

    def _mac(self, stamp: str, origin: str, peer: str, method: str, path_qs: str) -> str:
        message = "\n".join((stamp, origin, peer, method, path_qs)).encode()
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest())

    def sign(self, method: str, path_qs: str, peer: str) -> str:
        stamp = str(int(time.time()))
        peer_text = _b64(peer.encode())
        return ".".join((stamp, self.process_id, peer_text,
                         self._mac(stamp, self.process_id, peer_text, method, path_qs)))

    def verify(self, header: str, method: str, path_qs: str) -> str | None:
        """The original client's address if `header` is a fresh, valid mark; else None."""
        parts = header.split(".")
        if len(parts) != 4 or not parts[0].isdigit():
            return None
        stamp, origin, peer_text, mac = parts
        if abs(time.time() - int(stamp)) > MAX_SKEW_S:
            return None
        if not hmac.compare_digest(mac, self._mac(stamp, origin, peer_text, method, path_qs)):
            return None
        try:
            return base64.urlsafe_b64decode(peer_text + "=" * (-len(peer_text) % 4)).decode()
        except ValueError:
            return None


def _request_headers(request: web.Request, mark: str) -> dict[str, str]:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
    # The client's own choice of encodings: left out, the HTTP client here would ask for gzip
    # and the owner's compressed answer would reach a client that cannot read it.
    headers.setdefault("Accept-Encoding", request.headers.get("Accept-Encoding", "identity"))
    headers[HEADER] = mark
    return headers


class Forwarder:
    def __init__(self, signer: Signer) -> None:
        self.signer = signer
        self._session: aiohttp.ClientSession | None = None
        self.forwarded = 0
        self._in_flight: set[asyncio.Task[object]] = set()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                auto_decompress=False,
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=60),
                timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S,
                                              sock_read=READ_TIMEOUT_S),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def release(self) -> None:
        """Shutting down: end every request being forwarded now. A proxied websocket or a
        long-poll waits on another process, and the server's shutdown would wait for it."""
        for task in list(self._in_flight):
            task.cancel()

    def _track(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    def mark(self, request: web.Request) -> str:
        return self.signer.sign(request.method, request.raw_path, request.remote or "")

    async def forward(self, request: web.Request, base_url: str) -> web.StreamResponse:
        """Send `request` to the process at `base_url`; its answer is the answer.
        Raises OwnerUnreachable when the connection is refused (nothing was sent)."""
        self._track()
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._forward_websocket(request, base_url)
        body = await request.read() if request.body_exists else None
        headers = _request_headers(request, self.mark(request))
        for attempt in (1, 2):
            try:
                upstream = await self._client().request(
                    request.method, URL(base_url + request.raw_path, encoded=True),
                    headers=headers, data=body, allow_redirects=False)
                break
            except aiohttp.ClientConnectorError as exc:
                raise OwnerUnreachable(str(exc)) from exc
            except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
                # A pooled connection to a process that has just died: once more on a new
                # connection, which is then refused (or works, if it was a mere reset).
                if attempt == 2:
                    raise
        self.forwarded += 1
        async with upstream:
            payload = await upstream.read()
            response = web.Response(status=upstream.status, body=payload)
            for name, value in upstream.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    response.headers.add(name, value)
        return response

    async def _forward_websocket(self, request: web.Request, base_url: str) -> web.StreamResponse:
        headers = _request_headers(request, self.mark(request))
        try:
            upstream = await self._client().ws_connect(
                URL(base_url + request.raw_path, encoded=True), headers=headers, autoping=False,
                max_msg_size=0, timeout=aiohttp.ClientWSTimeout(ws_close=5))
        except aiohttp.ClientConnectorError as exc:
            raise OwnerUnreachable(str(exc)) from exc
        except aiohttp.WSServerHandshakeError as exc:
            return web.Response(status=exc.status or 502, text=exc.message or "")
        self.forwarded += 1
        downstream = web.WebSocketResponse(autoping=False, max_msg_size=0, compress=False)
        await downstream.prepare(request)
        up = asyncio.ensure_future(_pump(upstream, downstream))
        down = asyncio.ensure_future(_pump(downstream, upstream))
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
            with contextlib.suppress(Exception):
                await upstream.close()
            with contextlib.suppress(Exception):
                await downstream.close()
        return downstream


async def _pump(source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
                sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse) -> None:
    async for message in source:
        if message.type == WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type == WSMsgType.PING:
            await sink.ping(message.data)
        elif message.type == WSMsgType.PONG:
            await sink.pong(message.data)
        else:
            break
