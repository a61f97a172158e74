"""The app's Redis pools describe the client library once, not once per connection."""

from __future__ import annotations

from redis.asyncio import Redis

from infra.redis_pools import DRIVER_INFO, blocking_pool


async def test_connections_share_one_driver_description(redis_url: str) -> None:
    client = Redis(connection_pool=blocking_pool(redis_url, max_connections=4, timeout=1))
    try:
        connection = client.connection_pool.make_connection()
        # The same object for every connection: nothing read from package metadata per connection.
        assert connection.driver_info is DRIVER_INFO
        assert DRIVER_INFO.formatted_name == "redis-py"
        assert await client.ping()
    finally:
        await client.aclose()
