"""Stopping a serving process: the signals that ask for it, and how long its steps took.

A worker gets Ctrl-C twice: a terminal signals the whole process group, and the main process
forwards what it gets to each worker (it must, for `docker stop`'s SIGTERM to the main
process alone). aiohttp's own handler raises GracefulExit for every signal, so the second one,
milliseconds later, would be raised inside the app's cleanup and cut it short: the peers,
recorders and database threads it leaves running keep the worker from ever exiting. Here the
first signal starts the stop; a repeat within `REPEAT_WINDOW_S` is that copy and is ignored; a
later one is an operator insisting, and the process leaves at once.

Each cleanup context's exit is timed; a slow one is logged by name, so a slow stop says
where its time went.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

# The main process forwards a signal within milliseconds; an operator's second Ctrl-C comes
# later than this.
REPEAT_WINDOW_S = 2.0
# A cleanup step slower than this is named in the log.
SLOW_STEP_S = 2.0
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """SIGINT/SIGTERM on `loop`: `requested` is set by the first."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.requested = asyncio.Event()
        self._first_at: float | None = None

    def install(self) -> None:
        for signum in _SIGNALS:
            self._loop.add_signal_handler(signum, self._on_signal, signum)

    def remove(self) -> None:
        for signum in _SIGNALS:
            self._loop.remove_signal_handler(signum)

    def _on_signal(self, signum: int) -> None:
        now = time.monotonic()
        if self._first_at is None:
            self._first_at = now
            log.info("stopping", extra={"signal": signal.Signals(signum).name})
            self.requested.set()
        elif now - self._first_at < REPEAT_WINDOW_S:
            log.info("already stopping", extra={"signal": signal.Signals(signum).name})
        else:
            log.warning("signalled again while stopping: leaving now, the stop unfinished",
                        extra={"signal": signal.Signals(signum).name,
                               "stopping_s": round(now - self._first_at, 1)})
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)


CleanupCallable = Callable[[web.Application], Any]


def time_cleanup_contexts(app: web.Application) -> None:
    """Before start-up: each of `app`'s cleanup contexts logs its exit when it is slow."""
    app.cleanup_ctx[:] = [_timed(callback) for callback in app.cleanup_ctx]


def _timed(callback: CleanupCallable) -> Callable[[web.Application], _TimedExit]:
    name = getattr(callback, "__qualname__", repr(callback))

    def enter(app: web.Application) -> _TimedExit:
        ctx = callback(app)
        if not isinstance(ctx, AbstractAsyncContextManager):
            # An async generator function, taken as aiohttp takes it.
            ctx = contextlib.asynccontextmanager(callback)(app)
        return _TimedExit(name, ctx)

    return enter


class _TimedExit(AbstractAsyncContextManager[None]):
    def __init__(self, name: str, inner: AbstractAsyncContextManager[None]) -> None:
        self._name = name
        self._inner = inner

    async def __aenter__(self) -> None:
        await self._inner.__aenter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool | None:
        started = time.monotonic()
        try:
            return await self._inner.__aexit__(exc_type, exc, tb)
        finally:
            took = time.monotonic() - started
            if took >= SLOW_STEP_S:
                log.warning("slow cleanup step", extra={"step": self._name,
                                                        "seconds": round(took, 1)})
