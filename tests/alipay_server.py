"""A small local Alipay open-API gateway for tests (a test tool, not part of the service).

It speaks Alipay's wire protocol as the `python-alipay-sdk` client and Alipay's documentation
know it, with RSA2 keys it generates at start:

- `GET /gateway.do?<params>&sign=...`: a request signed with the app's private key (every
  parameter but `sign`, sorted, `k=v` joined by `&`, RSA-SHA256, base64), checked against the
  app's public key. Answers `{"<method>_response": {...}, "sign": "..."}` signed with the
  gateway's ("Alipay's") private key over the exact JSON of the response object.
- `alipay.trade.wap.pay` is opened by the buyer's browser: a small cashier page whose button
  pays; the trade is recorded, the asynchronous notification POSTed to `notify_url` (a signed
  form: every field but `sign` and `sign_type`), and the browser sent to `return_url`.
- `alipay.trade.precreate | query | close | refund` and `alipay.fund.trans.uni.transfer`, with
  Alipay's idempotency on `out_request_no` and `out_biz_no`.
- `alipay.data.dataservice.bill.downloadurl.query`: a URL to a zip holding the day's bill as GBK
  CSV (the trade bill: payments and refunds; the account bill: transfers), built from what the
  gateway recorded; tests edit `bill_rows` to plant mismatches.

`hold_notifications` keeps notifications back (a late one); `notify(trade)` sends one again.
A trade lapses at its `time_expire` (closed, the cashier refuses) unless `ignore_time_expire`.
"""

from __future__ import annotations

import base64
import io
import json
import secrets
import socket
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from html import escape
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

APP_ID = "2021000000000001"
ZONE = ZoneInfo("Asia/Shanghai")


def keypair() -> tuple[rsa.RSAPrivateKey, str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return key, private, public


def _content(params: dict[str, str], skip: tuple[str, ...]) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in skip and v != "")


def _sign(key: rsa.RSAPrivateKey, text: str) -> str:
    return base64.b64encode(key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def _now() -> str:
    return datetime.now(ZONE).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class Trade:
    out_trade_no: str
    total_amount: str
    notify_url: str
    return_url: str
    trade_no: str = field(default_factory=lambda: "2026" + secrets.token_hex(12))
    status: str = "WAIT_BUYER_PAY"
    buyer_id: str = field(default_factory=lambda: "2088" + str(secrets.randbelow(10**12)).zfill(12))
    refunded: Decimal = Decimal("0")
    paid_at: str = ""
    time_expire: str = ""


class AlipayGateway:
    def __init__(self) -> None:
        self.alipay_key, self.alipay_private_pem, self.alipay_public_pem = keypair()
        app_key, self.app_private_pem, self.app_public_pem = keypair()
        self._app_public = app_key.public_key()
        self.trades: dict[str, Trade] = {}
        self.refunds: dict[str, dict[str, str]] = {}
        self.transfers: dict[str, dict[str, str]] = {}
        # day -> rows of the trade bill (交易/退款) and the account bill (转账)
        self.bill_rows: dict[str, list[dict[str, str]]] = {}
        self.hold_notifications = False
        self.notify_answers: list[tuple[int, str]] = []
        self.refused_requests = 0
        # Where notifications go when the app's public URL is not where tests run it.
        self.deliver_to = ""
        # A payment that lands after `time_expire` all the same (clock skew, a race at Alipay).
        self.ignore_time_expire = False
        self.base = ""

    @property
    def gateway_url(self) -> str:
        return f"{self.base}/gateway.do"

    # --- the wire ---------------------------------------------------------------------------

    def _verify_request(self, params: dict[str, str]) -> bool:
        try:
            self._app_public.verify(base64.b64decode(params.get("sign", "")),
                                    _content(params, ("sign",)).encode(), padding.PKCS1v15(),
                                    hashes.SHA256())
        except Exception:
            return False
        return params.get("app_id") == APP_ID

    def _answer(self, method: str, body: dict[str, Any]) -> web.Response:
        inner = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        name = method.replace(".", "_") + "_response"
        text = f'{{"{name}":{inner},"sign":"{_sign(self.alipay_key, inner)}"}}'
        return web.Response(text=text, content_type="application/json")

    @staticmethod
    def _fail(sub_code: str, sub_msg: str) -> dict[str, Any]:
        return {"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg}

    async def gateway(self, request: web.Request) -> web.StreamResponse:
        params = dict(request.query)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.post()).items()})
        method = params.get("method", "")
        if not self._verify_request(params):
            self.refused_requests += 1
            return self._answer(method, {"code": "40002", "msg": "Invalid Arguments",
                                         "sub_code": "isv.invalid-signature"})
        biz = json.loads(params.get("biz_content") or "{}")
        if method == "alipay.trade.wap.pay":
            return self._cashier(params, biz)
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            return self._answer(method, self._fail("isv.invalid-method", method))
        return self._answer(method, handler(params, biz))

    def _cashier(self, params: dict[str, str], biz: dict[str, Any]) -> web.Response:
        trade = self.trades.get(biz["out_trade_no"])
        if trade is None or trade.status == "WAIT_BUYER_PAY":
            trade = Trade(biz["out_trade_no"], biz["total_amount"], params.get("notify_url", ""),
                          params.get("return_url", ""),
                          **({"trade_no": trade.trade_no} if trade else {}))
            trade.time_expire = biz.get("time_expire", "")
            self.trades[trade.out_trade_no] = trade
        if trade.status == "WAIT_BUYER_PAY" and self._lapsed(trade):
            trade.status = "TRADE_CLOSED"
        if trade.status == "TRADE_CLOSED" and not trade.paid_at:
            return web.Response(text="<!doctype html><p id=closed>交易已关闭</p>",
                                content_type="text/html")
        page = f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width"><title>支付宝 收银台</title></head><body>
<main><h1>支付宝</h1><p>{escape(biz.get("subject", ""))}</p>
<p id="amount">￥{escape(trade.total_amount)}</p>
<form method="post" action="/cashier/pay"><input type="hidden" name="out_trade_no"
 value="{escape(trade.out_trade_no)}"><button type="submit">确认付款</button></form></main>
</body></html>"""
        return web.Response(text=page, content_type="text/html")

    async def cashier_pay(self, request: web.Request) -> web.Response:
        form = await request.post()
        trade = self.trades[str(form["out_trade_no"])]
        await self.pay(trade)
        raise web.HTTPFound(trade.return_url or "/")

    def _lapsed(self, trade: Trade) -> bool:
        return bool(trade.time_expire) and not self.ignore_time_expire \
            and _now() >= trade.time_expire

    async def pay(self, trade: Trade) -> None:
        """The buyer pays: the trade succeeds, lands in the bill, and Alipay notifies."""
        if trade.status != "WAIT_BUYER_PAY" or self._lapsed(trade):
            trade.status = "TRADE_CLOSED" if trade.status == "WAIT_BUYER_PAY" else trade.status
            return
        trade.status, trade.paid_at = "TRADE_SUCCESS", _now()
        self._bill(trade.paid_at[:10], {"支付宝交易号": trade.trade_no,
                                        "商户订单号": trade.out_trade_no, "业务类型": "交易",
                                        "订单金额（元）": trade.total_amount,
                                        "完成时间": trade.paid_at, "退款批次号/请求号": ""})
        if not self.hold_notifications:
            await self.notify(trade)

    def notification(self, trade: Trade, **changes: str) -> dict[str, str]:
        fields = {"notify_time": _now(), "notify_type": "trade_status_sync",
                  "notify_id": secrets.token_hex(16), "app_id": APP_ID, "charset": "utf-8",
                  "version": "1.0", "trade_no": trade.trade_no,
                  "out_trade_no": trade.out_trade_no, "buyer_id": trade.buyer_id,
                  "trade_status": trade.status, "total_amount": trade.total_amount,
                  "receipt_amount": trade.total_amount, "gmt_payment": trade.paid_at, **changes}
        fields["sign"] = _sign(self.alipay_key, _content(fields, ("sign", "sign_type")))
        fields["sign_type"] = "RSA2"
        return fields

    async def notify(self, trade: Trade, fields: dict[str, str] | None = None) -> tuple[int, str]:
        """POST the (or a given) notification to the trade's notify_url, as Alipay does."""
        form = fields or self.notification(trade)
        url = trade.notify_url
        if self.deliver_to:
            url = self.deliver_to.rstrip("/") + "/" + url.split("/", 3)[-1]
        async with aiohttp.ClientSession() as http, \
                http.post(url, data=urlencode(form), headers={
                    "Content-Type": "application/x-www-form-urlencoded"}) as resp:
            answer = (resp.status, await resp.text())
        self.notify_answers.append(answer)
        return answer

    def _bill(self, day: str, row: dict[str, str]) -> None:
        self.bill_rows.setdefault(day, []).append(row)

    # --- the API ----------------------------------------------------------------------------

    def _alipay_trade_precreate(self, params: dict[str, str], biz: dict[str, Any]) -> dict[str, Any]:
        trade = self.trades.get(biz["out_trade_no"])
        if trade is None:
            trade = Trade(biz["out_trade_no"], biz["total_amount"], params.get("notify_url", ""), "")
            self.trades[trade.out_trade_no] = trade
        return {"code": "10000", "msg": "Success", "out_trade_no": trade.out_trade_no,
                "qr_code": f"https://qr.alipay.com/{trade.trade_no}"}

    def _alipay_trade_query(self, params: dict[str, str], biz: dict[str, Any]) -> dict[str, Any]:
        trade = self.trades.get(biz.get("out_trade_no", ""))
        if trade is None:
            return self._fail("ACQ.TRADE_NOT_EXIST", "交易不存在")
        return {"code": "10000", "msg": "Success", "trade_no": trade.trade_no,
                "out_trade_no": trade.out_trade_no, "trade_status": trade.status,
                "total_amount": trade.total_amount, "buyer_user_id": trade.buyer_id,
                "send_pay_date": trade.paid_at}

    def _alipay_trade_close(self, params: dict[str, str], biz: dict[str, Any]) -> dict[str, Any]:
        trade = self.trades.get(biz.get("out_trade_no", ""))
        if trade is None:
            return self._fail("ACQ.TRADE_NOT_EXIST", "交易不存在")
        if trade.status != "WAIT_BUYER_PAY":
            return self._fail("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        trade.status = "TRADE_CLOSED"
        return {"code": "10000", "msg": "Success", "trade_no": trade.trade_no,
                "out_trade_no": trade.out_trade_no}

    def _alipay_trade_refund(self, params: dict[str, str], biz: dict[str, Any]) -> dict[str, Any]:
        trade = next((t for t in self.trades.values() if t.trade_no == biz.get("trade_no")
                      or t.out_trade_no == biz.get("out_trade_no")), None)
        if trade is None or trade.status not in ("TRADE_SUCCESS", "TRADE_CLOSED") \
                or not trade.paid_at:
            return self._fail("ACQ.TRADE_NOT_EXIST", "交易不存在")
        key = f"{trade.trade_no}/{biz['out_request_no']}"
        amount = Decimal(biz["refund_amount"])
        first = self.refunds.get(key)
        if first is None:
            if trade.refunded + amount > Decimal(trade.total_amount):
                return self._fail("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
            trade.refunded += amount
            if trade.refunded == Decimal(trade.total_amount):
                trade.status = "TRADE_CLOSED"
            first = self.refunds[key] = {"refund_amount": biz["refund_amount"], "at": _now()}
            self._bill(first["at"][:10], {"支付宝交易号": trade.trade_no,
                                          "商户订单号": trade.out_trade_no, "业务类型": "退款",
                                          "订单金额（元）": "-" + biz["refund_amount"],
                                          "完成时间": first["at"],
                                          "退款批次号/请求号": biz["out_request_no"]})
        elif first["refund_amount"] != biz["refund_amount"]:
            return self._fail("ACQ.REFUND_AMT_RESTRICTION", "同一请求号金额不同")
        return {"code": "10000", "msg": "Success", "trade_no": trade.trade_no,
                "out_trade_no": trade.out_trade_no, "buyer_user_id": trade.buyer_id,
                "fund_change": "Y", "refund_fee": str(trade.refunded)}

    def _alipay_fund_trans_uni_transfer(self, params: dict[str, str],
                                        biz: dict[str, Any]) -> dict[str, Any]:
        key = biz["out_biz_no"]
        first = self.transfers.get(key)
        if first is None:
            first = self.transfers[key] = {
                "order_id": "2026" + secrets.token_hex(10), "amount": biz["trans_amount"],
                "payee": biz["payee_info"]["identity"], "at": _now()}
            self._bill(first["at"][:10], {"业务类型": "转账", "商户订单号": key,
                                          "业务流水号": first["order_id"],
                                          "支出金额（-元）": "-" + biz["trans_amount"],
                                          "发生时间": first["at"]})
        elif first["amount"] != biz["trans_amount"]:
            return self._fail("PAYMENT_INFO_INCONSISTENCY", "两次请求商户单号一样，但是参数不一致")
        return {"code": "10000", "msg": "Success", "out_biz_no": key,
                "order_id": first["order_id"], "pay_fund_order_id": first["order_id"],
                "status": "SUCCESS", "trans_date": first["at"]}

    def _alipay_data_dataservice_bill_downloadurl_query(
            self, params: dict[str, str], biz: dict[str, Any]) -> dict[str, Any]:
        return {"code": "10000", "msg": "Success", "bill_download_url":
                f"{self.base}/bill/{biz['bill_type']}/{biz['bill_date']}.zip"}

    async def bill_zip(self, request: web.Request) -> web.Response:
        kind, day = request.match_info["kind"], request.match_info["day"]
        rows = self.bill_rows.get(day, [])
        if kind == "trade":
            columns = ["支付宝交易号", "商户订单号", "业务类型", "商品名称", "创建时间", "完成时间",
                       "订单金额（元）", "商家实收（元）", "退款批次号/请求号", "备注"]
            chosen = [r for r in rows if r.get("业务类型") in ("交易", "退款")]
            title = "业务明细"
        else:
            columns = ["账务流水号", "业务流水号", "商户订单号", "商品名称", "发生时间", "对方账号",
                       "收入金额（+元）", "支出金额（-元）", "账户余额（元）", "业务类型", "备注"]
            chosen = [r for r in rows if r.get("业务类型") == "转账"]
            title = "账务明细"
        out = io.StringIO()
        out.write(f"#支付宝{title}查询\n#账号：[{APP_ID}]\n#起始日期：[{day} 00:00:00]\n")
        out.write("#-----------------------------------------明细列表----------------------------\n")
        out.write(",".join(columns) + "\n")
        for row in chosen:
            out.write(",".join(row.get(c, "") for c in columns) + "\n")
        out.write("#-----------------------------------------明细列表结束------------------------\n")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as archive:
            archive.writestr(f"{APP_ID}_{day.replace('-', '')}_{title}.csv",
                             out.getvalue().encode("gbk"))
            archive.writestr(f"{APP_ID}_{day.replace('-', '')}_{title}(汇总).csv",
                             "#汇总\n".encode("gbk"))
        return web.Response(body=buf.getvalue(), content_type="application/zip")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/gateway.do", self.gateway)
        app.router.add_post("/cashier/pay", self.cashier_pay)
        app.router.add_get("/bill/{kind}/{day}.zip", self.bill_zip)
        return app


@asynccontextmanager
async def alipay_gateway() -> AsyncIterator[AlipayGateway]:
    gateway = AlipayGateway()
    runner = web.AppRunner(gateway.app())
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    site = web.SockSite(runner, sock)
    await site.start()
    gateway.base = f"http://127.0.0.1:{port}"
    try:
        yield gateway
    finally:
        await runner.cleanup()
