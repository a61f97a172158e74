"""App keys of the trust subsystem (kept out of server/keys.py so it stays the foundation's)."""

from __future__ import annotations

from aiohttp import web

from trust.claims_refunds import Refunder
from trust.trace_signing import TraceSigner
from trust.uploads import Storage

trace_signer_key = web.AppKey("trace_signer", TraceSigner)
upload_storage_key = web.AppKey("upload_storage", Storage)
# How claims move money: the commerce payment interface, adapted (trust/claims_refunds.py).
refunder_key = web.AppKey("refunder", Refunder)
