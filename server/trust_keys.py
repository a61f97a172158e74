"""App keys of the trust subsystem (kept out of server/keys.py so it stays the foundation's)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from trust.claims_refunds import Refunder
from trust.trace_signing import TraceSigner
from trust.uploads import Storage

trace_signer_key = web.AppKey("trace_signer", TraceSigner)
upload_storage_key = web.AppKey("upload_storage", Storage)
# How claims move money: the commerce payment interface, adapted (trust/claims_refunds.py).
refunder_key = web.AppKey("refunder", Refunder)
# The banned words of a live room (set by the realtime component): 晒单 text is masked by the
# same words as the host's live comments.
RoomWords = Callable[[int], Awaitable[list[str]]]
room_words_key: web.AppKey[RoomWords] = web.AppKey("room_words")
