"""Carry every confirmation from Redis to SQL exactly once, whoever dies when.

confirm.lua appends the confirmation to the sale's stream `sale:{id}:log` in the same atomic
step that marks the units sold, and Redis runs with AOF. This consumer group reads the streams,
writes each order with the idempotent writer (unique hold id) and only then XACKs. If a process
dies after the write and before the ack, the entry is re-read and the write is a no-op; if it
dies before the write, the entry stays pending and another consumer claims it (XAUTOCLAIM).
The pay route writes the same order at once, so this is the safety net, not the fast path.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from commerce.flash_sale.checkout import Checkout
from commerce.orders import Confirmation
from infra.background import PeriodicTask

log = logging.getLogger(__name__)

GROUP = "order-writers"
BATCH = 200
CLAIM_IDLE_MS = 5_000


def _text(fields: dict[Any, Any]) -> dict[str, str]:
    return {(k.decode() if isinstance(k, bytes) else str(k)): (v.decode() if isinstance(v, bytes)
            else str(v)) for k, v in fields.items()}


class OrderLogConsumer(PeriodicTask):
    def __init__(self, checkout: Checkout, name: str | None = None, idle_s: float = 0.5) -> None:
        super().__init__("order-log", self.drain_once, idle_s)
        self.checkout = checkout
        self.consumer = name or f"{socket.gethostname()}-{os.getpid()}"
        self._groups: set[int] = set()

    async def _ensure_group(self, sale_id: int) -> None:
        if sale_id in self._groups:
            return
        await self.checkout.store.ensure_log_group(sale_id, GROUP)
        self._groups.add(sale_id)

    async def drain_once(self) -> int:
        """Write and ack what is waiting in every active sale's log; returns entries handled."""
        done = 0
        for sale_id in await self.checkout.store.active_sales():
            done += await self.drain_sale(sale_id)
        return done

    async def drain_sale(self, sale_id: int) -> int:
        await self._ensure_group(sale_id)
        store = self.checkout.store
        entries = await store.read_log_group(sale_id, GROUP, self.consumer, CLAIM_IDLE_MS, BATCH)
        if not entries:
            return 0
        session_id = await self.checkout.session_of(sale_id) or 0
        ids = []
        for entry_id, fields in entries:
            if not fields:  # trimmed away; nothing to write
                ids.append(entry_id)
                continue
            conf = Confirmation.from_fields(session_id, _text(fields))
            await self.checkout.record(conf)
            ids.append(entry_id)
        await store.ack_log(sale_id, GROUP, ids)
        return len(ids)


async def read_log(checkout: Checkout, sale_id: int) -> list[dict[str, str]]:
    """Every confirmation of a sale (the stream is bounded by the sale's stock)."""
    return [_text(fields) for _id, fields in await checkout.store.log_entries(sale_id)]
