"""The hold sweeper: expired holds go back to stock, ended sales close, finished sales retire.

Expiry lives in each sale's sorted set (expire.lua), so a hold is returned exactly once no
matter how many workers sweep; running a sweeper in every worker only costs a few calls.
"""

from __future__ import annotations

import logging

from commerce.flash_sale import sales
from commerce.flash_sale.checkout import Checkout
from commerce.flash_sale.lifecycle import close_sale
from commerce.flash_sale.order_log import GROUP
from infra.background import PeriodicTask

log = logging.getLogger(__name__)


class HoldSweeper(PeriodicTask):
    def __init__(self, checkout: Checkout, interval_s: float = 0.5, close_every: int = 4) -> None:
        super().__init__("hold-sweeper", self.sweep_once, interval_s)
        self.checkout = checkout
        self._close_every = close_every
        self._ticks = 0

    async def sweep_once(self) -> int:
        """Expire due holds of every active sale. Returns 0 so the loop paces itself."""
        store = self.checkout.store
        for sale_id in await store.active_sales():
            await self.checkout.expire(sale_id)
        self._ticks += 1
        if self._ticks % self._close_every == 0:
            await self._close_ended()
            await self._retire_finished()
        return 0

    async def _close_ended(self) -> None:
        async with self.checkout.uow() as db:
            due = await sales.due_to_close(db)
        for sale in due:
            await close_sale(self.checkout, sale.id, None)

    async def _retire_finished(self) -> None:
        """A closed sale with nothing held and its log fully consumed leaves the active set."""
        store = self.checkout.store
        for sale_id in await store.active_sales():
            counts = await store.counts(sale_id)
            if counts is None:
                await store.forget(sale_id)
                continue
            if counts.status != "closed" or counts.held:
                continue
            groups = await _xinfo_groups(self.checkout, sale_id)
            if all(g.get("pending", 0) == 0 and g.get("lag") == 0 for g in groups):
                await store.forget(sale_id)


async def _xinfo_groups(checkout: Checkout, sale_id: int) -> list[dict[str, object]]:
    try:
        raw = await checkout.store.log_groups(sale_id)
    except Exception:
        return []  # no log yet: nothing was sold
    found = []
    for entry in raw:
        name = entry.get("name")
        if name in (GROUP, GROUP.encode()):
            found.append({k if isinstance(k, str) else k.decode(): v for k, v in entry.items()})
    return found or [{"pending": 0, "lag": 1}]
