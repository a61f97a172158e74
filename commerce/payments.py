"""Payments behind one interface; the built-in simulated provider pays at once.

A real provider (WeChat Pay, Alipay, ...) redirects the buyer and later calls us back; the
simulated one produces the same signed callback immediately, and both go through
`verify_callback`, so the callback path is exercised on every payment. Callbacks are
replay-safe: HMAC-signed, fresh (±5 minutes), each nonce accepted once, and confirming a hold
is idempotent anyway.

Refunds carry an idempotency key derived from the business fact ("this order's full refund",
"the claim on this order", "this payment returned"), never a random one: a provider answers
the same key with the same refund, so a retried or duplicated call moves money once. The
simulated provider keeps that promise the way WeChat Pay (out_refund_no) and Stripe
(Idempotency-Key) do, and refuses a key reused for a different refund.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from commerce.errors import DomainError, InvalidInput

CALLBACK_MAX_AGE_S = 300
NONCE_PREFIX = "pay:nonce:"
REFUND_PREFIX = "pay:refund:"
REFUNDED_PREFIX = "pay:refunded:"
TRANSFER_PREFIX = "pay:transfer:"
TRANSFERRED_PREFIX = "pay:transferred:"
CHARGES_PREFIX = "pay:charges:"
BILL_PREFIX = "pay:bill:"
# The simulated bills are for development and demos: a week is enough to reconcile against.
BILL_KEEP_S = 7 * 24 * 3600
# Bills are per day in the providers' time zone.
BILL_ZONE = ZoneInfo("Asia/Shanghai")
# How long the simulated provider remembers a refund key (real providers: days to months).
REFUND_KEY_TTL_S = 90 * 24 * 3600


class BadCallback(DomainError):
    code = "bad_payment_callback"
    status = 400
    default_message = "支付回调无效 / Invalid payment callback"


class RefundKeyReused(DomainError):
    code = "refund_key_reused"
    status = 409
    default_message = ("该退款编号已用于另一笔退款 / This refund idempotency key was already used "
                       "for a different refund")


class UnknownProvider(InvalidInput):
    default_message = "不支持该支付方式 / This payment method is not offered"


class NoPayeeAccount(DomainError):
    """A transfer to a buyer whose account with the provider we do not know (she never signed
    in with WeChat nor paid from an account we saw): it waits until she links one."""

    code = "no_payee_account"
    status = 409
    default_message = ("没有可收款的账户，请绑定微信或支付宝后领取 / No account to pay this to: "
                       "link WeChat or Alipay to receive it")


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
class PayClient:
    """Who pays from where: a provider with several flows picks one from it (WeChat Pay: JSAPI
    inside WeChat's browser, H5 in another phone browser, a QR code on a desktop)."""

    user_id: int = 0
    user_agent: str = ""
    ip: str = ""
    # Where the buyer comes back to after paying in the provider's page.
    return_url: str = ""


@dataclass(frozen=True)
class PaymentStart:
    """`callback` when the provider completed at once; else how the buyer goes on paying:
    a page to open (`redirect_url`), a QR code to scan (`qr_text`), or the parameters of the
    in-browser payment sheet (`jsapi`, WeChat's `WeixinJSBridge.invoke("getBrandWCPayRequest")`)."""

    payment_ref: str
    callback: PaymentCallback | None = None
    redirect_url: str | None = None
    qr_text: str | None = None
    jsapi: dict[str, str] | None = None
    channel: str = ""


@dataclass(frozen=True)
class BillLine:
    """One line of a provider's daily bill (WeChat Pay 交易账单, Alipay 账单), as every provider's
    bill is read for reconciliation against our money ledger: `key` is our side's reference (the
    hold id a payment was started for, a refund's or transfer's idempotency key), `provider_ref`
    the provider's own; `at` an aware datetime."""

    kind: Literal["payment", "refund", "transfer"]
    key: str
    provider_ref: str
    amount_fen: int
    at: datetime


class PaymentProvider(Protocol):
    name: str

    async def start(self, hold_id: str, amount_fen: int,
                    client: PayClient | None = None) -> PaymentStart: ...

    async def verify_callback(self, data: dict[str, Any]) -> PaymentCallback: ...

    async def refund(self, payment_ref: str, amount_fen: int, reason: str,
                     idempotency_key: str) -> str:
        """Give `amount_fen` of the payment back; the same key always answers the same refund
        reference and moves the money once. Returns the provider's refund reference."""
        ...

    async def transfer(self, payee: str, amount_fen: int, reason: str,
                       idempotency_key: str) -> str:
        """Pay `amount_fen` to a buyer's own account, not against a payment: compensation
        beyond what an order cost (坏一赔十), as WeChat Pay's merchant transfer (商家转账) and
        Alipay's single transfer do. `payee` is `user:<id>`; a real provider resolves the
        buyer's account (openid, Alipay user id) from it. Same key, same transfer, once."""
        ...


# Optional capabilities. A provider has one when it has the method; the checkout asks with
# isinstance on these (runtime_checkable) protocols, and mypy checks every call through them.
# Each provider module states at its end, for mypy, which of them it fulfils.


@runtime_checkable
class BillingProvider(Protocol):
    """Reconciliation: the provider's own lines of one bill day (Asia/Shanghai), as its bill
    download states them."""

    name: str

    async def bill(self, day: date) -> list[BillLine]: ...


@runtime_checkable
class TransferLookup(Protocol):
    """A provider whose daily bill leaves transfers out (WeChat Pay's trade bill) answers, per
    transfer key, what its own transfer records say: a `BillLine` when the money reached the
    buyer, None when it has no such transfer or it failed."""

    name: str

    async def transfer_line(self, key: str) -> BillLine | None: ...


@runtime_checkable
class LapsingStart(Protocol):
    """Starts a payment that the provider itself closes when the hold lapses (`expires_ms`)."""

    async def start_until(self, hold_id: str, amount_fen: int, expires_ms: int | None,
                          client: PayClient | None = None) -> PaymentStart: ...


@runtime_checkable
class QrStart(Protocol):
    """Answers a code to scan for a buyer at a desktop (Alipay's precreate)."""

    async def start_qr(self, hold_id: str, amount_fen: int) -> str: ...


@runtime_checkable
class ClosingProvider(Protocol):
    """Closes its order for a hold given back, so it can no longer be paid; False when paid."""

    async def close(self, hold_id: str) -> bool: ...


@runtime_checkable
class PayerMemory(Protocol):
    """Remembers which of its accounts paid a buyer's hold, so her compensation can be
    transferred there even when she never signed in with that provider."""

    async def paid_by(self, user_id: int, hold_id: str) -> None: ...


def bill_of(provider: object) -> BillingProvider | None:
    """The provider as one that offers a daily bill, or None."""
    return provider if isinstance(provider, BillingProvider) else None


# What the pay sheet calls each provider.
LABELS = {"wechatpay": "微信支付 / WeChat Pay", "alipay": "支付宝 / Alipay",
          "simulated": "模拟支付 / Simulated"}


class PaymentProviders:
    """Every configured provider by name. The buyer chooses one to pay with; money going back
    (refunds, compensation) goes through the one that took the order's money, whatever the
    buyer would choose today. The first is the default for money whose provider is unknown
    (rows written before providers were recorded)."""

    def __init__(self, providers: Sequence[PaymentProvider]) -> None:
        if not providers:
            raise ValueError("at least one payment provider")
        self._by_name: dict[str, PaymentProvider] = {}
        for provider in providers:
            if provider.name in self._by_name:
                raise ValueError(f"provider {provider.name} twice")
            self._by_name[provider.name] = provider
        self.default: PaymentProvider = providers[0]

    def __iter__(self) -> Iterator[PaymentProvider]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def find(self, name: str) -> PaymentProvider | None:
        return self._by_name.get(name)

    def get(self, name: str) -> PaymentProvider:
        """The provider called `name`; UnknownProvider (400) when it is not configured."""
        found = self._by_name.get(name)
        if found is None:
            raise UnknownProvider(field="provider", reason="unknown_provider")
        return found

    def for_money(self, name: str) -> PaymentProvider:
        """The provider that took money recorded under `name` ("" when it was not recorded)."""
        return self._by_name[name] if name else self.default

    def preferred(self, client: PayClient | None) -> PaymentProvider:
        """Inside WeChat's browser WeChat Pay (WeChat blocks Alipay's pages there); elsewhere
        Alipay when offered (the phone's Alipay app opens from any browser); else the first."""
        inside_wechat = "micromessenger" in (client.user_agent if client else "").lower()
        for name in (("wechatpay", "alipay") if inside_wechat else ("alipay", "wechatpay")):
            if name in self._by_name:
                return self._by_name[name]
        return self.default

    def choose(self, wanted: str | None, client: PayClient | None) -> PaymentProvider:
        """The provider the buyer asked for, or the preferred one for where she is."""
        return self.get(wanted) if wanted else self.preferred(client)

    def offered(self, client: PayClient | None) -> list[dict[str, Any]]:
        """What the pay sheet lists: every provider, the preferred one first and marked."""
        first = self.preferred(client)
        ordered = [first, *(p for p in self if p is not first)]
        return [{"name": p.name, "label": LABELS.get(p.name, p.name), "preferred": p is first}
                for p in ordered]


def providers_of(target: PaymentProviders | PaymentProvider) -> PaymentProviders:
    """A lone provider (a test, a tool) as a registry of one."""
    return target if isinstance(target, PaymentProviders) else PaymentProviders([target])


def bill_day(at: datetime) -> date:
    return at.astimezone(BILL_ZONE).date()


class SimulatedProvider:
    """Pays every hold at once; signs its callbacks with a key derived from the app secret."""

    name = "simulated"

    def __init__(self, secret: str, redis: Redis | RedisCluster) -> None:
        self._key = hashlib.sha256(b"linli-payments:" + secret.encode()).digest()
        self._redis = redis

    def sign(self, callback: PaymentCallback) -> PaymentCallback:
        signature = hmac.new(self._key, callback.signing_payload(), hashlib.sha256).hexdigest()
        return PaymentCallback(**{**asdict(callback), "signature": signature})

    async def start(self, hold_id: str, amount_fen: int,
                    client: PayClient | None = None) -> PaymentStart:
        ref = "sim_" + secrets.token_hex(10)
        # What the buyer was charged, so a test can add up the money that moved for a hold.
        charges = CHARGES_PREFIX + hold_id
        await self._redis.hset(charges, ref, amount_fen)
        await self._redis.expire(charges, REFUND_KEY_TTL_S)
        await self._bill_line("payment", hold_id, ref, amount_fen)
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

    async def refund(self, payment_ref: str, amount_fen: int, reason: str,
                     idempotency_key: str) -> str:
        if not idempotency_key:
            raise ValueError("a refund needs an idempotency key")
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
        fresh: dict[str, Any] = {"ref": f"simrf_{secrets.token_hex(8)}",
                                 "payment_ref": payment_ref, "amount_fen": amount_fen}
        # SET NX is the provider's commit point: the first call with a key refunds, every
        # later one (a retry, a duplicate, a sweeper) reads that refund back.
        won = await self._redis.set(REFUND_PREFIX + digest, json.dumps(fresh), nx=True,
                                    ex=REFUND_KEY_TTL_S)
        if won:
            await self._redis.incrby(REFUNDED_PREFIX + payment_ref, amount_fen)
            await self._redis.expire(REFUNDED_PREFIX + payment_ref, REFUND_KEY_TTL_S)
            await self._bill_line("refund", idempotency_key, str(fresh["ref"]), amount_fen)
            return str(fresh["ref"])
        raw = await self._redis.get(REFUND_PREFIX + digest)
        first = json.loads(raw) if raw else fresh
        if first["payment_ref"] != payment_ref or int(first["amount_fen"]) != amount_fen:
            raise RefundKeyReused(key=idempotency_key)
        return str(first["ref"])

    async def transfer(self, payee: str, amount_fen: int, reason: str,
                       idempotency_key: str) -> str:
        if not idempotency_key:
            raise ValueError("a transfer needs an idempotency key")
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
        fresh: dict[str, Any] = {"ref": f"simtf_{secrets.token_hex(8)}", "payee": payee,
                                 "amount_fen": amount_fen}
        won = await self._redis.set(TRANSFER_PREFIX + digest, json.dumps(fresh), nx=True,
                                    ex=REFUND_KEY_TTL_S)
        if won:
            await self._redis.incrby(TRANSFERRED_PREFIX + payee, amount_fen)
            await self._redis.expire(TRANSFERRED_PREFIX + payee, REFUND_KEY_TTL_S)
            await self._bill_line("transfer", idempotency_key, str(fresh["ref"]), amount_fen)
            return str(fresh["ref"])
        raw = await self._redis.get(TRANSFER_PREFIX + digest)
        first = json.loads(raw) if raw else fresh
        if first["payee"] != payee or int(first["amount_fen"]) != amount_fen:
            raise RefundKeyReused(key=idempotency_key)
        return str(first["ref"])

    async def _bill_line(self, kind: str, key: str, ref: str, amount_fen: int) -> None:
        """What the simulated provider's bill of today will say about this money."""
        at = datetime.now(UTC)
        name = BILL_PREFIX + bill_day(at).isoformat()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.rpush(name, json.dumps({"kind": kind, "key": key, "ref": ref,
                                         "amount_fen": amount_fen, "at": at.isoformat()}))
            pipe.expire(name, BILL_KEEP_S)
            await pipe.execute()

    async def bill(self, day: date) -> list[BillLine]:
        """The day's bill from what this provider recorded when money moved."""
        raw = await self._redis.lrange(BILL_PREFIX + day.isoformat(), 0, -1)
        lines = []
        for item in raw:
            data = json.loads(item)
            lines.append(BillLine(kind=data["kind"], key=data["key"], provider_ref=data["ref"],
                                  amount_fen=int(data["amount_fen"]),
                                  at=datetime.fromisoformat(data["at"])))
        return lines

    async def transferred_total(self, payee: str) -> int:
        """Fen paid to a buyer's own account (compensation), as their wallet would show."""
        raw = await self._redis.get(TRANSFERRED_PREFIX + payee)
        return int(raw or 0)

    async def refunded_total(self, payment_ref: str) -> int:
        """Fen given back on one payment (what the buyer's bank statement would show)."""
        raw = await self._redis.get(REFUNDED_PREFIX + payment_ref)
        return int(raw or 0)

    async def charges(self, hold_id: str) -> dict[str, int]:
        """Payment reference -> fen charged, for every payment started for a hold."""
        raw = await self._redis.hgetall(CHARGES_PREFIX + hold_id)
        return {(k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in raw.items()}


def _conforms(provider: SimulatedProvider) -> tuple[PaymentProvider, BillingProvider]:
    """For mypy: the interface and the optional capability the simulated provider fulfils."""
    return provider, provider
