"""Login throttling: after a few wrong passwords an account (and the address trying it) waits.

Backoff doubles per extra failure (2 s, 4 s, … up to 15 min); counters live in Redis so every
worker process agrees. An attempt takes a slot atomically *before* its password is checked
(`login_reserve.lua`), and attempts being checked count against the free failures: forty
guesses sent at once reach argon2 only as many times as there are free failures left, the rest
are refused. The outcome (`login_done.lua`) gives the slot back, counts a failure (locking from
the free-th one on) or, for a success, clears the account's count.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any, Literal

from redis.asyncio import Redis

from commerce.errors import RateLimited

FREE_ATTEMPTS = 5
MAX_LOCK_S = 15 * 60
WINDOW_S = 60 * 60
# Per address the allowance is larger: a shared NAT (a whole 小区 on one IP) must not lock out.
# Settings override both (LINLI_LOGIN_FREE_FAILURES, LINLI_LOGIN_FREE_FAILURES_PER_IP).
FREE_ATTEMPTS_PER_IP = 100
# An attempt's slot comes back by itself after this long if its worker died mid-check.
IN_FLIGHT_TTL_S = 30

Outcome = Literal["ok", "fail", "abort"]


@cache
def _source(name: str) -> str:
    return resources.files("server").joinpath(name).read_text(encoding="utf-8")


def _script(redis: Redis, name: str) -> Any:
    return redis.register_script(_source(name))


class LoginGuard:
    def __init__(self, redis: Redis, free_attempts: int = FREE_ATTEMPTS,
                 free_attempts_per_ip: int = FREE_ATTEMPTS_PER_IP,
                 limit_ip: bool = True) -> None:
        self.redis = redis
        self.free_attempts = free_attempts
        self.free_attempts_per_ip = free_attempts_per_ip
        # False for exempt addresses (loopback: health checks, a proxy without X-Forwarded-For).
        self.limit_ip = limit_ip
        self._reserve = _script(redis, "login_reserve.lua")
        self._done = _script(redis, "login_done.lua")

    @staticmethod
    def _keys(username: str, ip: str) -> list[str]:
        user = username.lower()[:64]
        return [f"login:fail:u:{user}", f"login:lock:u:{user}", f"login:busy:u:{user}",
                f"login:fail:ip:{ip}", f"login:lock:ip:{ip}", f"login:busy:ip:{ip}"]

    async def reserve(self, username: str, ip: str) -> None:
        """Take an attempt slot, or raise RateLimited (429 with retry_after) while the account
        or the address is locked or its free attempts are all being checked. Every slot taken
        must be ended with `done`."""
        result = await self._reserve(
            keys=self._keys(username, ip),
            args=[self.free_attempts, self.free_attempts_per_ip, "1" if self.limit_ip else "0",
                  IN_FLIGHT_TTL_S],
        )
        if int(result[0]) == 1:
            return
        wait_ms = int(result[1])
        raise RateLimited(
            "尝试次数过多,请稍后再试 / Too many attempts, try again later",
            # Rounded up: a client that waits Retry-After seconds finds the lock gone.
            reason="login_locked", retry_after=max(1, -(-wait_ms // 1000)),
        )

    async def done(self, username: str, ip: str, outcome: Outcome) -> None:
        """End a reserved attempt: `fail` counts it, `ok` clears the account's count, `abort`
        (no verdict) only gives the slot back."""
        await self._done(
            keys=self._keys(username, ip),
            args=[outcome, self.free_attempts, self.free_attempts_per_ip,
                  "1" if self.limit_ip else "0", WINDOW_S, MAX_LOCK_S],
        )
