"""Domain errors with stable codes; the server renders them as {"error": {code, message}}."""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    """Base of every error a client may see. `code` is stable; `message` is for humans (zh first)."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 400
    default_message: ClassVar[str] = "请求无法完成 / The request could not be completed"

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or self.default_message
        self.details = details
        super().__init__(self.message)


class NotFound(DomainError):
    code = "not_found"
    status = 404
    default_message = "找不到该资源 / Not found"


class Forbidden(DomainError):
    code = "forbidden"
    status = 403
    default_message = "没有权限 / Not allowed"


class Unauthorized(DomainError):
    code = "unauthorized"
    status = 401
    default_message = "请先登录 / Authentication required"


class Conflict(DomainError):
    code = "conflict"
    status = 409
    default_message = "状态冲突 / Conflict with the current state"


class InvalidInput(DomainError):
    code = "invalid_input"
    status = 400
    default_message = "输入有误 / Invalid input"


class InvalidState(DomainError):
    code = "invalid_state"
    status = 409
    default_message = "当前状态不允许该操作 / Not allowed in the current state"


class RateLimited(DomainError):
    code = "rate_limited"
    status = 429
    default_message = "操作太频繁,请稍后再试 / Too many requests, try again shortly"


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"
    status = 409
    default_message = ("该 Idempotency-Key 已用于内容不同的请求 / "
                       "This Idempotency-Key was already used for a request with a different body")
