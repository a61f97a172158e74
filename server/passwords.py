"""Password hashing off the event loop: argon2 is deliberately slow."""

from __future__ import annotations

import asyncio
import functools

from aiohttp import web

from server.auth import Passwords


class AsyncPasswords(Passwords):
    def __init__(self, fast: bool = False) -> None:
        super().__init__(fast)
        # Verified against when the username is unknown, so both paths take the same time.
        self.dummy_hash = _dummy_hash(fast)

    async def hash_async(self, password: str) -> str:
        return await asyncio.to_thread(self.hash, password)

    async def verify_async(self, password_hash: str, password: str) -> bool:
        return await asyncio.to_thread(self.verify, password_hash, password)


@functools.cache
def _dummy_hash(fast: bool) -> str:
    """One per process and cost setting: a hash of a public string, made once (argon2 takes
    ~0.2 s; every app built in a process, each test's included, paid it again)."""
    return Passwords(fast).hash("linli-no-such-user")


passwords_key = web.AppKey("passwords", AsyncPasswords)
