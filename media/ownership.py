"""Who may run a session's media: with several processes, exactly one of them at a time.

The hub claims a session before it attaches a publisher and lets it go when the stream is
over; a claim refused means another process runs the stream (the request should have been
forwarded there, and is answered "try again" when it raced a change of owner). One process
alone owns everything (`SoleOwnership`); the cluster's owner leases are in cluster/media_owners.py.
"""

from __future__ import annotations

from typing import Protocol

from commerce.errors import DomainError


class Ownership(Protocol):
    async def claim(self, session_id: int) -> bool: ...

    async def release(self, session_id: int) -> None: ...


class SoleOwnership:
    async def claim(self, session_id: int) -> bool:
        return True

    async def release(self, session_id: int) -> None:
        return None


class MediaElsewhere(DomainError):
    code = "media_moving"
    status = 503
    default_message = "直播正在切换服务器,请稍后重试 / The stream is moving between servers, retry"
