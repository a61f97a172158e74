"""Wires notifications in: domain events become a user's notifications, delivered live.

A notification is made where its event is published (the in-process bus hears each event
once, in one process), then emitted to the user's sockets in every process through the
Socket.IO Redis manager (realtime/me_namespace.py). Going live fans out in the background,
so the publisher's WHIP answer does not wait for thousands of subscribers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from aiohttp import web
from sqlalchemy import select

from commerce import live_sessions, notifications
from commerce.accounts import Community, Membership
from commerce.catalog import Product
from commerce.community_notices import CommunityNotice
from commerce.events import DomainEvent
from commerce.flash_sale.sales import Sale
from commerce.notifications import NoticeKind, Notification
from commerce.orders import Order, OrderStatus
from realtime.me_namespace import deliver
from server.api import Api
from server.keys import database_key, events_key, settings_key
from server.realtime_component import hub_key
from server.routes import notices as notices_routes
from server.wechat_messages import (
    IdentityTableOpenIds,
    OpenIdSource,
    WeChatConfig,
    WeChatSubscribeMessages,
)

log = logging.getLogger(__name__)

wechat_key = web.AppKey("wechat_messages", WeChatSubscribeMessages)
openids_key = web.AppKey("wechat_openids", OpenIdSource)
KINDS = ("order_status", "order_refunded", "claim_filed", "claim_decided", "session_live",
         "community_notice", "notice_stored")


def setup(app: web.Application, api: Api) -> None:
    api.operations.extend(notices_routes.api.operations)
    app.cleanup_ctx.append(notices_ctx)


class Notices:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.tasks: set[asyncio.Task[None]] = set()

    async def on_event(self, event: DomainEvent) -> None:
        data = event.data
        user_id = data.get("user_id")
        if event.kind == "session_live" and event.session_id is not None:
            self.background(self.session_live(event.session_id))
            return
        if event.kind == "community_notice":
            self.background(self.community_notice(int(data["notice_id"])))
            return
        if event.kind == "notice_stored":
            async with self.app[database_key].session() as db:
                await self.send(await db.get(Notification, int(data["notification_id"])))
            return
        if not isinstance(user_id, int):
            return
        if event.kind == "order_status" and data.get("status") == OrderStatus.READY.value:
            await self.order_notice(user_id, NoticeKind.ORDER_READY, int(data["order_id"]), {})
        elif event.kind == "order_refunded":
            await self.order_notice(user_id, NoticeKind.ORDER_REFUNDED, int(data["order_id"]),
                                    {"amount_fen": data.get("amount_fen")})
        elif event.kind in ("claim_filed", "claim_decided") and data.get("status") in (
                "approved", "rejected", "reshipped"):
            params = {"claim_id": data["claim_id"], "status": data["status"],
                      "payout_fen": data.get("payout_fen", 0)}
            async with self.app[database_key].session() as db:
                notice = await notifications.notify(
                    db, user_id, NoticeKind.CLAIM_DECIDED, params, "/orders",
                    f"claim:{data['claim_id']}")
            await self.send(notice)

    def background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def community_notice(self, notice_id: int) -> None:
        """Deliver a community notice's stored notifications live, and through WeChat."""
        try:
            async with self.app[database_key].session() as db:
                notice = await db.get(CommunityNotice, notice_id)
                if notice is None:
                    return
                community = await db.get(Community, notice.community_id)
                made = list((await db.execute(
                    select(Notification).join(Membership, Membership.user_id == Notification.user_id)
                    .where(Membership.community_id == notice.community_id,
                           Notification.dedupe == f"community_notice:{notice_id}"))).scalars())
            for notification in made:
                await self.send(notification)
            wechat = self.app.get(wechat_key)
            if wechat is not None and made and community is not None:
                openids = await self.app[openids_key].openids([n.user_id for n in made])
                sent = await wechat.tell_notice(openids, community.name, notice.text,
                                                notice.created_at)
                log.info("wechat community notices", extra={"notice_id": notice_id, "sent": sent})
        except Exception:
            log.exception("community notice not delivered", extra={"notice_id": notice_id})

    async def order_notice(self, user_id: int, kind: NoticeKind, order_id: int,
                           extra: dict[str, Any]) -> None:
        async with self.app[database_key].session() as db:
            name = (await db.execute(
                select(Product.name).join(Sale, Sale.product_id == Product.id)
                .join(Order, Order.sale_id == Sale.id).where(Order.id == order_id))).scalar()
            notice = await notifications.notify(
                db, user_id, kind, {"order_id": order_id, "product_name": name or "", **extra},
                "/orders", f"{kind.value}:{order_id}")
        await self.send(notice)

    async def send(self, notice: Notification | None) -> None:
        if notice is None or hub_key not in self.app:
            return
        try:
            await deliver(self.app[hub_key], notice.user_id, notice.public_dict())
        except Exception:
            # The notification is stored: the list shows it when the page next loads.
            log.warning("notification not delivered live", exc_info=True)

    async def session_live(self, session_id: int) -> None:
        try:
            async with self.app[database_key].session() as db:
                session = await live_sessions.get_session(db, session_id)
                params = {"session_id": session_id, "title": session.title}
                made = await notifications.notify_subscribers(db, session_id, params)
            for notice in made:
                await self.send(notice)
            wechat = self.app.get(wechat_key)
            if wechat is not None and wechat.config.template_id and made:
                openids = await self.app[openids_key].openids([n.user_id for n in made])
                sent = await wechat.tell_live(openids, session_id, session.title, session.started_at)
                log.info("wechat live messages", extra={"session_id": session_id, "sent": sent})
        except Exception:
            log.exception("going-live notifications failed", extra={"session_id": session_id})


async def notices_ctx(app: web.Application) -> AsyncIterator[None]:
    config = WeChatConfig.from_settings(app[settings_key])
    wechat = WeChatSubscribeMessages(config) if config is not None else None
    if wechat is not None and wechat_key not in app:
        app[wechat_key] = wechat
    if openids_key not in app:
        app[openids_key] = IdentityTableOpenIds(app[database_key])
    notices = Notices(app)
    unsubscribe = app[events_key].subscribe(notices.on_event, kinds=KINDS)
    try:
        yield
    finally:
        unsubscribe()
        for task in list(notices.tasks):
            task.cancel()
        await asyncio.gather(*notices.tasks, return_exceptions=True)
        if wechat is not None:
            await wechat.close()
