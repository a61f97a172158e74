"""What the namespaces take from the app: token verification and per-address rate limits.

The app hands in its own (server/auth.py's `TokenService`, server/rate_limits.py's
`RateLimiter`); realtime/ depends only on these shapes, never on the server package.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol, TypeVar

from commerce.accounts import Principal

RuleT = TypeVar("RuleT")


class TokenVerifier(Protocol):
    def verify(self, token: str) -> Principal:
        """The principal of a valid token; raises commerce.errors.Unauthorized otherwise."""
        ...


class AddressLimits(Protocol[RuleT]):
    """Per-address limits of socket connects and of comments and questions."""

    @property
    def connects_ip(self) -> RuleT: ...

    @property
    def comments_ip(self) -> RuleT: ...

    def environ_ip(self, environ: Mapping[str, object]) -> str:
        """The client address of a Socket.IO connection (its Engine.IO environ)."""
        ...

    def hit(self, checks: Iterable[tuple[RuleT, str]], now: float | None = None) -> None:
        """Admit one request under every (rule, address) or raise commerce.errors.RateLimited."""
        ...
