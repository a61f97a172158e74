"""Login throttling: after a few wrong passwords an account (and the address trying it) waits.

Backoff doubles per extra failure (2 s, 4 s, … up to 15 min); counters live in Redis so every
worker process agrees. A success clears the account's counter.
"""

from __future__ import annotations

from redis.asyncio import Redis

from commerce.errors import RateLimited

FREE_ATTEMPTS = 5
MAX_LOCK_S = 15 * 60
WINDOW_S = 60 * 60
# Per address the allowance is larger: a shared NAT (a whole 小区 on one IP) must not lock out.
# Settings override both (LINLI_LOGIN_FREE_FAILURES, LINLI_LOGIN_FREE_FAILURES_PER_IP).
FREE_ATTEMPTS_PER_IP = 100


def _lock_seconds(failures: int, free: int) -> int:
    if failures < free:
        return 0
    return int(min(MAX_LOCK_S, 2 ** (failures - free + 1)))


class LoginGuard:
    def __init__(self, redis: Redis, free_attempts: int = FREE_ATTEMPTS,
                 free_attempts_per_ip: int = FREE_ATTEMPTS_PER_IP,
                 limit_ip: bool = True) -> None:
        self.redis = redis
        self.free_attempts = free_attempts
        self.free_attempts_per_ip = free_attempts_per_ip
        # False for exempt addresses (loopback: health checks, a proxy without X-Forwarded-For).
        self.limit_ip = limit_ip

    @staticmethod
    def _keys(username: str, ip: str) -> tuple[str, str, str, str]:
        user = username.lower()[:64]
        return (f"login:fail:u:{user}", f"login:lock:u:{user}",
                f"login:fail:ip:{ip}", f"login:lock:ip:{ip}")

    async def check(self, username: str, ip: str) -> None:
        """Raise RateLimited (429 with retry_after) while the account or address is locked."""
        _, user_lock, _, ip_lock = self._keys(username, ip)
        ttls = [await self.redis.pttl(user_lock)]
        if self.limit_ip:
            ttls.append(await self.redis.pttl(ip_lock))
        wait_ms = max(ttls)
        if wait_ms > 0:
            raise RateLimited(
                "尝试次数过多,请稍后再试 / Too many attempts, try again later",
                # Rounded up: a client that waits Retry-After seconds finds the lock gone.
                reason="login_locked", retry_after=max(1, -(-wait_ms // 1000)),
            )

    async def failed(self, username: str, ip: str) -> None:
        user_fail, user_lock, ip_fail, ip_lock = self._keys(username, ip)
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(user_fail)
        pipe.expire(user_fail, WINDOW_S)
        pipe.incr(ip_fail)
        pipe.expire(ip_fail, WINDOW_S)
        user_failures, _, ip_failures, _ = await pipe.execute()
        for key, failures, free in ((user_lock, user_failures, self.free_attempts),
                                    (ip_lock, ip_failures, self.free_attempts_per_ip)):
            if key == ip_lock and not self.limit_ip:
                continue
            lock = _lock_seconds(int(failures), free)
            if lock:
                await self.redis.set(key, b"1", ex=lock)

    async def succeeded(self, username: str) -> None:
        user_fail, user_lock, _, _ = self._keys(username, "")
        await self.redis.delete(user_fail, user_lock)
