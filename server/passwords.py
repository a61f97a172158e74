"""Password hashing off the event loop: argon2 is deliberately slow."""

from __future__ import annotations

import asyncio

from aiohttp import web

from server.auth import Passwords


class AsyncPasswords(Passwords):
    def __init__(self, fast: bool = False) -> None:
        super().__init__(fast)
        # Verified against when the username is unknown, so both paths take the same time.
        self.dummy_hash = self.hash("linli-no-such-user")

    async def hash_async(self, password: str) -> str:
        return await asyncio.to_thread(self.hash, password)

    async def verify_async(self, password_hash: str, password: str) -> bool:
        return await asyncio.to_thread(self.verify, password_hash, password)


passwords_key = web.AppKey("passwords", AsyncPasswords)
