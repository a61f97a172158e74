"""Live HLS, recording, RTMP ingest and replays wired into the app.

The recording side taps WebRTC publishers through `media.tap.PublisherTaps` when the WebRTC
component is present, and runs its own RTMP listener; both feed the same recorders.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator

from aiohttp import web

from commerce.events import DomainEvent
from infra.background import cancel_and_wait
from media.keys import media_hub_key, publisher_taps_key
from media.low_rendition import low_rendition_enabled
from media.recordings import FinalHook, Recordings, RecordingSink, recordings_key
from media.replay_keys import replays_key, rtmp_key
from media.replay_service import ReplayService
from media.rtmp_server import RtmpIngest
from server.api import Api
from server.cluster_component import (
    build_gate,
    builds_replay_here,
    builds_replay_later,
    subscribe_everywhere,
)
from server.keys import database_key, events_key, settings_key
from server.routes import replays as replay_routes

log = logging.getLogger(__name__)


def setup(app: web.Application, api: Api) -> None:
    api.operations.extend(replay_routes.api.operations)
    app.cleanup_ctx.append(media_ctx)
    # aiohttp waits for the requests in flight before the cleanup contexts run; a blocking
    # LL-HLS reload is one, held for up to three target durations.
    app.on_shutdown.append(_release_hls_waiters)
    # on_startup runs after every cleanup_ctx started, so the WebRTC side's registry exists.
    app.on_startup.append(_attach_tap)


async def media_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    recordings = Recordings(settings.data_dir / "media", asyncio.get_running_loop(),
                            part_target_s=settings.hls_part_target_s or None,
                            max_waiters=settings.hls_max_waiters,
                            low_rendition=low_rendition_enabled(settings.hls_low_rendition,
                                                                os.cpu_count()))
    replays = ReplayService(app[database_key], recordings, app[events_key], build_gate(app))
    # The hub's context ran first (server/wiring.py): it decides who publishes, RTMP included.
    rtmp = RtmpIngest(app[database_key], recordings, app[events_key],
                      grace_s=float(settings.publisher_grace_s), hub=app[media_hub_key])
    app[recordings_key] = recordings
    app[replays_key] = replays
    app[rtmp_key] = rtmp
    recordings.final_hooks.append(_build_when_over(replays))

    async def on_event(event: DomainEvent) -> None:
        if event.kind != "session_ended" or event.session_id is None:
            return
        session_id = event.session_id
        rtmp.end_session(session_id)
        if recordings.is_recording(session_id):
            # The recorder's final stop builds the replay once the last segment is on disk.
            await recordings.finish(session_id)
        elif await builds_replay_here(app, event):
            replays.request(session_id)
        else:
            task = asyncio.ensure_future(_request_if_adopted(session_id))
            later.add(task)
            task.add_done_callback(later.discard)

    later: set[asyncio.Task[None]] = set()

    async def _request_if_adopted(session_id: int) -> None:
        if await builds_replay_later(app, session_id):
            replays.request(session_id)

    # Ended in any process: the publisher and recorder stop where they run.
    unsubscribe = subscribe_everywhere(app, on_event, kinds=("session_ended",))
    if settings.rtmp_port >= 0:
        try:
            await rtmp.start(settings.host, settings.rtmp_port)
        except OSError:
            # A busy port must not take the whole service down; WHIP still works.
            log.exception("RTMP ingest could not listen", extra={"port": settings.rtmp_port})
    await replays.resume()
    try:
        yield
    finally:
        unsubscribe()
        for task in list(later):
            await cancel_and_wait(task)
        await replays.close()
        await rtmp.close()
        await recordings.close()


async def _release_hls_waiters(app: web.Application) -> None:
    app[recordings_key].release_waiters()


def _build_when_over(replays: ReplayService) -> FinalHook:
    async def hook(session_id: int) -> None:
        replays.request(session_id)

    return hook


async def _attach_tap(app: web.Application) -> None:
    if publisher_taps_key not in app:
        return
    taps = app[publisher_taps_key]
    recordings = app[recordings_key]
    taps.add_factory(lambda session_id: RecordingSink(recordings, session_id, taps.request_keyframe))
