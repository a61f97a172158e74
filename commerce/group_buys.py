"""Group-buys (拼团) per sale and community: threshold, deadline, group price, outcome.

Progress is the community's people/units in Redis (live holds + paid orders, kept by the sale
scripts), so it survives restarts with Redis' AOF. The outcome is claimed in SQL with a
conditional UPDATE (one worker wins), then applied idempotently and marked applied; a crash
in between is finished by the next run of the deadline worker.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce import fulfilment, orders, refunds
from commerce.accounts import Community, Principal
from commerce.base import Base, as_utc, utcnow
from commerce.errors import Conflict, InvalidInput, InvalidState, NotFound
from commerce.event_payloads import GroupOutcome
from commerce.events import DomainEvent
from commerce.flash_sale import order_log, sales
from commerce.flash_sale.checkout import Checkout, group_event_data
from commerce.live_sessions import ensure_owner, get_session
from commerce.locks import lock_row
from commerce.orders import Confirmation, OrderStatus

log = logging.getLogger(__name__)


class GroupStatus(enum.StrEnum):
    OPEN = "open"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class GroupBuy(Base):
    __tablename__ = "group_buys"
    __table_args__ = (UniqueConstraint("sale_id", "community_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sale_id: Mapped[int] = mapped_column(ForeignKey("sales.id"), index=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    threshold: Mapped[int] = mapped_column()
    unit: Mapped[str] = mapped_column(String(8), default="people")  # people | units
    deadline: Mapped[datetime] = mapped_column()
    group_price_fen: Mapped[int] = mapped_column(BigInteger)
    on_failure: Mapped[str] = mapped_column(String(16), default="refund")  # refund | proceed
    status: Mapped[str] = mapped_column(String(16), default=GroupStatus.OPEN.value)
    final_count: Mapped[int | None] = mapped_column(nullable=True)
    applied: Mapped[bool] = mapped_column(default=False)
    decided_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def summary(self, community_name: str) -> dict[str, Any]:
        """What Redis keeps for reserve.lua to hand back, and what events carry."""
        return {
            "id": self.id, "sale_id": self.sale_id, "community_id": self.community_id,
            "community_name": community_name, "threshold": self.threshold, "unit": self.unit,
            "deadline": as_utc(self.deadline).isoformat(), "group_price_fen": self.group_price_fen,
            "on_failure": self.on_failure, "status": self.status, "final_count": self.final_count,
        }


async def _community_name(db: AsyncSession, community_id: int) -> str:
    community = await db.get(Community, community_id)
    if community is None:
        raise NotFound("小区不存在 / No such community")
    return community.name


async def create_group_buy(
    checkout: Checkout, actor: Principal, sale_id: int, community_id: int, threshold: int,
    unit: str, deadline: datetime, group_price_fen: int, on_failure: str, hold_ttl_s: int,
) -> dict[str, Any]:
    """The sale's host opens a group-buy for one community; the community joins the sale."""
    if as_utc(deadline) <= utcnow():
        raise InvalidInput("截止时间必须在未来 / deadline must be in the future", field="deadline")
    async with checkout.uow() as db:
        # The sale row is locked before it is read: two group-buys opened at once for two
        # communities must both land in `community_ids` (a JSON list rewritten whole), and one
        # community gets one group.
        await lock_row(db, sales.Sale, sale_id)
        sale = await sales.get_sale(db, sale_id)
        ensure_owner(await get_session(db, sale.session_id), actor)
        if sale.buckets > 1:
            raise sales.BucketsUnsupported()
        name = await _community_name(db, community_id)
        exists = (await db.execute(select(GroupBuy).where(
            GroupBuy.sale_id == sale_id, GroupBuy.community_id == community_id))).scalar_one_or_none()
        if exists is not None:
            raise Conflict("该小区已有拼团 / This community already has a group-buy here",
                           group_id=exists.id)
        if community_id not in (sale.community_ids or []):
            sale.community_ids = [*(sale.community_ids or []), community_id]
        group = GroupBuy(sale_id=sale_id, community_id=community_id, threshold=threshold, unit=unit,
                         deadline=as_utc(deadline), group_price_fen=group_price_fen,
                         on_failure=on_failure, created_by=actor.user_id)
        db.add(group)
        await db.flush()
        members = await sales.sale_members(db, sale)
        summary = group.summary(name)
    # Members of the (maybe new) community must be known to reserve.lua for progress to count.
    await checkout.store.open(sale.spec(hold_ttl_s), members)
    await checkout.store.set_group(sale_id, community_id, summary)
    people, units = await checkout.store.community_progress(sale_id, community_id)
    data = group_event_data(sale_id, summary, people, units)
    # The room's copy is read again with the sale's version (see Checkout.publish_group).
    await checkout.publish_group(sale_id, str(community_id), people, units)
    return data


async def group_view(checkout: Checkout, group_id: int) -> dict[str, Any]:
    async with checkout.uow() as db:
        group = await db.get(GroupBuy, group_id)
        if group is None:
            raise NotFound("拼团不存在 / No such group-buy")
        summary = group.summary(await _community_name(db, group.community_id))
    people, units = await checkout.store.community_progress(group.sale_id, group.community_id)
    data = group_event_data(group.sale_id, summary, people, units)
    if group.final_count is not None:
        data["count"] = group.final_count
    # settled: the outcome's refunds and releases are all done (status flips first).
    data.update(group_price_fen=group.group_price_fen, on_failure=group.on_failure,
                people=people, units=units, settled=group.applied)
    return data


async def restore(checkout: Checkout) -> None:
    """At start: put every group-buy summary back where reserve.lua reads it."""
    async with checkout.uow() as db:
        groups = list((await db.execute(select(GroupBuy))).scalars())
        names = {g.community_id: await _community_name(db, g.community_id) for g in groups}
    for group in groups:
        await checkout.store.set_group(group.sale_id, group.community_id,
                                       group.summary(names[group.community_id]))


async def decide_due(checkout: Checkout) -> int:
    """Decide every group-buy past its deadline and finish any decided but not applied."""
    now = utcnow()
    async with checkout.uow() as db:
        pending = list((await db.execute(
            select(GroupBuy).where(GroupBuy.applied.is_(False)))).scalars())
    done = 0
    for group in pending:
        if group.status == GroupStatus.OPEN and as_utc(group.deadline) > now:
            continue
        await decide(checkout, group.id)
        done += 1
    return done


async def decide(checkout: Checkout, group_id: int) -> str:
    """Claim the outcome (first writer wins), then apply it; safe to run again after a crash."""
    async with checkout.uow() as db:
        group = await db.get(GroupBuy, group_id)
        if group is None:
            raise NotFound("拼团不存在 / No such group-buy")
        if group.status == GroupStatus.OPEN:
            people, units = await checkout.store.community_progress(group.sale_id, group.community_id)
            count = people if group.unit == "people" else units
            outcome = GroupStatus.SUCCEEDED if count >= group.threshold else GroupStatus.FAILED
            claimed = await db.execute(
                update(GroupBuy).where(GroupBuy.id == group_id, GroupBuy.status == GroupStatus.OPEN.value)
                .values(status=outcome.value, final_count=count, decided_at=utcnow())
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return "claimed_elsewhere"
        await db.refresh(group)
        if group.applied:
            return group.status
        name = await _community_name(db, group.community_id)
        summary = group.summary(name)
        session_id = (await sales.get_sale(db, group.sale_id)).session_id
    # From here on payments of this community see the outcome (group price or not).
    await checkout.store.set_group(group.sale_id, group.community_id, summary)
    # Two deciders may both get here (the deadline worker of every process, or one resuming
    # after a crash): applying is idempotent per order (row lock + refund key), and only the
    # one that flips `applied` announces the outcome.
    await _apply(checkout, group, session_id)
    async with checkout.uow() as db:
        flipped = await db.execute(update(GroupBuy).where(
            GroupBuy.id == group_id, GroupBuy.applied.is_(False)).values(applied=True))
    if flipped.rowcount != 1:  # type: ignore[attr-defined]
        return group.status
    data = group_event_data(group.sale_id, summary, group.final_count or 0, group.final_count or 0)
    data["count"] = group.final_count or 0
    # The version after applying it: holds given back and refunds above count as earlier.
    progress = await checkout.store.progress(group.sale_id)
    data["ver"] = int(progress["ver"]) if progress else 0
    await checkout.bus.publish(DomainEvent("group_outcome", session_id, GroupOutcome(**data)))
    # Holds the outcome gave back were not announced one by one: the stock as it is now.
    await checkout.settle(group.sale_id, force=True)
    log.info("group-buy decided", extra={"group_id": group_id, "status": group.status})
    return group.status


async def _apply(checkout: Checkout, group: GroupBuy, session_id: int) -> None:
    if group.status == GroupStatus.SUCCEEDED:
        async with checkout.uow() as db:
            paid = await orders.orders_of_sale(db, group.sale_id, group.community_id)
        # An order written after this listing is settled by its writer (Checkout.record).
        for order in paid:
            await refunds.refund_difference(
                checkout.uow, checkout.payments, order.id, group.group_price_fen,
                f"group-buy {group.id} succeeded", refunds.rebate_key(order.id, group.id))
        return
    if group.on_failure != "refund":
        return  # proceeds at the normal price
    # Holds first (payments of this community now fail over to the refund below), then orders.
    community = str(group.community_id)
    for hold_id, hold in (await checkout.store.live_holds(group.sale_id)).items():
        if hold.get("c") == community:
            with contextlib.suppress(NotFound):  # paid or expired meanwhile
                await checkout.store.release(hold_id, None)
    # A hold paid a moment before its release above is confirmed in the sale's log but its order
    # may not be in SQL yet (the paying request is between the two steps): write every
    # confirmation of the community first, so the listing below cannot miss it. A hold
    # confirmed after this read was reserved after the listing above: a purchase made after
    # the outcome, which stands.
    for fields in await order_log.read_log(checkout, group.sale_id):
        if fields.get("community") == community:
            await checkout.record(Confirmation.from_fields(session_id, fields))
    async with checkout.uow() as db:
        paid = await orders.orders_of_sale(db, group.sale_id, group.community_id)
    for order in paid:
        if OrderStatus(order.status) in orders.BEFORE_PICKUP:
            # A concurrent decider (or a staff refund) may have refunded it a moment ago.
            with contextlib.suppress(InvalidState):
                await fulfilment.refund_order(checkout, order.id, None,
                                              f"group-buy {group.id} failed",
                                              to=OrderStatus.REFUNDED)
