"""What one buyer pays for one unit of a sale: the single rule the sale card, the hold answer
and the payment all read, so the price a neighbour is shown is the price she is charged.

The rule: the list price; the community price when the buyer buys as a member of one of the
sale's communities; the group price once that community's group-buy has succeeded, if lower.
reserve.lua stores the community step in the hold as it reserves (Redis cannot call Python);
the amount charged is always recomputed here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BuyerPrice:
    """A unit price and why: `basis` is "list", "community" or "group"."""

    unit_fen: int
    basis: str
    list_fen: int

    def as_dict(self) -> dict[str, Any]:
        return {"your_price_fen": self.unit_fen, "your_price_basis": self.basis,
                "list_price_fen": self.list_fen}


def group_summary(raw: Any) -> dict[str, Any] | None:
    """A group-buy summary as Redis or a script hands it back (JSON text, bytes, a dict or
    nothing); None when there is no group-buy."""
    if not raw:
        return None
    if isinstance(raw, dict):
        return raw
    data = json.loads(raw)
    return data if isinstance(data, dict) else None


def buyer_price(list_fen: int, community_price_fen: int | None, community_id: int | None,
                group: dict[str, Any] | None = None) -> BuyerPrice:
    """The unit price for a buyer buying through `community_id` (None: not as a member), with
    that community's group-buy summary when it has one."""
    price, basis = int(list_fen), "list"
    if community_id is not None and community_price_fen is not None:
        price, basis = int(community_price_fen), "community"
    if community_id is not None and group and group.get("status") == "succeeded":
        group_fen = int(group.get("group_price_fen") or 0)
        if 0 <= group_fen < price:
            price, basis = group_fen, "group"
    return BuyerPrice(price, basis, int(list_fen))
