"""How an approved claim moves money: through the commerce payment provider's `refund`.

`Refunder` is the small interface claims need. `ProviderRefunder` adapts the commerce
engineer's `commerce.payments.PaymentProvider`: it refunds at most what is left of the order
(amount − already refunded), raises `order.refunded_fen` and writes a note into the order's
history, so the buyer's order shows the refund. After pickup an order cannot enter the
`refunded` state (orders.TRANSITIONS), which is why the status is left alone.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from commerce.accounts import Principal
from commerce.errors import InvalidState
from commerce.orders import Order, OrderTransition
from commerce.payments import PaymentProvider


class Refunder(Protocol):
    async def refund(
        self, db: AsyncSession, order: Order, amount_fen: int, reason: str, actor: Principal | None
    ) -> tuple[int, str]:
        """Refund up to `amount_fen`; returns (refunded fen, provider reference)."""
        ...


class ProviderRefunder:
    def __init__(self, provider: PaymentProvider) -> None:
        self.provider = provider

    async def refund(
        self, db: AsyncSession, order: Order, amount_fen: int, reason: str, actor: Principal | None
    ) -> tuple[int, str]:
        amount = min(amount_fen, order.amount_fen - order.refunded_fen)
        if amount <= 0:
            raise InvalidState("订单已全额退款 / The order is already fully refunded",
                               reason="nothing_to_refund")
        ref = await self.provider.refund(order.payment_ref, amount, reason)
        order.refunded_fen += amount
        db.add(OrderTransition(
            order_id=order.id, from_status=order.status, to_status=order.status,
            actor_id=actor.user_id if actor else None,
            note=f"售后退款 after-sales refund {amount} fen ({ref})"[:200],
        ))
        await db.flush()
        return amount, ref
