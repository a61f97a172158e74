"""Alipay behind the payment provider interface, through the `python-alipay-sdk` client.

The buyer pays on Alipay's phone-web cashier (alipay.trade.wap.pay; `start` answers its URL) or
by scanning a QR code (alipay.trade.precreate; `start_qr`). Our `out_trade_no` is the hold id,
so every attempt to pay one hold is the same Alipay trade; the trade lapses with the hold
(`timeout_express`) and `close` closes it at once. Alipay's own trade number is the payment
reference.

Alipay posts an asynchronous notification (form fields, RSA2-signed with Alipay's key) and
retries it until answered `success`. `verify_callback` checks the signature, our app id, the
trade status and that the amount is the one this provider asked for the hold. A notification
for a trade already accepted is refused as `replayed` (the checkout answers it with the order),
so a duplicate changes nothing. When the notification is late, the buyer coming back to pay
finds the trade paid by an active query (alipay.trade.query); that answer becomes a callback
signed with our own key, checked by `verify_callback` like the simulated provider's.

Refunds (alipay.trade.refund) carry `out_request_no` = our idempotency key, transfers
(alipay.fund.trans.uni.transfer) `out_biz_no` = our key: Alipay answers a repeated key with the
same refund or transfer. The bill is the day's trade bill and account bill (CSV in a zip, GBK)
behind alipay.data.dataservice.bill.downloadurl.query.

The SDK is synchronous (urllib); its calls run in a worker thread.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import secrets
import time
import urllib.request
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from alipay import AliPay
from alipay.exceptions import AliPayException, AliPayValidationError
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from commerce.payments import (
    BILL_ZONE,
    BadCallback,
    BillingProvider,
    BillLine,
    ClosingProvider,
    LapsingStart,
    NoPayeeAccount,
    PayClient,
    PayerMemory,
    PaymentCallback,
    PaymentProvider,
    PaymentStart,
    QrStart,
    SimulatedProvider,
)

log = logging.getLogger(__name__)
PAID_STATES = ("TRADE_SUCCESS", "TRADE_FINISHED")
AMOUNT_PREFIX = "alipay:amount:"
SEEN_PREFIX = "alipay:seen:"
BUYER_PREFIX = "alipay:buyer:"
PAYEE_PREFIX = "alipay:payee:"
KEEP_S = 90 * 24 * 3600
MAX_KEY = 64  # Alipay's out_request_no / out_biz_no
MAX_BILL_BYTES = 20 * 1024 * 1024
BILL_TIMEOUT_S = 30
SUBJECT = "邻里团购"


class AlipayUnavailable(RuntimeError):
    """Alipay answered with an error (the caller retries: the refund worker, the buyer)."""


@dataclass(frozen=True)
class AlipayConfig:
    app_id: str
    app_private_key: str = field(repr=False)
    alipay_public_key: str = field(repr=False)
    gateway_url: str
    notify_url: str
    return_url: str
    # Signs the callbacks made from an active query (as the simulated provider signs its own).
    internal_secret: str = field(repr=False)
    hold_ttl_s: int = 600


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def fen(amount: str) -> int:
    """Alipay's yuan with two decimals as integer fen; ValueError for anything else."""
    try:
        value = Decimal(amount.strip()) * 100
    except InvalidOperation:
        raise ValueError(f"not an amount: {amount!r}") from None
    if value != value.to_integral_value():
        raise ValueError(f"not an amount: {amount!r}")
    return int(value)


def _key(key: str) -> str:
    if not key or len(key) > MAX_KEY:
        raise ValueError(f"an Alipay request key is 1..{MAX_KEY} characters")
    return key


class AlipayProvider:
    name = "alipay"

    def __init__(self, config: AlipayConfig, redis: Redis | RedisCluster) -> None:
        self._config = config
        self._redis = redis
        self._client = AliPay(appid=config.app_id, app_notify_url=config.notify_url,
                              app_private_key_string=config.app_private_key,
                              alipay_public_key_string=config.alipay_public_key,
                              sign_type="RSA2")
        # The SDK knows Alipay's two hosts only; the gateway is ours to choose.
        self._client._gateway = config.gateway_url
        self._internal = SimulatedProvider(config.internal_secret + ":alipay-query", redis)

    async def _call(self, method: str, biz: dict[str, Any]) -> dict[str, Any]:
        """One signed gateway call; the answer's signature is checked by the SDK."""
        try:
            answer = await asyncio.to_thread(self._client.server_api, method, dict(biz))
        except AliPayException as exc:
            raise AlipayUnavailable(f"{method}: {exc.code}") from None
        except AliPayValidationError:
            # An answer not signed by Alipay's key: never trusted.
            raise AlipayUnavailable(f"{method}: bad answer signature") from None
        except (OSError, ValueError) as exc:  # unreachable, timed out, not JSON
            raise AlipayUnavailable(f"{method}: {type(exc).__name__}") from None
        return dict(answer)

    @staticmethod
    def _ok(answer: dict[str, Any]) -> bool:
        return str(answer.get("code")) == "10000"

    def _timeout(self) -> str:
        return f"{max(1, -(-self._config.hold_ttl_s // 60))}m"

    # --- pay --------------------------------------------------------------------------------

    async def start(self, hold_id: str, amount_fen: int,
                    client: PayClient | None = None) -> PaymentStart:
        """The phone-web cashier's URL, or the callback of a payment already made (the
        buyer's browser does not change the flow here)."""
        return await self.start_until(hold_id, amount_fen, None, client)

    async def start_until(self, hold_id: str, amount_fen: int, expires_ms: int | None,
                          client: PayClient | None = None) -> PaymentStart:
        """`start` for a hold that lapses at `expires_ms`: Alipay closes the trade then
        (`time_expire`), so no payment lands on an expired hold."""
        paid = await self.query(hold_id)
        if paid is not None:
            return PaymentStart(payment_ref=paid.payment_ref, callback=paid)
        await self._redis.set(AMOUNT_PREFIX + hold_id, amount_fen, ex=KEEP_S)
        lapse: dict[str, str] = {"timeout_express": self._timeout()}
        if expires_ms is not None:
            lapse = {"time_expire": datetime.fromtimestamp(expires_ms / 1000, BILL_ZONE)
                     .strftime("%Y-%m-%d %H:%M:%S")}
        signed = self._client.api_alipay_trade_wap_pay(
            subject=SUBJECT, out_trade_no=hold_id, total_amount=yuan(amount_fen),
            return_url=self._config.return_url, notify_url=self._config.notify_url,
            quit_url=self._config.return_url, **lapse)
        return PaymentStart(payment_ref=hold_id,
                            redirect_url=f"{self._config.gateway_url}?{signed}")

    async def start_qr(self, hold_id: str, amount_fen: int) -> str:
        """A QR code's content for the buyer to scan with Alipay (desktop)."""
        await self._redis.set(AMOUNT_PREFIX + hold_id, amount_fen, ex=KEEP_S)
        answer = await self._call("alipay.trade.precreate", {
            "out_trade_no": hold_id, "total_amount": yuan(amount_fen), "subject": SUBJECT,
            "timeout_express": self._timeout()})
        if not self._ok(answer) or not answer.get("qr_code"):
            raise AlipayUnavailable(f"precreate: {answer.get('sub_code', answer.get('code'))}")
        return str(answer["qr_code"])

    async def query(self, hold_id: str) -> PaymentCallback | None:
        """Ask Alipay whether the hold's trade is paid (its notification may be late)."""
        try:
            answer = await self._call("alipay.trade.query", {"out_trade_no": hold_id})
        except AlipayUnavailable:
            return None  # no trade yet (ACQ.TRADE_NOT_EXIST) or Alipay away: pay anew
        if not self._ok(answer) or answer.get("trade_status") not in PAID_STATES:
            return None
        amount = fen(str(answer["total_amount"]))
        await self._check_amount(hold_id, amount)
        trade_no = str(answer["trade_no"])
        if answer.get("buyer_user_id"):
            await self._redis.set(BUYER_PREFIX + hold_id, str(answer["buyer_user_id"]), ex=KEEP_S)
        # A notification arriving after this is a duplicate of what this callback does.
        await self._redis.set(SEEN_PREFIX + trade_no, hold_id, ex=KEEP_S)
        return self._internal.sign(PaymentCallback(hold_id, trade_no, amount, int(time.time()),
                                                   secrets.token_hex(12)))

    async def close(self, hold_id: str) -> bool:
        """Close the hold's unpaid trade so a late payment cannot land; False when none."""
        try:
            answer = await self._call("alipay.trade.close", {"out_trade_no": hold_id})
        except AlipayUnavailable:
            return False
        return self._ok(answer)

    async def _check_amount(self, hold_id: str, amount_fen: int) -> None:
        asked = await self._redis.get(AMOUNT_PREFIX + hold_id)
        if asked is None or int(asked) != amount_fen:
            raise BadCallback("支付金额不符 / Paid amount does not match", reason="wrong_amount",
                              hold_id=hold_id)

    async def verify_callback(self, data: dict[str, Any]) -> PaymentCallback:
        if "sign" not in data:
            return await self._internal.verify_callback(data)
        fields = {str(k): str(v) for k, v in data.items()}
        signature = fields.pop("sign")
        try:
            valid = self._client.verify(fields, signature)
        except (AliPayException, ValueError, TypeError):
            valid = False
        if not valid:
            raise BadCallback(reason="bad_signature")
        if fields.get("app_id") != self._config.app_id:
            raise BadCallback(reason="wrong_app")
        hold_id, trade_no = fields.get("out_trade_no", ""), fields.get("trade_no", "")
        if fields.get("trade_status") == "TRADE_CLOSED":
            # Closed unpaid, or refunded in full: nothing to confirm.
            raise BadCallback(reason="closed", hold_id=hold_id)
        if not hold_id or not trade_no or fields.get("trade_status") not in PAID_STATES:
            raise BadCallback(reason="not_paid")
        try:
            amount = fen(fields.get("total_amount", ""))
        except ValueError:
            raise BadCallback(reason="malformed") from None
        await self._check_amount(hold_id, amount)
        if fields.get("buyer_id"):
            await self._redis.set(BUYER_PREFIX + hold_id, fields["buyer_id"], ex=KEEP_S)
        fresh = await self._redis.set(SEEN_PREFIX + trade_no, hold_id, nx=True, ex=KEEP_S)
        if not fresh:
            raise BadCallback("重复的支付回调 / Replayed payment callback", reason="replayed",
                              hold_id=hold_id)
        return PaymentCallback(hold_id, trade_no, amount, int(time.time()),
                               fields.get("notify_id", trade_no))

    async def paid_by(self, user_id: int, hold_id: str) -> None:
        """Remember whose Alipay account paid a user's hold: compensation is sent there."""
        buyer = await self._redis.get(BUYER_PREFIX + hold_id)
        if buyer is not None:
            await self._redis.set(f"{PAYEE_PREFIX}user:{user_id}", buyer, ex=KEEP_S)

    # --- money out --------------------------------------------------------------------------

    async def refund(self, payment_ref: str, amount_fen: int, reason: str,
                     idempotency_key: str) -> str:
        answer = await self._call("alipay.trade.refund", {
            "trade_no": payment_ref, "refund_amount": yuan(amount_fen),
            "out_request_no": _key(idempotency_key), "refund_reason": reason[:200]})
        if not self._ok(answer):
            raise AlipayUnavailable(f"refund: {answer.get('sub_code', answer.get('code'))}")
        return str(answer.get("trade_no") or payment_ref)

    async def transfer(self, payee: str, amount_fen: int, reason: str,
                       idempotency_key: str) -> str:
        account = await self._redis.get(PAYEE_PREFIX + payee)
        if account is None:
            raise NoPayeeAccount(payee=payee, reason="no_alipay_account")
        identity = account.decode() if isinstance(account, bytes) else str(account)
        answer = await self._call("alipay.fund.trans.uni.transfer", {
            "out_biz_no": _key(idempotency_key), "trans_amount": yuan(amount_fen),
            "product_code": "TRANS_ACCOUNT_NO_PWD", "biz_scene": "DIRECT_TRANSFER",
            "order_title": (reason or "赔付")[:100],
            "payee_info": {"identity": identity, "identity_type": "ALIPAY_USER_ID"}})
        if not self._ok(answer) or answer.get("status") != "SUCCESS":
            raise AlipayUnavailable(f"transfer: {answer.get('sub_code', answer.get('status'))}")
        return str(answer["order_id"])

    # --- bill -------------------------------------------------------------------------------

    async def bill(self, day: date) -> list[BillLine]:
        """The trade bill (payments, refunds) and the account bill's transfers of one day."""
        lines = _trade_lines(await self._bill_csv("trade", day))
        lines.extend(_transfer_lines(await self._bill_csv("signcustomer", day)))
        return lines

    async def _bill_csv(self, bill_type: str, day: date) -> list[str]:
        try:
            answer = await self._call("alipay.data.dataservice.bill.downloadurl.query",
                                      {"bill_type": bill_type, "bill_date": day.isoformat()})
        except AlipayUnavailable as exc:
            if "40004" in str(exc):
                return []  # no bill: nothing moved that day
            raise
        url = str(answer.get("bill_download_url") or "")
        if not self._ok(answer) or not url:
            return []
        body = await asyncio.to_thread(_download, url)
        if len(body) > MAX_BILL_BYTES:
            raise AlipayUnavailable("bill too large")
        texts = []
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            for info in archive.infolist():
                # The detail file, not the summary (汇总) beside it.
                if info.filename.endswith(".csv") and "汇总" not in info.filename:
                    texts.append(archive.read(info).decode("gbk"))
        return texts


def _conforms(provider: AlipayProvider) -> tuple[PaymentProvider, BillingProvider, LapsingStart,
                                                 QrStart, ClosingProvider, PayerMemory]:
    """For mypy: the interface and the optional capabilities this provider fulfils."""
    return provider, provider, provider, provider, provider, provider


def _rows(texts: list[str]) -> list[dict[str, str]]:
    """Rows of Alipay's bill CSVs: `#` lines around a header and its rows."""
    rows: list[dict[str, str]] = []
    for text in texts:
        body = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
        for row in csv.DictReader(io.StringIO("\n".join(body))):
            rows.append({(k or "").strip(): (v or "").strip() for k, v in row.items()})
    return rows


def _at(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=BILL_ZONE)


def _trade_lines(texts: list[str]) -> list[BillLine]:
    lines: list[BillLine] = []
    for row in _rows(texts):
        kind = row.get("业务类型", "")
        trade_no, hold_id = row.get("支付宝交易号", ""), row.get("商户订单号", "")
        amount = abs(fen(row.get("订单金额（元）", "0") or "0"))
        at = _at(row.get("完成时间") or row.get("创建时间", ""))
        if kind == "交易":
            lines.append(BillLine("payment", hold_id, trade_no, amount, at))
        elif kind == "退款":
            lines.append(BillLine("refund", row.get("退款批次号/请求号", ""), trade_no, amount, at))
    return lines


def _transfer_lines(texts: list[str]) -> list[BillLine]:
    lines: list[BillLine] = []
    for row in _rows(texts):
        if row.get("业务类型") != "转账":
            continue
        amount = abs(fen(row.get("支出金额（-元）", "0") or "0"))
        lines.append(BillLine("transfer", row.get("商户订单号", ""), row.get("业务流水号", ""),
                              amount, _at(row.get("发生时间", ""))))
    return lines


def load_config(settings: Any, internal_secret: str) -> AlipayConfig | None:
    """The provider's configuration from settings, or None when Alipay is not configured."""
    if not (settings.alipay_app_id and settings.alipay_private_key_file
            and settings.alipay_public_key_file):
        return None
    base = settings.base_url.rstrip("/")
    return AlipayConfig(
        app_id=settings.alipay_app_id,
        app_private_key=settings.alipay_private_key_file.read_text(),
        alipay_public_key=settings.alipay_public_key_file.read_text(),
        gateway_url=settings.alipay_gateway_url,
        notify_url=settings.alipay_notify_url or f"{base}/api/payments/alipay/notify",
        return_url=f"{base}/orders", internal_secret=internal_secret,
        hold_ttl_s=int(settings.hold_ttl_s))


def describe(config: AlipayConfig) -> str:
    """For a start-up log line: which app and gateway, never a key."""
    return json.dumps({"app_id": config.app_id, "gateway": config.gateway_url})


def _download(url: str) -> bytes:
    """The bill file, at most one byte over the limit (the SDK's own calls block the same way:
    commerce/ stays free of the web framework)."""
    if not url.startswith(("https://", "http://")):
        raise AlipayUnavailable("bill url is not http(s)")
    with urllib.request.urlopen(url, timeout=BILL_TIMEOUT_S) as resp:  # noqa: S310 - checked above
        return bytes(resp.read(MAX_BILL_BYTES + 1))
