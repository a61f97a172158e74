"""How an approved claim moves money: through the commerce payment provider's `refund`.

`Refunder` is the small interface claims need, in the two halves of commerce/refunds.py:
`reserve` locks the order row, re-reads it, takes at most what is left of the order
(amount − already refunded), raises `order.refunded_fen`, writes a note into the order's
history and records the pending refund under the claim's key, all in the caller's transaction;
`pay` commits that (the decision and the refund become durable together), calls the provider
with the key and marks the refund done. What a claim pays beyond the order's price (坏一赔十)
cannot be a refund; `reserve_compensation` records it as a transfer to the buyer in the same
transaction, paid the same way. A crash between the two is finished by the refund
worker with the same key. Each goes through the provider that took the order's money
(commerce/refunds.py); a transfer no account of the buyer's can receive is paid back onto the
order's payment when it has room, or waits for her (待领取). After pickup an order cannot enter
the `refunded` state (orders.TRANSITIONS), which is why the status is left alone.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from commerce import refunds
from commerce.accounts import Principal
from commerce.errors import InvalidState
from commerce.locks import lock_row
from commerce.orders import Order, OrderTransition, get_order
from commerce.payments import NoPayeeAccount, PaymentProvider, PaymentProviders, providers_of
from commerce.refunds import Refund


class Refunder(Protocol):
    async def reserve(
        self, db: AsyncSession, order: Order, amount_fen: int, reason: str,
        actor: Principal | None, key: str,
    ) -> Refund:
        """Record a refund of up to `amount_fen` (pending) in the caller's transaction."""
        ...

    async def reserve_compensation(
        self, db: AsyncSession, order: Order, claim_id: int, amount_fen: int, reason: str,
    ) -> Refund:
        """Record the transfer of what a claim pays beyond the refund (pending), in the
        caller's transaction."""
        ...

    async def pay(self, db: AsyncSession, refund: Refund) -> str:
        """Commit, call the provider with the refund's key, mark it done; the provider's ref."""
        ...


class ProviderRefunder:
    def __init__(self, providers: PaymentProviders | PaymentProvider) -> None:
        self.providers = providers_of(providers)

    async def reserve(
        self, db: AsyncSession, order: Order, amount_fen: int, reason: str,
        actor: Principal | None, key: str,
    ) -> Refund:
        found = await refunds.find(db, key)
        if found is not None:
            return found
        await lock_row(db, Order, order.id)
        order = await get_order(db, order.id, fresh=True)
        amount = min(amount_fen, order.amount_fen - order.refunded_fen)
        if amount <= 0:
            raise InvalidState("订单已全额退款 / The order is already fully refunded",
                               reason="nothing_to_refund")
        order.refunded_fen += amount
        db.add(OrderTransition(
            order_id=order.id, from_status=order.status, to_status=order.status,
            actor_id=actor.user_id if actor else None,
            note=f"售后退款 after-sales refund {amount} fen [{key}]"[:200],
        ))
        return await refunds.record(db, key, order.payment_ref, amount, reason, order.id)

    async def reserve_compensation(
        self, db: AsyncSession, order: Order, claim_id: int, amount_fen: int, reason: str,
    ) -> Refund:
        # The claim's decision is claimed by the caller (one approval per claim), and the key
        # names the claim: a second writer finds this row instead of a second transfer.
        return await refunds.record_transfer(
            db, refunds.compensation_key(claim_id), refunds.payee_of(order.user_id), amount_fen,
            reason, order_id=order.id, payment_ref=order.payment_ref)

    async def pay(self, db: AsyncSession, refund: Refund) -> str:
        await db.commit()
        if refund.status == refunds.RefundStatus.DONE:
            return refund.provider_ref
        try:
            ref = await refunds.call_provider(self.providers, refund)
        except NoPayeeAccount as exc:
            if not await refunds.park(db, refund, str(exc.details.get("reason") or exc.code)):
                await db.flush()
                return ""
            await db.commit()
            ref = await refunds.call_provider(self.providers, refund)
        if ref:
            await refunds.finish(db, refund, ref, refunds.provider_for(self.providers, refund).name)
            await db.flush()
        return ref
