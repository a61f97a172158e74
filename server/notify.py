"""One user's notification made by a request: stored, then delivered live to her open pages by
the notices component (server/notices_component.py) in whichever process holds her sockets."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from commerce import notifications
from commerce.event_payloads import NoticeStored
from commerce.events import DomainEvent
from commerce.notifications import NoticeKind
from server.keys import database_key, events_key


async def tell(app: web.Application, user_id: int, kind: NoticeKind, params: dict[str, Any],
               link: str, dedupe: str, session_id: int | None = None) -> None:
    """At most one notification per (user, `dedupe`): a retried request tells her once."""
    async with app[database_key].session() as db:
        notice = await notifications.notify(db, user_id, kind, params, link, dedupe)
    if notice is not None:
        await app[events_key].publish(DomainEvent(
            "notice_stored", session_id, NoticeStored(user_id=user_id, notification_id=notice.id)))
