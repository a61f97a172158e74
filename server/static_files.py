"""Pages and static files, gzip-compressed once and kept in a bounded memory cache.

A phone on a slow network pays for every byte of the live room's JavaScript and CSS; text
compresses four- to eightfold. Each text file is compressed on its first request (in a thread,
once however many ask at the same moment) and kept while it is unchanged (its mtime and size are
checked on every request), within `CACHE_BYTES` in all, least recently used first out.

Validation: the URLs carry no version, so a browser must ask again before reusing a copy
(`Cache-Control: no-cache`); an unchanged file answers 304 from its ETag (one per encoding, as
RFC 9110 wants for different representations) or its Last-Modified. `Vary: Accept-Encoding`
keeps shared caches from handing gzip to a client that did not ask for it.
"""

from __future__ import annotations

import asyncio
import gzip
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

from aiohttp import hdrs, web

from commerce.errors import NotFound

CACHE_BYTES = 16 * 1024 * 1024  # all cached bodies of one app, identity and gzip together
GZIP_LEVEL = 9  # paid once per file version, not per request
CACHE_CONTROL = "no-cache"  # unversioned URLs: reuse only after revalidating (304)

TEXT_TYPES = {
    ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript",
    ".css": "text/css", ".svg": "image/svg+xml", ".json": "application/json",
    ".map": "application/json", ".txt": "text/plain", ".webmanifest": "application/manifest+json",
}


@dataclass(frozen=True)
class Version:
    """A file as it is on disk now; a different mtime or size is a different version."""

    path: Path
    mtime_ns: int
    size: int

    @property
    def tag(self) -> str:
        return f"{self.mtime_ns:x}-{self.size:x}"

    @property
    def last_modified(self) -> datetime:
        return datetime.fromtimestamp(self.mtime_ns // 1_000_000_000, UTC)


@dataclass(frozen=True)
class Bodies:
    identity: bytes
    gzip: bytes | None  # None when gzip would not be smaller

    @property
    def size(self) -> int:
        return len(self.identity) + len(self.gzip or b"")


def _compress(version: Version) -> Bodies:
    data = version.path.read_bytes()
    packed = gzip.compress(data, GZIP_LEVEL, mtime=0)
    return Bodies(data, packed if len(packed) < len(data) else None)


def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding header allows gzip (RFC 9110 §12.5.3: `q=0` refuses, `*`
    stands for any coding not named)."""
    named: dict[str, float] = {}
    for item in header.split(","):
        coding, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if coding.strip():
            named[coding.strip().lower()] = q
    for coding in ("gzip", "x-gzip"):
        if coding in named:
            return named[coding] > 0
    return named.get("*", 0.0) > 0


def _matches(if_none_match: str, etag: str) -> bool:
    """Weak comparison, as If-None-Match uses (RFC 9110 §13.1.2)."""
    wanted = etag.removeprefix("W/")
    for item in if_none_match.split(","):
        item = item.strip()
        if item == "*" or item.removeprefix("W/") == wanted:
            return True
    return False


def _not_modified_since(request: web.Request, version: Version) -> bool:
    raw = request.headers.get(hdrs.IF_MODIFIED_SINCE)
    if not raw:
        return False
    try:
        since = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return False
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return version.last_modified <= since


def current_version(path: Path) -> Version:
    """The file's version now. A stat of a local file takes microseconds and a thread hop per
    request would cost more, so it runs on the loop; reading and compressing go to a thread."""
    try:
        stat = path.stat()
    except OSError:
        raise NotFound() from None
    return Version(path, stat.st_mtime_ns, stat.st_size)


class StaticFiles:
    """One app's compressed-file cache and the responses built from it."""

    def __init__(self, cache_bytes: int = CACHE_BYTES) -> None:
        self.cache_bytes = cache_bytes
        # Larger text files (source maps) go out as they are, from disk: a file compressed but
        # not kept would be compressed again on every request, CPU anyone could make us spend.
        # Both bodies of a smaller one take at most twice its size, a quarter of the cache.
        self.max_compressed_file = cache_bytes // 8
        self.cached_bytes = 0
        self._cache: OrderedDict[Path, tuple[Version, Bodies]] = OrderedDict()
        self._loading: dict[Version, asyncio.Future[Bodies]] = {}

    async def bodies(self, version: Version) -> Bodies:
        hit = self._cache.get(version.path)
        if hit is not None and hit[0] == version:
            self._cache.move_to_end(version.path)
            return hit[1]
        loading = self._loading.get(version)
        if loading is None:
            loading = asyncio.ensure_future(asyncio.to_thread(_compress, version))
            self._loading[version] = loading
            loading.add_done_callback(lambda _: self._loading.pop(version, None))
        try:
            bodies = await asyncio.shield(loading)
        except OSError:
            raise NotFound() from None  # removed between its stat and its read
        self._keep(version, bodies)
        return bodies

    def _keep(self, version: Version, bodies: Bodies) -> None:
        old = self._cache.pop(version.path, None)
        if old is not None:
            self.cached_bytes -= old[1].size
        if bodies.size > self.cache_bytes // 4:
            return  # one file may not push out everything else (unreachable by max_compressed_file)
        while self._cache and self.cached_bytes + bodies.size > self.cache_bytes:
            _, (_, evicted) = self._cache.popitem(last=False)
            self.cached_bytes -= evicted.size
        self._cache[version.path] = (version, bodies)
        self.cached_bytes += bodies.size

    async def respond(self, request: web.Request, path: Path,
                      headers: Mapping[str, str] | None = None) -> web.StreamResponse:
        """The file at `path` (already checked to be one we serve) for GET or HEAD."""
        version = current_version(path)
        suffix = path.suffix.lower()
        sent = {**(headers or {}), hdrs.CACHE_CONTROL: CACHE_CONTROL}
        if suffix not in TEXT_TYPES or version.size > self.max_compressed_file:
            # aiohttp answers conditional and range requests for these itself.
            return web.FileResponse(path, headers=sent)
        bodies = await self.bodies(version)
        sent[hdrs.VARY] = hdrs.ACCEPT_ENCODING
        use_gzip = bodies.gzip is not None and accepts_gzip(
            request.headers.get(hdrs.ACCEPT_ENCODING, ""))
        etag = f'"{version.tag}-gz"' if use_gzip else f'"{version.tag}"'
        sent[hdrs.ETAG] = etag
        sent[hdrs.LAST_MODIFIED] = format_datetime(version.last_modified, usegmt=True)
        if_none_match = request.headers.get(hdrs.IF_NONE_MATCH)
        if (_matches(if_none_match, etag) if if_none_match is not None
                else _not_modified_since(request, version)):
            return web.Response(status=304, headers=sent)
        content_type = TEXT_TYPES[suffix]
        if use_gzip:
            sent[hdrs.CONTENT_ENCODING] = "gzip"
        return web.Response(body=bodies.gzip if use_gzip else bodies.identity,
                            content_type=content_type, charset="utf-8", headers=sent)


static_files_key = web.AppKey("static_files", StaticFiles)


def resolve_under(root: Path, relative: str) -> Path:
    """`relative` inside `root`, or NotFound: no way out of the folder (.., absolute paths,
    symlinks pointing elsewhere), no hidden files, files only."""
    if not relative or "\x00" in relative or relative.startswith("/"):
        raise NotFound()
    parts = relative.split("/")
    if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        raise NotFound()
    base = root.resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base) or not path.is_file():
        raise NotFound()
    return path


def add_folder(app: web.Application, prefix: str, root: Path, name: str) -> None:
    """Serve `root`'s files under `prefix` (GET and HEAD)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        path = resolve_under(root, request.match_info["path"])
        return await request.app[static_files_key].respond(request, path)

    handler.__name__ = f"static_{name}"
    app.router.add_get(prefix.rstrip("/") + "/{path:.+}", handler, name=name)
