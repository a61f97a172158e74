"""The serving listener: batches of connections accepted, silent connections closed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from server.listener import BatchAcceptSite


@pytest.fixture
async def site() -> AsyncIterator[BatchAcceptSite]:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="好")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    served = BatchAcceptSite(runner, "127.0.0.1", 0, backlog=1024, reuse_port=False,
                             header_timeout_s=0.5)
    await served.start()
    try:
        yield served
    finally:
        await runner.cleanup()


async def test_a_burst_of_connections_is_served(site: BatchAcceptSite) -> None:
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{site.port}", connector=connector) as http:
        async def get() -> str:
            async with http.get("/") as resp:
                assert resp.status == 200
                return await resp.text()

        answers = await asyncio.gather(*(get() for _ in range(300)))
    assert answers == ["好"] * 300
    assert site.listener.closed_silent == 0


async def test_a_connection_that_never_finishes_its_headers_is_closed(
        site: BatchAcceptSite) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: linli\r\nX-Slow: ")  # and then nothing more
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 10) == b""  # the server closed it
    writer.close()
    assert site.listener.closed_silent == 1


async def test_a_keep_alive_connection_outlives_the_header_timeout(site: BatchAcceptSite) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    request = b"GET / HTTP/1.1\r\nHost: linli\r\n\r\n"
    for _ in range(2):
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        assert (await reader.readexactly(length)).decode() == "好"
        await asyncio.sleep(1.0)  # twice the header timeout, idle between requests
    writer.close()
    assert site.listener.closed_silent == 0
