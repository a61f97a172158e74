"""A local server speaking WeChat Pay's API v3 wire protocol, for tests (a test tool, not a stub).

It makes its own keys at start, as WeChat Pay holds them: a platform RSA key with a self-signed
certificate, served encrypted (AEAD_AES_256_GCM with the APIv3 key) at `GET /v3/certificates`.
Every request must carry the merchant's `Authorization: WECHATPAY2-SHA256-RSA2048 …` signature,
checked against the merchant key the test made (401 SIGN_ERROR otherwise); every answer and
every notification is signed with the platform key (`Wechatpay-Timestamp/Nonce/Signature/
Serial/Signature-Type` over `ts\\nnonce\\nbody\\n`), and notifications carry the transaction or
refund as an encrypted resource. Covered: JSAPI/H5/Native prepay, query by out_trade_no and by
transaction id, close, refunds (out_refund_no idempotent, no more than was paid), transfer
batches (out_batch_no idempotent) and their details read back by out_batch_no / out_detail_no
(the merchant-transfer records; a test may plant a failed or altered one), the trade bill
(`/v3/bill/tradebill` then a gzip CSV download in WeChat's layout, values prefixed with a
backquote).

The buyer's side: `GET /h5pay?prepay_id=…&redirect_url=…` is the cashier page the H5 flow opens;
its button pays, sends the notification, then returns the browser to `redirect_url`. Tests
may also call `pay()`, `notification()` (to hold back, repeat, forge or alter one) and
`deliver()`. `route_to` sends notifications to the app under test wherever it listens (the
notify_url's origin is the app's public one).
"""

from __future__ import annotations

import base64
import csv
import gzip
import html
import io
import json
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

MCHID = "1900000109"
APPID = "wx0123456789abcdef"
MERCHANT_SERIAL = "3775B6A45ACD588826D15E583A95F5DD6A5C0F9A"
CHINA = timezone(timedelta(hours=8))
BILL_HEADER = ("交易时间", "公众账号ID", "商户号", "特约商户号", "设备号", "微信订单号", "商户订单号",
               "用户标识", "交易类型", "交易状态", "付款银行", "货币种类", "应结订单金额", "代金券金额",
               "微信退款单号", "商户退款单号", "退款金额", "充值券退款金额", "退款类型", "退款状态",
               "商品名称", "商户数据包", "手续费", "费率", "订单金额", "申请退款金额", "费率备注")
BODY: web.RequestKey[Any] = web.RequestKey("body", Any)
AUTH = re.compile(r'^WECHATPAY2-SHA256-RSA2048 (.+)$')


def _sign(key: rsa.RSAPrivateKey, text: str) -> str:
    return base64.b64encode(key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def _now() -> str:
    return datetime.now(CHINA).isoformat(timespec="seconds")


@dataclass
class Merchant:
    """What the merchant holds (made here for the test): its API key and the APIv3 key."""

    private_key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))
    apiv3_key: str = field(default_factory=lambda: secrets.token_hex(16))

    def private_pem(self) -> str:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()).decode()


@dataclass
class Trade:
    out_trade_no: str
    total: int
    kind: str
    notify_url: str
    prepay_id: str
    openid: str = ""
    state: str = "NOTPAY"
    transaction_id: str = ""
    success_time: str = ""
    refunded: int = 0


@dataclass
class WechatPayServer:
    merchant: Merchant = field(default_factory=Merchant)
    base: str = ""
    route_to: str = ""
    trades: dict[str, Trade] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    bill_rows: list[list[str]] = field(default_factory=list)
    delivered: list[tuple[str, int]] = field(default_factory=list)
    pending_refund_notices: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # Leave the payer out of paid transactions: stands for a payment whose account the shop
    # cannot pay back to (the buyer's compensation then waits for her to link WeChat).
    hide_payer: bool = False

    def __post_init__(self) -> None:
        self.platform_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA")])
        now = datetime.now(UTC)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.platform_key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(now - timedelta(days=1))
                     .not_valid_after(now + timedelta(days=365))
                     .sign(self.platform_key, hashes.SHA256()))
        self.serial = format(self.cert.serial_number, "X")

    # --- the wire ----------------------------------------------------------------------------

    def headers_for(self, body: str, key: rsa.RSAPrivateKey | None = None,
                    stamp: int | None = None) -> dict[str, str]:
        ts, nonce = str(stamp or int(time.time())), secrets.token_hex(16)
        return {"Wechatpay-Timestamp": ts, "Wechatpay-Nonce": nonce,
                "Wechatpay-Signature": _sign(key or self.platform_key, f"{ts}\n{nonce}\n{body}\n"),
                "Wechatpay-Serial": self.serial,
                "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048"}

    def encrypt(self, plain: str, associated: str) -> dict[str, str]:
        nonce = secrets.token_hex(6)
        data = AESGCM(self.merchant.apiv3_key.encode()).encrypt(
            nonce.encode(), plain.encode(), associated.encode())
        return {"algorithm": "AEAD_AES_256_GCM", "nonce": nonce, "associated_data": associated,
                "ciphertext": base64.b64encode(data).decode()}

    def _answer(self, data: Any, status: int = 200) -> web.Response:
        body = json.dumps(data, ensure_ascii=False)
        return web.Response(status=status, text=body, content_type="application/json",
                            headers=self.headers_for(body))

    def _error(self, status: int, code: str, message: str) -> web.Response:
        return self._answer({"code": code, "message": message}, status)

    def _authorized(self, request: web.Request, body: str) -> bool:
        found = AUTH.match(request.headers.get("Authorization", ""))
        if not found:
            return False
        parts = dict(re.findall(r'(\w+)="([^"]*)"', found.group(1)))
        if parts.get("mchid") != MCHID or parts.get("serial_no") != MERCHANT_SERIAL:
            return False
        text = (f"{request.method}\n{request.raw_path}\n{parts.get('timestamp')}\n"
                f"{parts.get('nonce_str')}\n{body}\n")
        try:
            self.merchant.private_key.public_key().verify(
                base64.b64decode(parts.get("signature", "")), text.encode(), padding.PKCS1v15(),
                hashes.SHA256())
        except (InvalidSignature, ValueError):
            return False
        return abs(time.time() - int(parts.get("timestamp") or 0)) < 300

    @web.middleware
    async def _signed(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith("/v3/"):
            return await handler(request)
        body = await request.text()
        if not self._authorized(request, body):
            return self._error(401, "SIGN_ERROR", "签名错误")
        request[BODY] = json.loads(body) if body else {}
        return await handler(request)

    # --- the API -----------------------------------------------------------------------------

    async def certificates(self, request: web.Request) -> web.Response:
        pem = self.cert.public_bytes(serialization.Encoding.PEM).decode()
        return self._answer({"data": [{
            "serial_no": self.serial, "effective_time": _now(),
            "expire_time": (datetime.now(CHINA) + timedelta(days=365)).isoformat(),
            "encrypt_certificate": self.encrypt(pem, "certificate")}]})

    async def prepay(self, request: web.Request) -> web.Response:
        data, kind = request[BODY], request.match_info["kind"]
        if data.get("mchid") != MCHID or data.get("appid") != APPID:
            return self._error(400, "PARAM_ERROR", "mchid or appid")
        total = int((data.get("amount") or {}).get("total") or 0)
        no = str(data.get("out_trade_no", ""))
        if total <= 0 or not re.match(r"^[0-9A-Za-z_\-*]{6,32}$", no):
            return self._error(400, "PARAM_ERROR", "amount or out_trade_no")
        if kind == "jsapi" and not (data.get("payer") or {}).get("openid"):
            return self._error(400, "PARAM_ERROR", "payer.openid")
        if kind == "h5" and not data.get("scene_info"):
            return self._error(400, "PARAM_ERROR", "scene_info")
        trade = self.trades.get(no)
        if trade is None:
            trade = self.trades[no] = Trade(no, total, kind, str(data["notify_url"]),
                                            "wx" + secrets.token_hex(14),
                                            openid=(data.get("payer") or {}).get("openid", ""))
        elif trade.state != "NOTPAY" or trade.total != total:
            return self._error(400, "ORDER_CLOSED" if trade.state == "CLOSED" else "ORDERPAID",
                               "订单已关闭或已支付")
        if kind == "h5":
            return self._answer({"h5_url": f"{self.base}/h5pay?prepay_id={trade.prepay_id}"})
        if kind == "native":
            return self._answer({"code_url": f"weixin://wxpay/bizpayurl?pr={trade.prepay_id}"})
        return self._answer({"prepay_id": trade.prepay_id})

    def transaction(self, trade: Trade) -> dict[str, Any]:
        found: dict[str, Any] = {
            "mchid": MCHID, "appid": APPID, "out_trade_no": trade.out_trade_no,
            "trade_state": trade.state, "trade_state_desc": trade.state,
            "trade_type": {"h5": "MWEB", "native": "NATIVE", "jsapi": "JSAPI"}[trade.kind],
            "amount": {"total": trade.total, "currency": "CNY"}}
        if trade.state == "SUCCESS":
            found.update(transaction_id=trade.transaction_id, success_time=trade.success_time,
                         bank_type="OTHERS")
            if not self.hide_payer:
                found["payer"] = {"openid": trade.openid or "o_h5_buyer"}
            found["amount"].update(payer_total=trade.total, payer_currency="CNY")
        return found

    async def query(self, request: web.Request) -> web.Response:
        if request.query.get("mchid") != MCHID:
            return self._error(400, "PARAM_ERROR", "mchid")
        by, value = request.match_info["by"], request.match_info["value"]
        trade = (self.trades.get(value) if by == "out-trade-no" else
                 next((t for t in self.trades.values() if t.transaction_id == value), None))
        if trade is None:
            return self._error(404, "ORDER_NOT_EXIST", "订单不存在")
        return self._answer(self.transaction(trade))

    async def close(self, request: web.Request) -> web.Response:
        trade = self.trades.get(request.match_info["no"])
        if trade is None:
            return self._error(404, "ORDER_NOT_EXIST", "订单不存在")
        if trade.state == "SUCCESS":
            return self._error(400, "ORDERPAID", "ORDER_PAID 订单已支付")
        trade.state = "CLOSED"
        return web.Response(status=204, headers=self.headers_for(""))

    async def refund(self, request: web.Request) -> web.Response:
        data = request[BODY]
        no = str(data.get("out_refund_no", ""))
        amount = data.get("amount") or {}
        if not re.match(r"^[0-9A-Za-z_\-|*@]{1,64}$", no):
            return self._error(400, "PARAM_ERROR", "out_refund_no")
        trade = next((t for t in self.trades.values()
                      if t.transaction_id and t.transaction_id == data.get("transaction_id")), None)
        if trade is None or trade.state != "SUCCESS":
            return self._error(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        first = self.refunds.get(no)
        if first is not None:
            if first["amount"]["refund"] != amount.get("refund"):
                return self._error(400, "INVALID_REQUEST", "out_refund_no 已用于另一笔退款")
            return self._answer(first)
        if amount.get("total") != trade.total or not 0 < int(amount.get("refund", 0)) <= \
                trade.total - trade.refunded:
            return self._error(400, "NOT_ENOUGH", "退款金额超过可退金额")
        trade.refunded += int(amount["refund"])
        answer = self.refunds[no] = {
            "refund_id": "50" + secrets.token_hex(14), "out_refund_no": no,
            "transaction_id": trade.transaction_id, "out_trade_no": trade.out_trade_no,
            "channel": "ORIGINAL", "status": "SUCCESS", "create_time": _now(),
            "success_time": _now(), "amount": {"total": trade.total, "refund": amount["refund"],
                                               "payer_refund": amount["refund"],
                                               "currency": "CNY"}}
        self.bill_rows.append(self._bill_row(trade, answer))
        if data.get("notify_url"):
            self.pending_refund_notices.append((str(data["notify_url"]), answer))
        return self._answer(answer)

    async def transfer(self, request: web.Request) -> web.Response:
        data = request[BODY]
        no = str(data.get("out_batch_no", ""))
        details = data.get("transfer_detail_list") or []
        if not re.match(r"^[0-9A-Za-z]{5,32}$", no) or not details or \
                sum(int(d["transfer_amount"]) for d in details) != data.get("total_amount"):
            return self._error(400, "PARAM_ERROR", "out_batch_no or amounts")
        first = self.batches.get(no)
        if first is not None:
            if first["total_amount"] != data["total_amount"] or \
                    first["openid"] != details[0].get("openid"):
                return self._error(400, "INVALID_REQUEST", "out_batch_no 已用于另一批次")
            return self._answer(first["answer"])
        answer = {"out_batch_no": no, "batch_id": "131" + secrets.token_hex(12),
                  "create_time": _now(), "batch_status": "ACCEPTED"}
        self.batches[no] = {"total_amount": data["total_amount"],
                            "openid": details[0].get("openid"), "answer": answer,
                            "out_detail_no": str(details[0].get("out_detail_no", "")),
                            "detail_id": "132" + secrets.token_hex(12),
                            # What the detail query reports: the money reached the buyer's
                            # 零钱 at once here (a test may plant FAIL or another amount).
                            "detail_status": "SUCCESS",
                            "detail_amount": int(details[0]["transfer_amount"]),
                            "initiate_time": _now()}
        return self._answer(answer)

    async def transfer_detail(self, request: web.Request) -> web.Response:
        """GET …/out-batch-no/{no}/details/out-detail-no/{detail}: one transfer as WeChat
        Pay's records have it."""
        batch = self.batches.get(request.match_info["no"])
        if batch is None or batch["out_detail_no"] != request.match_info["detail"]:
            return self._error(404, "NOT_FOUND", "记录不存在")
        return self._answer({
            "mchid": MCHID, "out_batch_no": request.match_info["no"],
            "batch_id": batch["answer"]["batch_id"], "appid": APPID,
            "out_detail_no": batch["out_detail_no"], "detail_id": batch["detail_id"],
            "detail_status": batch["detail_status"], "transfer_amount": batch["detail_amount"],
            "transfer_remark": "邻里赔付", "openid": batch["openid"],
            "initiate_time": batch["initiate_time"], "update_time": batch["initiate_time"]})

    async def trade_bill(self, request: web.Request) -> web.Response:
        day = request.query.get("bill_date", "")
        token = base64.urlsafe_b64encode(day.encode()).decode()
        return self._answer({"hash_type": "SHA1", "hash_value": "",
                             "download_url": f"{self.base}/v3/billdownload/file?token={token}"})

    async def download(self, request: web.Request) -> web.Response:
        day = base64.urlsafe_b64decode(request.query.get("token", "")).decode()
        return web.Response(body=gzip.compress(self.bill_csv(day).encode("utf-8")),
                            content_type="application/octet-stream")

    # --- the bill ----------------------------------------------------------------------------


    def _bill_row(self, trade: Trade, refund: dict[str, Any] | None = None) -> list[str]:
        yuan = lambda fen: f"{fen / 100:.2f}"  # noqa: E731
        at = datetime.now(CHINA).strftime("%Y-%m-%d %H:%M:%S")
        row = {h: "" for h in BILL_HEADER}
        row.update({"交易时间": at, "公众账号ID": APPID, "商户号": MCHID,
                    "微信订单号": trade.transaction_id, "商户订单号": trade.out_trade_no,
                    "交易类型": self.transaction(trade)["trade_type"], "货币种类": "CNY",
                    "商品名称": "邻里团购", "手续费": "0.00", "费率": "0.60%",
                    "订单金额": yuan(trade.total)})
        if refund is None:
            row.update({"交易状态": "SUCCESS", "应结订单金额": yuan(trade.total),
                        "退款金额": "0.00"})
        else:
            fen = int(refund["amount"]["refund"])
            row.update({"交易状态": "REFUND", "应结订单金额": "0.00",
                        "微信退款单号": refund["refund_id"], "商户退款单号": refund["out_refund_no"],
                        "退款金额": yuan(fen), "申请退款金额": yuan(fen), "退款状态": "SUCCESS"})
        return ["`" + row[h] for h in BILL_HEADER]

    def bill_csv(self, day: str) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(BILL_HEADER)
        rows = [r for r in self.bill_rows if r[0].lstrip("`").startswith(day)]
        writer.writerows(rows)
        writer.writerow(["总交易单数", "应结订单总金额", "退款总金额", "充值券退款总金额", "手续费总金额",
                         "订单总金额", "申请退款总金额"])
        writer.writerow([f"`{len(rows)}", "`0.00", "`0.00", "`0.00", "`0.00", "`0.00", "`0.00"])
        return out.getvalue()

    # --- the buyer's side ----------------------------------------------------------------------

    async def h5_page(self, request: web.Request) -> web.Response:
        prepay = request.query.get("prepay_id", "")
        trade = next((t for t in self.trades.values() if t.prepay_id == prepay), None)
        if trade is None:
            return web.Response(status=404, text="unknown prepay_id")
        back = html.escape(request.query.get("redirect_url", ""))
        page = f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width"><title>微信支付</title></head><body>
<main><h1>微信支付</h1><p>邻里团购 ¥<span id="amount">{trade.total / 100:.2f}</span></p>
<form method="post" action="/h5pay/confirm"><input type="hidden" name="prepay_id" value="{prepay}">
<input type="hidden" name="redirect_url" value="{back}">
<button id="confirm" type="submit">确认支付</button></form></main></body></html>"""
        return web.Response(text=page, content_type="text/html")

    async def h5_confirm(self, request: web.Request) -> web.Response:
        form = await request.post()
        prepay = str(form.get("prepay_id", ""))
        trade = next((t for t in self.trades.values() if t.prepay_id == prepay), None)
        if trade is None or trade.state not in ("NOTPAY", "SUCCESS"):
            return web.Response(status=409, text="订单已关闭")
        await self.pay(trade.out_trade_no)
        raise web.HTTPFound(str(form.get("redirect_url") or "/"))

    # --- test controls -----------------------------------------------------------------------

    def mark_paid(self, out_trade_no: str) -> Trade:
        """The buyer pays (WeChat's ledger moves) without a notification being sent yet."""
        trade = self.trades[out_trade_no]
        if trade.state == "NOTPAY":
            trade.state, trade.success_time = "SUCCESS", _now()
            trade.transaction_id = "42" + secrets.token_hex(13)
            self.bill_rows.append(self._bill_row(trade))
        return trade

    def notification(self, out_trade_no: str, *, total: int | None = None,
                     key: rsa.RSAPrivateKey | None = None,
                     stamp: int | None = None) -> tuple[str, dict[str, str], str]:
        """(notify_url, headers, body) of the paid notification; `total` alters the amount,
        `key` signs with another key (a forgery), `stamp` sets its time."""
        trade = self.trades[out_trade_no]
        resource = self.transaction(trade)
        if total is not None:
            resource["amount"] = {**resource["amount"], "total": total, "payer_total": total}
        body = json.dumps({
            "id": secrets.token_hex(16), "create_time": _now(), "resource_type": "encrypt-resource",
            "event_type": "TRANSACTION.SUCCESS", "summary": "支付成功",
            "resource": {**self.encrypt(json.dumps(resource, ensure_ascii=False), "transaction"),
                         "original_type": "transaction"}}, ensure_ascii=False)
        return trade.notify_url, self.headers_for(body, key, stamp), body

    def refund_notification(self, answer: dict[str, Any]) -> tuple[dict[str, str], str]:
        resource = {"mchid": MCHID, "out_trade_no": answer["out_trade_no"],
                    "transaction_id": answer["transaction_id"],
                    "out_refund_no": answer["out_refund_no"], "refund_id": answer["refund_id"],
                    "refund_status": answer["status"], "success_time": answer["success_time"],
                    "amount": {"total": answer["amount"]["total"],
                               "refund": answer["amount"]["refund"],
                               "payer_total": answer["amount"]["total"],
                               "payer_refund": answer["amount"]["refund"]}}
        body = json.dumps({
            "id": secrets.token_hex(16), "create_time": _now(), "resource_type": "encrypt-resource",
            "event_type": "REFUND.SUCCESS", "summary": "退款成功",
            "resource": {**self.encrypt(json.dumps(resource), "refund"),
                         "original_type": "refund"}})
        return self.headers_for(body), body

    async def deliver(self, url: str, headers: dict[str, str], body: str) -> int:
        """POST a notification the way WeChat Pay does; returns the HTTP status it got."""
        if self.route_to:
            parts = urlsplit(url)
            url = self.route_to.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")
        async with aiohttp.ClientSession() as session, session.post(
                url, data=body.encode(), headers={**headers, "Content-Type": "application/json"},
        ) as resp:
            self.delivered.append((url, resp.status))
            return resp.status

    async def pay(self, out_trade_no: str, *, notify: bool = True) -> Trade:
        trade = self.mark_paid(out_trade_no)
        if notify:
            url, headers, body = self.notification(out_trade_no)
            await self.deliver(url, headers, body)
        return trade

    async def deliver_refund_notices(self) -> list[int]:
        sent = []
        while self.pending_refund_notices:
            url, answer = self.pending_refund_notices.pop(0)
            headers, body = self.refund_notification(answer)
            sent.append(await self.deliver(url, headers, body))
        return sent

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._signed])
        app.router.add_get("/v3/certificates", self.certificates)
        app.router.add_post("/v3/pay/transactions/{kind:jsapi|h5|native}", self.prepay)
        app.router.add_get("/v3/pay/transactions/{by:out-trade-no|id}/{value}", self.query)
        app.router.add_post("/v3/pay/transactions/out-trade-no/{no}/close", self.close)
        app.router.add_post("/v3/refund/domestic/refunds", self.refund)
        app.router.add_post("/v3/transfer/batches", self.transfer)
        app.router.add_get("/v3/transfer/batches/out-batch-no/{no}/details/out-detail-no/{detail}",
                           self.transfer_detail)
        app.router.add_get("/v3/bill/tradebill", self.trade_bill)
        app.router.add_get("/v3/billdownload/file", self.download)
        app.router.add_get("/h5pay", self.h5_page)
        app.router.add_post("/h5pay/confirm", self.h5_confirm)
        return app

    def write_merchant_key(self, folder: Path) -> Path:
        path = folder / "apiclient_key.pem"
        path.write_text(self.merchant.private_pem())
        path.chmod(0o600)
        return path


@asynccontextmanager
async def wechatpay_server() -> AsyncIterator[WechatPayServer]:
    server = WechatPayServer()
    test_server = TestServer(server.app())
    await test_server.start_server()
    server.base = str(test_server.make_url("")).rstrip("/")
    try:
        yield server
    finally:
        await test_server.close()
