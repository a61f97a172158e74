"""Redis connection pools the app opens, sharing one description of the client library.

redis-py names itself to the server (CLIENT SETINFO) on every new connection, and by default
looks its own version up in the installed packages' metadata each time: ~1 ms of parsing per
connection, paid again by every connection a crowd reconnecting opens. Read once here.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool
from redis.driver_info import DriverInfo

DRIVER_INFO = DriverInfo()


def blocking_pool(url: str, *, max_connections: int, timeout: float,
                  **options: Any) -> BlockingConnectionPool:
    """A pool whose callers wait (up to `timeout` s) for one of `max_connections` connections."""
    return BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=timeout,
                                           driver_info=DRIVER_INFO, **options)
