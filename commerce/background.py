"""A periodic background job with its own lifecycle (start/stop), like aiortc's media roles."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class PeriodicTask:
    """Runs `step()` forever; sleeps `idle_s` when it did nothing, else loops at once.

    `step` returns how much work it did. An exception is logged and retried after a pause, so
    a Redis or database hiccup never kills the sweeper for the life of the process.
    """

    def __init__(self, name: str, step: Callable[[], Awaitable[int]], idle_s: float,
                 error_pause_s: float = 1.0) -> None:
        self.name = name
        self._step = step
        self._idle_s = idle_s
        self._error_pause_s = error_pause_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            try:
                did = await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background step failed", extra={"task": self.name})
                await asyncio.sleep(self._error_pause_s)
                continue
            if not did:
                await asyncio.sleep(self._idle_s)
