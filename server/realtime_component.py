"""Wires the realtime hub into the app: Socket.IO on /socket.io/, commerce events into rooms."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from aiohttp import web

from cluster.engineio_sids import tag_session_ids
from commerce.events import DomainEvent
from realtime.actions import RoomActions
from realtime.hub import Hub, register_metrics
from realtime.live_namespace import LiveNamespace
from realtime.me_namespace import MeNamespace
from realtime.moderation_namespace import ModerationNamespace
from realtime.state import commerce_to_room
from server.api import Api
from server.cluster_keys import cluster_key
from server.keys import (
    database_key,
    events_key,
    metrics_key,
    redis_key,
    redis_url_key,
    settings_key,
    tokens_key,
)
from server.rate_limits import rate_limiter_key
from server.revocations import revocations_key
from server.routes import realtime as realtime_routes
from server.routes.realtime import actions_key
from server.trust_keys import room_words_key

log = logging.getLogger(__name__)

hub_key = web.AppKey("realtime_hub", Hub)


def setup(app: web.Application, api: Api) -> None:
    """Attach Socket.IO (routes must exist before start-up) and start the hub in a cleanup_ctx."""
    settings = app[settings_key]
    origins = [*settings.allowed_origins]
    if settings.public_url:
        origins.append(_origin(settings.public_url))
    hub = Hub(origins, max_queued_frames=settings.socket_max_queued_frames,
              max_queued_bytes=settings.socket_max_queued_bytes)
    hub.sio.attach(app)
    if cluster_key in app:
        # A long-poll landing in another process is forwarded to the one holding its session.
        tag_session_ids(hub.sio.eio, app[cluster_key].me.process_id)
    app[hub_key] = hub

    async def room_words(room: int) -> list[str]:
        return list((await hub.moderation.status(room)).get("banned_words") or [])

    app[room_words_key] = room_words
    register_metrics(hub, app[metrics_key])
    api.operations.extend(realtime_routes.api.operations)
    app.cleanup_ctx.append(realtime_ctx)
    # The one on_shutdown hook: aiohttp runs it before waiting for in-flight handlers, and open
    # websockets and long-polls are exactly those; cleanup contexts run only after that wait.
    app.on_shutdown.append(_release_clients)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def _release_clients(app: web.Application) -> None:
    await app[hub_key].release_clients()


async def realtime_ctx(app: web.Application) -> AsyncIterator[None]:
    hub = app[hub_key]
    await hub.start(app[redis_url_key], app[redis_key])
    actions = RoomActions(hub, app[database_key], app[events_key])
    app[actions_key] = actions
    limiter = app[rate_limiter_key]
    live = LiveNamespace(hub, app[database_key], app[tokens_key], actions, limiter)
    moderation = ModerationNamespace(hub, app[database_key], app[tokens_key], actions)
    me = MeNamespace(hub, app[database_key], app[tokens_key], limiter)
    hub.sio.register_namespace(live)
    hub.sio.register_namespace(moderation)
    hub.sio.register_namespace(me)
    listeners = app[revocations_key].listeners
    listeners += [live.drop_user, moderation.drop_user, me.drop_user]

    async def on_event(event: DomainEvent) -> None:
        if event.session_id is None:
            return
        room_event = commerce_to_room(event, hub.state)
        if room_event is not None:
            await hub.history.append(event.session_id, room_event)

    unsubscribe = app[events_key].subscribe(on_event)
    try:
        yield
    finally:
        unsubscribe()
        for drop in (live.drop_user, moderation.drop_user, me.drop_user):
            listeners.remove(drop)
        await hub.stop()
