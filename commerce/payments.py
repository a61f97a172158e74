"""Payments behind one interface; the built-in simulated provider pays at once.

A real provider (WeChat Pay, Alipay, ...) redirects the buyer and later calls us back; the
simulated one produces the same signed callback immediately, and both go through
`verify_callback`, so the callback path is exercised on every payment. Callbacks are
replay-safe: HMAC-signed, fresh (±5 minutes), each nonce accepted once, and confirming a hold
is idempotent anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from commerce.errors import DomainError

CALLBACK_MAX_AGE_S = 300
NONCE_PREFIX = "pay:nonce:"


class BadCallback(DomainError):
    code = "bad_payment_callback"
    status = 400
    default_message = "支付回调无效 / Invalid payment callback"


@dataclass(frozen=True)
class PaymentCallback:
    """What a provider tells us: this hold was paid with this reference and amount."""

    hold_id: str
    payment_ref: str
    amount_fen: int
    ts: int
    nonce: str
    signature: str = ""

    def signing_payload(self) -> bytes:
        fields = {k: v for k, v in asdict(self).items() if k != "signature"}
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class PaymentStart:
    """`callback` when the provider completed at once; else where to send the buyer."""

    payment_ref: str
    callback: PaymentCallback | None = None
    redirect_url: str | None = None


class PaymentProvider(Protocol):
    name: str

    async def start(self, hold_id: str, amount_fen: int) -> PaymentStart: ...

    async def verify_callback(self, data: dict[str, Any]) -> PaymentCallback: ...

    async def refund(self, payment_ref: str, amount_fen: int, reason: str) -> str: ...


class SimulatedProvider:
    """Pays every hold at once; signs its callbacks with a key derived from the app secret."""

    name = "simulated"

    def __init__(self, secret: str, redis: Redis | RedisCluster) -> None:
        self._key = hashlib.sha256(b"linli-payments:" + secret.encode()).digest()
        self._redis = redis

    def sign(self, callback: PaymentCallback) -> PaymentCallback:
        signature = hmac.new(self._key, callback.signing_payload(), hashlib.sha256).hexdigest()
        return PaymentCallback(**{**asdict(callback), "signature": signature})

    async def start(self, hold_id: str, amount_fen: int) -> PaymentStart:
        ref = "sim_" + secrets.token_hex(10)
        callback = self.sign(PaymentCallback(hold_id, ref, amount_fen, int(time.time()),
                                             secrets.token_hex(12)))
        return PaymentStart(payment_ref=ref, callback=callback)

    async def verify_callback(self, data: dict[str, Any]) -> PaymentCallback:
        try:
            callback = PaymentCallback(
                hold_id=str(data["hold_id"]), payment_ref=str(data["payment_ref"]),
                amount_fen=int(data["amount_fen"]), ts=int(data["ts"]), nonce=str(data["nonce"]),
                signature=str(data["signature"]),
            )
        except (KeyError, TypeError, ValueError):
            raise BadCallback(reason="malformed") from None
        expected = self.sign(callback).signature
        if not hmac.compare_digest(expected, callback.signature):
            raise BadCallback(reason="bad_signature")
        if abs(time.time() - callback.ts) > CALLBACK_MAX_AGE_S:
            raise BadCallback(reason="stale")
        fresh = await self._redis.set(NONCE_PREFIX + callback.nonce, callback.hold_id,
                                      nx=True, ex=CALLBACK_MAX_AGE_S * 2)
        if not fresh:
            raise BadCallback("重复的支付回调 / Replayed payment callback", reason="replayed")
        return callback

    async def refund(self, payment_ref: str, amount_fen: int, reason: str) -> str:
        return f"simrf_{secrets.token_hex(8)}"
