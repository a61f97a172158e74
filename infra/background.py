"""A periodic background job with its own lifecycle (start/stop), like aiortc's media roles."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

# How long a stopping task gets before it is cancelled again.
RECANCEL_S = 1.0


async def cancel_and_wait(task: asyncio.Task[Any], recancel_s: float = RECANCEL_S) -> None:
    """Cancel `task` and wait until it has ended, cancelling it again every `recancel_s`.

    On Python 3.11 a cancellation that arrives as a `wait_for` inside the task finishes can be
    lost (CPython gh-86296; redis-py and SQLAlchemy wait that way), and a loop that lost it runs
    on: the app's shutdown then waited for it for ever (seen under load in CI). A cancellation
    of the caller itself still propagates.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=recancel_s)
    if not task.cancelled() and task.exception() is not None:
        log.warning("task failed while stopping", exc_info=task.exception(),
                    extra={"task": task.get_name()})


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
        self._stopping = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True  # a step that swallowed the cancellation ends the loop anyway
            await cancel_and_wait(task)

    async def _loop(self) -> None:
        while not self._stopping:
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
