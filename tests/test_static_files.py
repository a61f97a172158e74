"""Pages and static files over HTTP: gzip when the client asks for it (byte-for-byte the file once
inflated), the file as it is otherwise, revalidation with ETag and Last-Modified, HEAD, a memory
cache that stays within its size, and no way out of the served folders."""

from __future__ import annotations

import asyncio
import gzip
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from server.routes.pages import PAGES_DIR, WEB_DIR
from server.static_files import StaticFiles, accepts_gzip, add_folder, static_files_key
from tests.conftest import Api

# What a page of the live room loads: its HTML, its CSS and JavaScript, an SVG, a vendor module.
SERVED = {
    "/live/1": PAGES_DIR / "live.html",
    "/static/css/app.css": WEB_DIR / "static/css/app.css",
    "/static/js/live.js": WEB_DIR / "static/js/live.js",
    "/static/img/favicon.svg": WEB_DIR / "static/img/favicon.svg",
    "/vendor/socket.io/socket.io.esm.min.js":
        WEB_DIR / "node_modules/socket.io-client/dist/socket.io.esm.min.js",
}


@pytest.fixture
async def raw(api: Api) -> AsyncIterator[aiohttp.ClientSession]:
    """A client that shows the bytes as sent (no automatic inflating, no Accept-Encoding of its
    own), on the test app's server."""
    async with aiohttp.ClientSession(str(api.client.make_url("/")), auto_decompress=False,
                                     skip_auto_headers=["Accept-Encoding"]) as http:
        yield http


async def test_text_files_are_gzipped_for_clients_that_ask(raw: aiohttp.ClientSession) -> None:
    for url, path in SERVED.items():
        original = path.read_bytes()
        async with raw.get(url, headers={"Accept-Encoding": "gzip, deflate, br"}) as resp:
            assert resp.status == 200, url
            assert resp.headers["Content-Encoding"] == "gzip", url
            assert "Accept-Encoding" in resp.headers["Vary"], url
            body = await resp.read()
            assert int(resp.headers["Content-Length"]) == len(body)
        assert gzip.decompress(body) == original, url
        assert len(body) < len(original), url
        for refusal in ("identity", "gzip;q=0, *;q=0.5", None):
            sent = {} if refusal is None else {"Accept-Encoding": refusal}
            async with raw.get(url, headers=sent) as resp:
                assert resp.status == 200
                assert "Content-Encoding" not in resp.headers, (url, refusal)
                assert "Accept-Encoding" in resp.headers["Vary"]
                assert await resp.read() == original, (url, refusal)


async def test_pages_keep_their_security_headers_when_compressed(raw: aiohttp.ClientSession) -> None:
    async with raw.get("/orders", headers={"Accept-Encoding": "gzip"}) as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert gzip.decompress(await resp.read()) == (PAGES_DIR / "orders.html").read_bytes()


async def test_unchanged_files_answer_304(raw: aiohttp.ClientSession) -> None:
    url = "/static/js/live.js"
    async with raw.get(url, headers={"Accept-Encoding": "gzip"}) as resp:
        zipped_tag = resp.headers["ETag"]
        modified = resp.headers["Last-Modified"]
        # Unversioned URLs: a copy is reused only after asking (no long max-age, no immutable).
        assert resp.headers["Cache-Control"] == "no-cache"
    async with raw.get(url) as resp:
        plain_tag = resp.headers["ETag"]
    assert zipped_tag != plain_tag  # two representations, two tags

    async with raw.get(url, headers={"Accept-Encoding": "gzip", "If-None-Match": zipped_tag}) as resp:
        assert resp.status == 304 and await resp.read() == b""
        assert resp.headers["ETag"] == zipped_tag and "Accept-Encoding" in resp.headers["Vary"]
        assert resp.headers["Cache-Control"] == "no-cache"
    async with raw.get(url, headers={"If-None-Match": f'W/{plain_tag}, "other"'}) as resp:
        assert resp.status == 304
    # The gzip copy's tag does not validate the plain file, nor a stale tag anything.
    async with raw.get(url, headers={"If-None-Match": zipped_tag}) as resp:
        assert resp.status == 200 and "Content-Encoding" not in resp.headers
    async with raw.get(url, headers={"If-None-Match": '"0-0"', "If-Modified-Since": modified}) as resp:
        assert resp.status == 200  # If-None-Match wins over If-Modified-Since
    async with raw.get(url, headers={"If-Modified-Since": modified}) as resp:
        assert resp.status == 304
    async with raw.get(url, headers={"If-Modified-Since": "Thu, 01 Jan 2015 00:00:00 GMT"}) as resp:
        assert resp.status == 200


async def test_head_sends_the_headers_of_get_without_a_body(raw: aiohttp.ClientSession) -> None:
    for url in ("/static/css/app.css", "/vendor/socket.io/socket.io.esm.min.js"):
        async with raw.get(url, headers={"Accept-Encoding": "gzip"}) as resp:
            got = resp.headers
            length = len(await resp.read())
        async with raw.head(url, headers={"Accept-Encoding": "gzip"}) as resp:
            assert resp.status == 200
            assert await resp.read() == b""
            for name in ("Content-Encoding", "ETag", "Last-Modified", "Vary", "Cache-Control",
                         "Content-Type"):
                assert resp.headers[name] == got[name], (url, name)
            assert int(resp.headers["Content-Length"]) == length


async def test_nothing_outside_the_served_folders(raw: aiohttp.ClientSession) -> None:
    for url in ("/static/../../server/app.py", "/static/%2e%2e/%2e%2e/server/app.py",
                "/static/js/%2e%2e%2f%2e%2e%2f%2e%2e%2fpyproject.toml", "/static/js/",
                "/static//etc/passwd", "/static/js/nope.js", "/vendor/socket.io/../package.json",
                "/vendor/hls/%2e%2e/package.json"):
        async with raw.get(url) as resp:
            assert resp.status == 404, url
            assert (await resp.json())["error"]["code"] == "not_found", url


def test_accept_encoding_is_read_as_rfc_9110_says() -> None:
    assert accepts_gzip("gzip")
    assert accepts_gzip("br;q=1.0, gzip;q=0.8, *;q=0.1")
    assert accepts_gzip("*")
    assert accepts_gzip("x-gzip")
    assert not accepts_gzip("")
    assert not accepts_gzip("identity")
    assert not accepts_gzip("gzip;q=0")
    assert not accepts_gzip("*;q=0.5, gzip;q=0")
    assert not accepts_gzip("deflate, br")
    assert not accepts_gzip("gzip;q=nonsense")


@pytest.fixture
async def folder(tmp_path: Path) -> AsyncIterator[tuple[TestClient[web.Request, web.Application],
                                                        StaticFiles, Path]]:
    """A folder of our own served by the real serving code, with a 64 KiB cache."""
    root = tmp_path / "files"
    root.mkdir()
    app = web.Application()
    files = StaticFiles(cache_bytes=64 * 1024)
    app[static_files_key] = files
    add_folder(app, "/f", root, name="files")
    client = TestClient(TestServer(app), auto_decompress=False)
    await client.start_server()
    try:
        yield client, files, root
    finally:
        await client.close()


async def test_a_changed_file_is_served_anew(folder: tuple[TestClient[web.Request, web.Application],
                                                           StaticFiles, Path]) -> None:
    client, _, root = folder
    script = root / "a.js"
    script.write_text("export const a = 1;\n" * 50)
    first = await client.get("/f/a.js", headers={"Accept-Encoding": "gzip"})
    tag = first.headers["ETag"]
    assert gzip.decompress(await first.read()) == script.read_bytes()
    script.write_text("export const b = 2;\n" * 60)
    os.utime(script, ns=(1, 1_700_000_000_000_000_000))
    again = await client.get("/f/a.js", headers={"Accept-Encoding": "gzip", "If-None-Match": tag})
    assert again.status == 200 and again.headers["ETag"] != tag
    assert gzip.decompress(await again.read()) == script.read_bytes()


async def test_the_cache_stays_within_its_size(folder: tuple[TestClient[web.Request, web.Application],
                                                             StaticFiles, Path]) -> None:
    client, files, root = folder
    for i in range(40):  # ~4 KiB of text each: 40 would hold ~160 KiB, the cache 64 KiB
        (root / f"m{i}.css").write_text("".join(f".c{i}-{n} {{ color: #{n:06x}; }}\n"
                                                for n in range(4096 // 30)))
    # Twenty at once for one file (a crowd opening the room) and every file in turn.
    crowd = await asyncio.gather(*(client.get("/f/m0.css", headers={"Accept-Encoding": "gzip"})
                                   for _ in range(20)))
    bodies = {await r.read() for r in crowd}
    assert len(bodies) == 1 and gzip.decompress(bodies.pop()) == (root / "m0.css").read_bytes()
    for i in range(40):
        resp = await client.get(f"/f/m{i}.css", headers={"Accept-Encoding": "gzip"})
        assert gzip.decompress(await resp.read()) == (root / f"m{i}.css").read_bytes()
        assert files.cached_bytes <= files.cache_bytes
    assert files.cached_bytes > files.cache_bytes // 2  # it is used, not just bounded
    # A text file larger than an eighth of the cache goes out as it is, never compressed (it
    # could not be kept, and compressing it on every request is CPU anyone could make us spend).
    (root / "big.js.map").write_bytes(b'{"mappings": "' + b"AAAA;" * 2000 + b'"}')
    held = files.cached_bytes
    big = await client.get("/f/big.js.map", headers={"Accept-Encoding": "gzip"})
    assert big.status == 200 and "Content-Encoding" not in big.headers
    assert await big.read() == (root / "big.js.map").read_bytes()
    assert files.cached_bytes == held


async def test_other_files_are_sent_as_they_are(folder: tuple[TestClient[web.Request, web.Application],
                                                              StaticFiles, Path]) -> None:
    client, files, root = folder
    photo = root / "cover.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(2000))
    resp = await client.get("/f/cover.png", headers={"Accept-Encoding": "gzip"})
    assert resp.status == 200 and "Content-Encoding" not in resp.headers
    assert resp.headers["Content-Type"] == "image/png" and resp.headers["Cache-Control"] == "no-cache"
    assert await resp.read() == photo.read_bytes()
    again = await client.get("/f/cover.png", headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304
    assert files.cached_bytes == 0
