"""Passwords (argon2) and bearer tokens (JWT, HS256, with expiry)."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from commerce.accounts import Principal, Role
from commerce.errors import Unauthorized

_ALGORITHM = "HS256"
# Verified tokens kept per process. HS256 verification costs 120-230 us on a small VM, 15% of a
# worker's time in a flash sale (bench/RESULTS.md); a buyer sends the same token many times.
_VERIFIED_CACHE_SIZE = 8192


class Passwords:
    """argon2id hashing; verification never raises on a bad hash, it just says no."""

    def __init__(self, fast: bool = False) -> None:
        # `fast` is for test suites creating hundreds of buyers; never for production. The
        # smallest argon2id cost there is (64 KiB, one pass, one lane): ~0.06 ms a hash instead
        # of ~5 ms at 8 MiB, paid twice by every user a test makes (created, then logged in).
        self._hasher = (PasswordHasher(time_cost=1, memory_cost=64, parallelism=1) if fast
                        else PasswordHasher())

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False


@dataclass(frozen=True)
class TokenService:
    secret: str
    ttl_s: int
    issuer: str = "linli"
    # token -> (principal, exp, iat). Only tokens that passed full verification go in; a hit is
    # still checked against `exp` and the revocations, so caching never extends a token's life.
    _verified: OrderedDict[str, tuple[Principal, int, float]] = field(
        default_factory=OrderedDict, init=False, repr=False, compare=False
    )
    # user id -> epoch seconds: that user's tokens issued before it are refused (account
    # disabled or role changed). server/revocations.py keeps it in step across processes.
    revoked_before: dict[int, float] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def issue(self, principal: Principal, ttl_s: int | None = None) -> str:
        now = time.time()
        claims = {
            "sub": str(principal.user_id),
            "usr": principal.username,
            "role": principal.role.value,
            # Milliseconds (RFC 7519 allows a fraction): a token minted just after a revocation,
            # in the same second, must not look older than it.
            "iat": round(now, 3),
            "exp": int(now) + (ttl_s or self.ttl_s),
            "iss": self.issuer,
        }
        return jwt.encode(claims, self.secret, algorithm=_ALGORITHM)

    def verify(self, token: str) -> Principal:
        """The principal in a valid token; `Unauthorized` (401) for expired, forged or malformed."""
        cached = self._verified.get(token)
        if cached is not None and cached[1] > time.time():
            self._verified.move_to_end(token)
        else:
            if cached is not None:
                del self._verified[token]
            cached = self._decode(token)
            self._verified[token] = cached
            if len(self._verified) > _VERIFIED_CACHE_SIZE:
                self._verified.popitem(last=False)
        principal, _exp, issued = cached
        cutoff = self.revoked_before.get(principal.user_id)
        if cutoff is not None and issued < cutoff:
            raise Unauthorized("登录已失效，请重新登录 / Token revoked, sign in again",
                               reason="token_revoked")
        return principal

    def _decode(self, token: str) -> tuple[Principal, int, float]:
        try:
            claims = jwt.decode(
                token, self.secret, algorithms=[_ALGORITHM], issuer=self.issuer,
                options={"require": ["exp", "sub", "role"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("登录已过期 / Token expired", reason="token_expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("无效的令牌 / Invalid token", reason="token_invalid") from None
        try:
            principal = Principal(int(claims["sub"]), str(claims.get("usr", "")), Role(claims["role"]))
            return principal, int(claims["exp"]), float(claims.get("iat", 0))
        except (ValueError, KeyError, TypeError):
            raise Unauthorized("无效的令牌 / Invalid token", reason="token_invalid") from None


def bearer_token(header: str | None) -> str | None:
    """The token in an `Authorization: Bearer …` header, or None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
