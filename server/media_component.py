"""Wires the WebRTC side of media/ into the app: WHIP/WHEP routes, the hub, the demo stream."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from media.hub import HubConfig, MediaHub
from media.keys import media_hub_key, publisher_taps_key
from media.tap import PublisherTaps
from server.api import Api
from server.cluster_component import ownership, subscribe_everywhere
from server.demo import demo_seeders_key
from server.demo_stream import seed_demo_stream
from server.keys import database_key, events_key, settings_key
from server.revocations import revocations_key
from server.routes import guest, media_cors, whep, whip


def setup(app: web.Application, api: Api) -> None:
    # Created now, not in the context, so components wired after this one can add their
    # packet sinks from their own setup (see media/tap.py).
    app[publisher_taps_key] = PublisherTaps()
    api.operations.extend(whip.api.operations)
    api.operations.extend(whep.api.operations)
    api.operations.extend(guest.api.operations)
    api.operations.extend(media_cors.api.operations)
    app.on_response_prepare.append(media_cors.add_cors_headers)
    app.cleanup_ctx.append(media_hub_ctx)
    app[demo_seeders_key].append(seed_demo_stream)


async def media_hub_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    config = HubConfig(settings.stun_urls, settings.webrtc_viewer_cap,
                       settings.whep_seats_per_address, settings.whep_connect_deadline_s,
                       settings.publisher_grace_s)
    hub = MediaHub(config, app[database_key], app[events_key], app[publisher_taps_key],
                   ownership(app))
    app[media_hub_key] = hub
    # Ended in any process: the stream stops here if it runs here.
    unsubscribe = subscribe_everywhere(app, hub.on_event, kinds=("session_ended",))
    # A host disabled or demoted (in any process) loses their live publishers here.
    listeners = app[revocations_key].listeners
    listeners.append(hub.on_user_revoked)
    try:
        yield
    finally:
        listeners.remove(hub.on_user_revoked)
        unsubscribe()
        # Every publisher and viewer peer, and the demo source, are closed here.
        await hub.close()
