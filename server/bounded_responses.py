"""Responses that must reach the reader within a deadline, or the connection is cut.

aiohttp waits for a reader for ever: a client that requests an HLS segment and then stops
reading (or reads a byte a second) keeps its connection, its file descriptor and the response's
buffers for as long as it likes, and a few thousand such readers exhaust the process. Media
files are therefore sent under a deadline (settings: LINLI_MEDIA_SEND_TIMEOUT_S); past it the
transport is aborted and aiohttp treats the request as a client disconnect. Memory per reader
stays bounded meanwhile: a FileResponse goes out by sendfile (or 256 KiB chunks, each awaiting
drain), and playlists are a few KiB.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

log = logging.getLogger(__name__)

T = TypeVar("T")


class SlowReader(ConnectionResetError):
    """The reader did not take the response within its deadline (the connection is closed)."""


async def _within(request: web.BaseRequest, until: float, step: Awaitable[T]) -> T:
    try:
        async with asyncio.timeout_at(until):
            return await step
    except TimeoutError:
        transport = request.transport
        if transport is not None:
            transport.abort()
        log.debug("cut a slow media reader", extra={"path": request.path})
        # aiohttp's finish_response treats ConnectionError as "the client went away".
        raise SlowReader("reader too slow") from None


class BoundedFileResponse(web.FileResponse):
    """A file sent (headers and body) within `deadline_s`."""

    def __init__(self, path: Path, deadline_s: float, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self._deadline_s = deadline_s

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        # FileResponse sends the whole file (and its end) inside prepare.
        until = asyncio.get_running_loop().time() + self._deadline_s
        return await _within(request, until, super().prepare(request))


class BoundedResponse(web.Response):
    """An in-memory body whose sending (at write_eof) finishes within `deadline_s`."""

    def __init__(self, deadline_s: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._deadline_s = deadline_s
        self._request: web.BaseRequest | None = None
        self._until = 0.0

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self._request is None:
            self._request = request
            self._until = asyncio.get_running_loop().time() + self._deadline_s
        return await _within(request, self._until, super().prepare(request))

    async def write_eof(self, data: bytes = b"") -> None:
        if self._request is None:
            await super().write_eof(data)
            return
        await _within(self._request, self._until, super().write_eof(data))
