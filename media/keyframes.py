"""Keyframe requests to a publisher: many askers (viewers, HLS), at most one PLI per interval.

A request inside the interval is deferred to its end, never lost (leading and trailing edge):
a viewer that joins 0.1 s after another still gets its picture within the interval.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

MIN_INTERVAL_S = 0.5


class KeyframeThrottle:
    def __init__(self, send_pli: Callable[[], bool], interval_s: float = MIN_INTERVAL_S) -> None:
        self._send_pli = send_pli  # returns False when no publisher is connected
        self._interval = interval_s
        self._loop = asyncio.get_running_loop()
        self._last = -1e9
        self._pending: asyncio.TimerHandle | None = None
        self.requests = 0
        self.sent = 0

    def request(self) -> None:
        self.requests += 1
        if self._pending is not None:
            return
        wait = self._last + self._interval - self._loop.time()
        if wait <= 0:
            self._fire()
        else:
            self._pending = self._loop.call_later(wait, self._fire)

    def _fire(self) -> None:
        self._pending = None
        self._last = self._loop.time()
        if self._send_pli():
            self.sent += 1

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
