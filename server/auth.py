"""Passwords (argon2) and bearer tokens (JWT, HS256, with expiry)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from commerce.accounts import Principal, Role
from commerce.errors import Unauthorized

_ALGORITHM = "HS256"


class Passwords:
    """argon2id hashing; verification never raises on a bad hash, it just says no."""

    def __init__(self, fast: bool = False) -> None:
        # `fast` is for test suites creating hundreds of buyers; never for production.
        self._hasher = PasswordHasher(time_cost=1, memory_cost=8192) if fast else PasswordHasher()

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

    def issue(self, principal: Principal, ttl_s: int | None = None) -> str:
        now = int(time.time())
        claims = {
            "sub": str(principal.user_id),
            "usr": principal.username,
            "role": principal.role.value,
            "iat": now,
            "exp": now + (ttl_s or self.ttl_s),
            "iss": self.issuer,
        }
        return jwt.encode(claims, self.secret, algorithm=_ALGORITHM)

    def verify(self, token: str) -> Principal:
        """The principal in a valid token; `Unauthorized` (401) for expired, forged or malformed."""
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
            return Principal(int(claims["sub"]), str(claims.get("usr", "")), Role(claims["role"]))
        except (ValueError, KeyError):
            raise Unauthorized("无效的令牌 / Invalid token", reason="token_invalid") from None


def bearer_token(header: str | None) -> str | None:
    """The token in an `Authorization: Bearer …` header, or None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
