"""The real payment providers (WeChat Pay, Alipay) behind commerce's provider interface
(commerce/payments.py); commerce never imports them, the server wires them in."""
