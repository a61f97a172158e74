"""Money that came in, one row per provider payment: which provider took it, under which of
its references, for which hold, and from which of its accounts (for compensation)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, String, UniqueConstraint, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.base import Base, as_utc, utcnow


class Payment(Base):
    """Money that came in: one row per provider payment, whatever became of its hold."""

    __tablename__ = "payments"
    __table_args__ = (UniqueConstraint("provider", "provider_ref", name="uq_payments_provider_ref"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    provider_ref: Mapped[str] = mapped_column(String(80))
    hold_id: Mapped[str] = mapped_column(String(40), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    paid_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    def public_dict(self) -> dict[str, Any]:
        return {"kind": "payment", "provider": self.provider, "provider_ref": self.provider_ref,
                "key": self.hold_id, "amount_fen": self.amount_fen,
                "at": as_utc(self.paid_at).isoformat()}


async def provider_of_payment(db: AsyncSession, payment_ref: str) -> str:
    """The provider that took the payment `payment_ref` ("" when none recorded it)."""
    if not payment_ref:
        return ""
    found = (await db.execute(select(Payment.provider).where(
        Payment.provider_ref == payment_ref[:80]).order_by(Payment.id).limit(1))).first()
    return str(found[0]) if found else ""
