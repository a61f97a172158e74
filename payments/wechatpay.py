"""WeChat Pay (API v3) behind the payment provider interface; off unless configured.

The client is `wechatpayv3` (PyPI): it signs every request (WECHATPAY2-SHA256-RSA2048 with the
merchant key), verifies every answer and notification against WeChat Pay's platform
certificates (downloaded and decrypted with the APIv3 key when none are on disk) and decrypts
the AEAD_AES_256_GCM resources. It talks through `requests`, so each call runs in a worker
thread. Its host is fixed in the library; `_Client` sets it from `LINLI_WECHATPAY_API_BASE`
before the first call, which is how a proxy, or the local test server, is used.

Our names become WeChat's: a hold `12-345` is paid as out_trade_no `linli-12-345`; a refund key
`refund:order:12:claim` is out_refund_no `refund|order|12|claim` (WeChat allows no `:`), or a
digest when too long; a transfer key is hashed into a letters-and-digits out_batch_no. What
cannot be read back from WeChat's name is remembered in Redis for the bill.

Transfers are not in the trade bill: reconciliation reads each one back from WeChat's transfer
records (`transfer_line`, the batch detail query by our out_batch_no / out_detail_no).
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import hashlib
import io
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from sqlalchemy import select
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.core import Core

from commerce.errors import DomainError, InvalidInput
from commerce.flash_sale.checkout import Checkout
from commerce.identities import WechatIdentity
from commerce.orders import UnitOfWork
from commerce.payments import (
    CALLBACK_MAX_AGE_S,
    BadCallback,
    BillingProvider,
    BillLine,
    ClosingProvider,
    NoPayeeAccount,
    PayClient,
    PayerMemory,
    PaymentCallback,
    PaymentProvider,
    PaymentStart,
    RefundKeyReused,
    TransferLookup,
)

log = logging.getLogger(__name__)
CHINA = timezone(timedelta(hours=8))
TRADE_PREFIX = "linli-"
STARTED_KEY = "wxpay:started"
AMOUNT_PREFIX = "wxpay:amount:"
KEYMAP_PREFIX = "wxpay:key:"
PAYER_PREFIX = "wxpay:payer:"
PAYEE_PREFIX = "wxpay:payee:"
KEY_TTL_S = 120 * 24 * 3600
# A started payment is asked about once it is this old and still unconfirmed (the notification
# is late or lost); WeChat's own retries span hours, so asking is what keeps a buyer waiting less.
QUERY_AFTER_S = 20
SWEEP_BATCH = 50
OUT_REFUND_NO = re.compile(r"^[0-9A-Za-z_\-|*@]{1,64}$")
MAX_NOTIFY_BYTES = 64 * 1024
# (connect, read) seconds: a WeChat Pay that does not answer must not hold a worker thread.
TIMEOUT_S = (5, 20)


class ProviderFailed(DomainError):
    code = "payment_provider_failed"
    status = 502
    default_message = "支付服务暂时不可用 / The payment provider did not answer"


class NoWechatAccount(NoPayeeAccount):
    code = "no_wechat_account"
    default_message = ("该用户没有绑定微信，无法转账 / This buyer has no WeChat account to "
                       "transfer to")


class _Core(Core):  # type: ignore[misc]
    """The library's core with its host set before it loads or downloads certificates."""

    def __init__(self, api_base: str, **kwargs: Any) -> None:
        self._linli_base = api_base.rstrip("/")
        super().__init__(**kwargs)

    def _init_certificates(self) -> None:
        self._gate_way = self._linli_base
        super()._init_certificates()


class _Client(WeChatPay):  # type: ignore[misc]
    """`WeChatPay` (all its API methods) over `_Core`; its own __init__ only stores these."""

    def __init__(self, api_base: str, mchid: str, appid: str, apiv3_key: str, serial: str,
                 private_key: str, notify_url: str, cert_dir: str | None) -> None:
        self._type = WeChatPayType.NATIVE
        self._mchid, self._appid, self._notify_url = mchid, appid, notify_url
        self._partner_mode = False
        self._core = _Core(api_base, mchid=mchid, cert_serial_no=serial,
                           private_key=private_key, apiv3_key=apiv3_key, cert_dir=cert_dir,
                           timeout=TIMEOUT_S)


def trade_no(hold_id: str) -> str:
    return TRADE_PREFIX + hold_id


def hold_of_trade(out_trade_no: str) -> str:
    if not out_trade_no.startswith(TRADE_PREFIX):
        raise BadCallback(reason="unknown_trade")
    return out_trade_no[len(TRADE_PREFIX):]


def refund_no(key: str) -> str:
    """WeChat's out_refund_no for our refund key: readable when it fits, a digest when not."""
    readable = key.replace(":", "|")
    if OUT_REFUND_NO.match(readable) and "~" not in readable:
        return readable
    return "h" + hashlib.sha256(key.encode()).hexdigest()[:40]


def batch_no(key: str) -> str:
    """out_batch_no (5–32 letters and digits) for a transfer key."""
    return "tf" + hashlib.sha256(key.encode()).hexdigest()[:30]


def channel_for(client: PayClient | None, has_openid: bool) -> str:
    """JSAPI inside WeChat's browser (when we know the buyer's openid), H5 in another phone
    browser, Native (a QR code to scan with the phone) on a desktop."""
    agent = (client.user_agent if client else "").lower()
    if "micromessenger" in agent and has_openid:
        return "jsapi"
    if any(mark in agent for mark in ("iphone", "android", "mobile", "ipad")):
        return "h5"
    return "native"


def _fen(text: str) -> int:
    return int((Decimal(text.strip().lstrip("`") or "0") * 100).to_integral_value())


class WechatPayProvider:
    """WeChat Pay v3 for the checkout; build with `from_settings`, then `await open()`."""

    name = "wechatpay"

    def __init__(self, *, api_base: str, mchid: str, appid: str, apiv3_key: str, serial: str,
                 private_key: str, notify_base: str, cert_dir: str | None,
                 redis: Redis | RedisCluster, uow: UnitOfWork,
                 description: str = "邻里团购") -> None:
        self.mchid, self.appid = mchid, appid
        self.notify_url = notify_base.rstrip("/") + "/api/payments/wechatpay/notify"
        self.refund_notify_url = notify_base.rstrip("/") + "/api/payments/wechatpay/refund-notify"
        self._args = (api_base, mchid, appid, apiv3_key, serial, private_key, self.notify_url,
                      cert_dir)
        self._client: _Client | None = None
        self._redis = redis
        self._uow = uow
        self.description = description

    @classmethod
    def from_settings(cls, settings: Any, redis: Redis | RedisCluster,
                      uow: UnitOfWork) -> WechatPayProvider:
        key_file: Path = settings.wechatpay_private_key_file
        cert_dir = settings.wechatpay_platform_cert_dir
        return cls(api_base=settings.wechatpay_api_base, mchid=settings.wechatpay_mchid,
                   appid=settings.wechatpay_appid or settings.wechat_app_id,
                   apiv3_key=settings.wechatpay_apiv3_key.get_secret_value(),
                   serial=settings.wechatpay_merchant_serial,
                   private_key=key_file.read_text(),
                   notify_base=settings.wechatpay_notify_base or settings.base_url,
                   cert_dir=str(cert_dir) if cert_dir else None, redis=redis, uow=uow)

    async def open(self) -> None:
        """Load or download the platform certificates (a blocking call: in a thread)."""
        if self._client is None:
            self._client = await asyncio.to_thread(_Client, *self._args)

    async def _call(self, method: Callable[..., tuple[int, Any]], *args: Any,
                    **kwargs: Any) -> tuple[int, Any]:
        await self.open()
        try:
            code, body = await asyncio.to_thread(method, *args, **kwargs)
        except Exception as exc:  # network, or an answer whose signature did not verify
            log.warning("wechatpay call failed: %s", type(exc).__name__)
            raise ProviderFailed(reason=type(exc).__name__) from None
        return int(code), body

    @property
    def client(self) -> _Client:
        assert self._client is not None, "open() first"
        return self._client

    # --- pay -------------------------------------------------------------------------------------

    async def start(self, hold_id: str, amount_fen: int,
                    client: PayClient | None = None) -> PaymentStart:
        await self.open()
        openid = await self._openid(client.user_id) if client and client.user_id else None
        channel = channel_for(client, openid is not None)
        out_trade_no = trade_no(hold_id)
        # What the notification must say was paid: kept before WeChat hears of the order (a
        # fast payment finds it), without replacing an amount WeChat may already hold for it.
        await self._redis.set(AMOUNT_PREFIX + hold_id, amount_fen, ex=KEY_TTL_S, nx=True)
        kwargs: dict[str, Any] = {
            "description": self.description, "out_trade_no": out_trade_no,
            "amount": {"total": amount_fen, "currency": "CNY"},
            "pay_type": {"jsapi": WeChatPayType.JSAPI, "h5": WeChatPayType.H5,
                         "native": WeChatPayType.NATIVE}[channel],
        }
        if channel == "jsapi":
            kwargs["payer"] = {"openid": openid}
        if channel == "h5":
            kwargs["scene_info"] = {"payer_client_ip": (client.ip if client else "") or "127.0.0.1",
                                    "h5_info": {"type": "Wap"}}
        code, body = await self._call(self.client.pay, **kwargs)
        if code != 200:
            log.warning("wechatpay prepay refused: %s", code)
            raise ProviderFailed(reason="prepay_refused")
        answer = json.loads(body)
        # WeChat took this amount for this order number (it refuses another one for it).
        await self._redis.set(AMOUNT_PREFIX + hold_id, amount_fen, ex=KEY_TTL_S)
        await self._redis.zadd(STARTED_KEY, {hold_id: time.time()})
        if channel == "h5":
            url = str(answer["h5_url"])
            if client and client.return_url:
                from urllib.parse import quote

                url += ("&" if "?" in url else "?") + "redirect_url=" + quote(client.return_url,
                                                                              safe="")
            return PaymentStart(payment_ref=out_trade_no, redirect_url=url, channel=channel)
        if channel == "native":
            return PaymentStart(payment_ref=out_trade_no, qr_text=str(answer["code_url"]),
                                channel=channel)
        return PaymentStart(payment_ref=out_trade_no, jsapi=self._jsapi(str(answer["prepay_id"])),
                            channel=channel)

    def _jsapi(self, prepay_id: str) -> dict[str, str]:
        """What the page hands to WeixinJSBridge: signed with the merchant key (RSA)."""
        stamp, nonce = str(int(time.time())), secrets.token_hex(16)
        package = f"prepay_id={prepay_id}"
        sign = self.client.sign([self.appid, stamp, nonce, package])
        return {"appId": self.appid, "timeStamp": stamp, "nonceStr": nonce, "package": package,
                "signType": "RSA", "paySign": str(sign)}

    async def _openid(self, user_id: int) -> str | None:
        async with self._uow() as db:
            found = (await db.execute(select(WechatIdentity.openid).where(
                WechatIdentity.user_id == user_id, WechatIdentity.app_id == self.appid))).first()
        return str(found[0]) if found else None

    # --- notifications ---------------------------------------------------------------------------

    async def decrypt_notification(self, headers: dict[str, str], body: str) -> dict[str, Any]:
        """The notification's decrypted resource, once its signature verified against a platform
        certificate and its timestamp is fresh; BadCallback (with a reason) otherwise."""
        if len(body) > MAX_NOTIFY_BYTES:
            raise BadCallback(reason="too_large")
        lower = {k.lower(): v for k, v in headers.items()}
        try:
            stamp = int(lower.get("wechatpay-timestamp", ""))
        except ValueError:
            raise BadCallback(reason="malformed") from None
        if abs(time.time() - stamp) > CALLBACK_MAX_AGE_S:
            raise BadCallback(reason="stale")
        await self.open()
        try:
            data = await asyncio.to_thread(self.client.callback, lower, body)
        except Exception:  # the library raises bare Exception for an unknown algorithm
            data = None
        if not data or not isinstance(data.get("resource"), dict):
            raise BadCallback(reason="bad_signature")
        resource: dict[str, Any] = data["resource"]
        return resource

    async def verify_callback(self, data: dict[str, Any]) -> PaymentCallback:
        """`data` is {"headers", "body"} of WeChat's POST to the notification route."""
        headers = data.get("headers")
        if not isinstance(headers, dict) or not isinstance(data.get("body"), str):
            raise BadCallback(reason="malformed")
        resource = await self.decrypt_notification(headers, data["body"])
        return await self.payment(resource)

    async def payment(self, resource: dict[str, Any]) -> PaymentCallback:
        """A paid order (a notification's resource or a query's verified answer) checked
        against what we asked: our merchant, paid, the amount started for the hold."""
        if resource.get("mchid") != self.mchid or resource.get("appid") != self.appid:
            raise BadCallback(reason="wrong_merchant")
        if resource.get("trade_state") != "SUCCESS":
            raise BadCallback(reason="not_paid")
        hold_id = hold_of_trade(str(resource.get("out_trade_no", "")))
        amount = resource.get("amount") or {}
        total = amount.get("total")
        expected = await self._redis.get(AMOUNT_PREFIX + hold_id)
        if expected is None or not isinstance(total, int) or total != int(expected):
            raise BadCallback("支付金额不符 / The amount paid is not the amount asked",
                              reason="wrong_amount")
        payer = (resource.get("payer") or {}).get("openid")
        if isinstance(payer, str) and payer:
            # The account that paid, under our app id: where compensation can go (`paid_by`).
            await self._redis.set(PAYER_PREFIX + hold_id, payer[:128], ex=KEY_TTL_S)
        return PaymentCallback(hold_id=hold_id, payment_ref=str(resource["transaction_id"]),
                               amount_fen=total, ts=int(time.time()),
                               nonce=str(resource["transaction_id"]))

    async def paid_by(self, user_id: int, hold_id: str) -> None:
        """Remember the openid that paid a user's hold: her compensation is sent there when
        she never signed in with WeChat (an H5 or QR payment)."""
        payer = await self._redis.get(PAYER_PREFIX + hold_id)
        if payer is not None:
            await self._redis.set(f"{PAYEE_PREFIX}{user_id}", payer, ex=KEY_TTL_S)

    # --- active query, close ---------------------------------------------------------------------

    async def query(self, hold_id: str) -> dict[str, Any] | None:
        """The order as WeChat Pay has it (GET …/out-trade-no/{id}); None when it never heard
        of it."""
        code, body = await self._call(self.client.query, out_trade_no=trade_no(hold_id))
        if code == 404:
            return None
        if code != 200:
            raise ProviderFailed(reason=f"query_{code}")
        answer: dict[str, Any] = json.loads(body)
        return answer

    async def close(self, hold_id: str) -> bool:
        """Close the provider's order so it can no longer be paid; False when it was paid."""
        code, body = await self._call(self.client.close, out_trade_no=trade_no(hold_id))
        if code in (200, 204):
            return True
        text = body if isinstance(body, str) else body.decode(errors="replace")
        if "ORDER_PAID" in text or "ORDERPAID" in text:
            return False
        raise ProviderFailed(reason=f"close_{code}")

    async def started(self, older_than_s: float, limit: int = SWEEP_BATCH) -> list[str]:
        raw = await self._redis.zrangebyscore(STARTED_KEY, 0, time.time() - older_than_s,
                                              start=0, num=limit)
        return [r.decode() if isinstance(r, bytes) else str(r) for r in raw]

    async def forget(self, hold_id: str) -> None:
        await self._redis.zrem(STARTED_KEY, hold_id)

    # --- refunds ---------------------------------------------------------------------------------

    async def refund(self, payment_ref: str, amount_fen: int, reason: str,
                     idempotency_key: str) -> str:
        if not idempotency_key:
            raise ValueError("a refund needs an idempotency key")
        code, body = await self._call(self.client.query, transaction_id=payment_ref)
        if code != 200:
            raise ProviderFailed(reason=f"refund_query_{code}")
        total = int(json.loads(body)["amount"]["total"])
        out_refund_no = refund_no(idempotency_key)
        await self._redis.set(KEYMAP_PREFIX + out_refund_no, idempotency_key, ex=KEY_TTL_S)
        code, body = await self._call(
            self.client.refund, out_refund_no=out_refund_no, transaction_id=payment_ref,
            amount={"refund": amount_fen, "total": total, "currency": "CNY"},
            reason=reason[:80] or None, notify_url=self.refund_notify_url)
        answer = json.loads(body) if isinstance(body, str) and body else {}
        if code == 200:
            if int(answer["amount"]["refund"]) != amount_fen:
                raise RefundKeyReused(key=idempotency_key)
            return str(answer["refund_id"])
        if answer.get("code") == "INVALID_REQUEST" and "out_refund_no" in str(answer):
            raise RefundKeyReused(key=idempotency_key)
        raise ProviderFailed(reason=f"refund_{code}_{answer.get('code', '')}")

    async def refund_notification(self, headers: dict[str, str], body: str) -> dict[str, Any]:
        """A verified refund notification's resource, with our refund key under `key`."""
        resource = await self.decrypt_notification(headers, body)
        if resource.get("mchid") != self.mchid or "out_refund_no" not in resource:
            raise BadCallback(reason="wrong_merchant")
        theirs = str(resource["out_refund_no"])
        ours = await self._redis.get(KEYMAP_PREFIX + theirs)
        resource["key"] = (ours.decode() if isinstance(ours, bytes) else ours) or \
            theirs.replace("|", ":")
        return resource

    # --- transfers (商家转账到零钱, batches API) ----------------------------------------------------

    async def transfer(self, payee: str, amount_fen: int, reason: str,
                       idempotency_key: str) -> str:
        if not idempotency_key:
            raise ValueError("a transfer needs an idempotency key")
        kind, _, user = payee.partition(":")
        if kind != "user" or not user.isdigit():
            raise InvalidInput("收款人无效 / Unknown payee", reason="bad_payee")
        openid = await self._openid(int(user))
        if openid is None:
            paid = await self._redis.get(f"{PAYEE_PREFIX}{user}")
            openid = (paid.decode() if isinstance(paid, bytes) else paid) if paid else None
        if openid is None:
            raise NoWechatAccount(payee=payee, reason="no_wechat_account")
        out_batch_no = batch_no(idempotency_key)
        await self._redis.set(KEYMAP_PREFIX + out_batch_no, idempotency_key, ex=KEY_TTL_S)
        remark = (reason or "赔付")[:32]
        code, body = await self._call(
            self.client.transfer_batch, out_batch_no=out_batch_no, batch_name="邻里赔付",
            batch_remark=remark, total_amount=amount_fen, total_num=1,
            transfer_detail_list=[{"out_detail_no": out_batch_no, "transfer_amount": amount_fen,
                                   "transfer_remark": remark, "openid": openid}])
        answer = json.loads(body) if isinstance(body, str) and body else {}
        if code == 200:
            return str(answer["batch_id"])
        if answer.get("code") == "INVALID_REQUEST" and "out_batch_no" in str(answer):
            raise RefundKeyReused(key=idempotency_key)
        raise ProviderFailed(reason=f"transfer_{code}_{answer.get('code', '')}")

    async def transfer_line(self, key: str) -> BillLine | None:
        """What WeChat's transfer records say of the transfer made under our key (the detail of
        its one-line batch): a line when it reached the buyer (SUCCESS), None when WeChat has
        no such transfer or it failed or is still on its way."""
        out_batch_no = batch_no(key)
        code, body = await self._call(self.client.transfer_query_out_detail_no,
                                      out_detail_no=out_batch_no, out_batch_no=out_batch_no)
        if code == 404:
            return None
        if code != 200:
            raise ProviderFailed(reason=f"transfer_query_{code}")
        detail = json.loads(body)
        if detail.get("detail_status") != "SUCCESS" or detail.get("mchid") != self.mchid:
            return None
        at = datetime.fromisoformat(str(detail.get("update_time") or detail["initiate_time"]))
        return BillLine("transfer", key, str(detail.get("batch_id") or detail.get("detail_id")),
                        int(detail["transfer_amount"]), at)

    # --- bill ------------------------------------------------------------------------------------

    async def bill(self, day: date) -> list[BillLine]:
        """The day's trade bill (交易账单, ALL): successful payments and refunds. Transfers are
        in the merchant-transfer bill, not this one."""
        code, body = await self._call(self.client.trade_bill, bill_date=day.isoformat())
        if code != 200:
            raise ProviderFailed(reason=f"bill_{code}")
        url = str(json.loads(body)["download_url"])
        code, raw = await self._call(self.client.download_bill, url)
        if code != 200:
            raise ProviderFailed(reason=f"bill_download_{code}")
        data = raw if isinstance(raw, bytes) else raw.encode()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        return await self._bill_lines(data.decode("utf-8-sig"))

    async def _bill_lines(self, text: str) -> list[BillLine]:
        rows = list(csv.reader(io.StringIO(text)))
        if not rows:
            return []
        header = [h.strip() for h in rows[0]]
        lines: list[BillLine] = []
        for row in rows[1:]:
            if len(row) != len(header):
                break  # the summary block (总交易单数, …) follows the lines
            cell = {h: v.strip().lstrip("`") for h, v in zip(header, row, strict=True)}
            at = datetime.strptime(cell["交易时间"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA)
            trade = cell["商户订单号"]
            if cell["交易状态"] == "SUCCESS" and trade.startswith(TRADE_PREFIX):
                lines.append(BillLine("payment", trade[len(TRADE_PREFIX):], cell["微信订单号"],
                                      _fen(cell["应结订单金额"]), at))
            elif cell["交易状态"] == "REFUND":
                theirs = cell["商户退款单号"]
                ours = await self._redis.get(KEYMAP_PREFIX + theirs)
                key = (ours.decode() if isinstance(ours, bytes) else ours) or \
                    theirs.replace("|", ":")
                lines.append(BillLine("refund", key, cell["微信退款单号"],
                                      _fen(cell["退款金额"]), at))
        return lines


def _conforms(provider: WechatPayProvider) -> tuple[PaymentProvider, BillingProvider,
                                                     TransferLookup, ClosingProvider, PayerMemory]:
    """For mypy: the interface and the optional capabilities this provider fulfils."""
    return provider, provider, provider, provider, provider


async def sweep_started(checkout: Checkout, provider: WechatPayProvider,
                        older_than_s: float = QUERY_AFTER_S) -> int:
    """For each WeChat payment started a while ago and not confirmed: ask WeChat. Paid → the
    order is made as the notification would have (or, on a lapsed hold, the money goes back);
    not paid and the hold gone → WeChat's order is closed so it can no longer be paid."""
    from commerce.flash_sale.store import HoldExpired, NoSuchHold, now_ms

    moved = 0
    for hold_id in await provider.started(older_than_s):
        if await checkout.store.paid(hold_id) is not None:
            await provider.forget(hold_id)
            continue
        found = await provider.query(hold_id)
        if found is None:
            await provider.forget(hold_id)
            continue
        if found.get("trade_state") == "SUCCESS":
            try:
                await checkout.accept_payment(await provider.payment(found), provider)
            except (HoldExpired, NoSuchHold, BadCallback) as exc:
                log.info("late wechat payment not made an order: %s", type(exc).__name__)
            await provider.forget(hold_id)
            moved += 1
            continue
        hold = await checkout.store.hold(hold_id)
        if hold is None or int(hold["e"]) <= now_ms():
            if not await provider.close(hold_id):
                continue  # paid meanwhile: the next pass finds it SUCCESS
            await provider.forget(hold_id)
            moved += 1
    return moved
