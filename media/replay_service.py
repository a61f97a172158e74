"""Replay jobs: when a stream is over, build its replay once, report progress, survive restarts.

Requests for a session coalesce: while a build runs, another request marks it dirty and one
more build follows. Builds run one at a time (ffmpeg is CPU-heavy and the box is shared).
Progress goes to SQL (the API's `percent`) and out as `replay_progress` domain events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from sqlalchemy import func, select

from commerce import catalog, live_sessions
from commerce.base import as_utc, utcnow
from commerce.errors import NotFound
from commerce.event_payloads import ReplayProgress
from commerce.events import DomainEvent, EventBus
from infra.database import Database
from media.recordings import Recordings
from media.replay_builder import Pin, ReplayBuilder
from media.replay_model import Replay, ReplayStatus

log = logging.getLogger(__name__)

# Progress is written and published at most this often (and on every status change).
PROGRESS_INTERVAL_S = 1.0
MAX_LIST = 100


class BuildGate(Protocol):
    """Where and when a replay may be built. With several processes: only on the node holding
    the recording's files, and by one process at a time (server/cluster_component.py)."""

    async def may_build(self, session_id: int) -> bool: ...

    def lock(self, session_id: int) -> AbstractAsyncContextManager[None]: ...


class AlwaysBuild:
    async def may_build(self, session_id: int) -> bool:
        return True

    def lock(self, session_id: int) -> AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()


class ReplayService:
    def __init__(self, database: Database, recordings: Recordings, events: EventBus,
                 gate: BuildGate | None = None) -> None:
        self._gate_keeper: BuildGate = gate or AlwaysBuild()
        self._database = database
        self._recordings = recordings
        self._events = events
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._dirty: set[int] = set()
        self._gate = asyncio.Semaphore(1)
        self._closing = False
        self._progress_tasks: set[asyncio.Task[None]] = set()
        self._forced: set[int] = set()

    # --- requests ---------------------------------------------------------------------------

    def request(self, session_id: int, force: bool = False) -> None:
        """Build the session's replay soon; repeated requests coalesce. Without `force`, a replay
        already built from every recorded segment is left as it is."""
        if self._closing:
            return
        if force:
            self._forced.add(session_id)
        if session_id in self._tasks:
            self._dirty.add(session_id)
            return
        task = asyncio.ensure_future(self._run(session_id))
        self._tasks[session_id] = task
        task.add_done_callback(lambda _t: self._done(session_id))

    def _done(self, session_id: int) -> None:
        self._tasks.pop(session_id, None)
        if session_id in self._dirty:
            self._dirty.discard(session_id)
            self.request(session_id)

    async def wait_idle(self, session_id: int) -> None:
        """For tests and the CLI: wait until no build for the session is queued or running."""
        while (task := self._tasks.get(session_id)) is not None:
            await asyncio.shield(task)

    async def resume(self) -> None:
        """After a restart: builds that were pending or interrupted run again."""
        async with self._database.session() as db:
            rows = await db.execute(select(Replay.session_id).where(
                Replay.status.in_([ReplayStatus.PENDING.value, ReplayStatus.PROCESSING.value])))
            ids = list(rows.scalars())
        for session_id in ids:
            self.request(session_id)

    async def close(self) -> None:
        self._closing = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- the job ----------------------------------------------------------------------------

    async def _run(self, session_id: int) -> None:
        forced = session_id in self._forced
        self._forced.discard(session_id)
        if not await self._gate_keeper.may_build(session_id):
            return  # the files are on another node; it builds
        # Another process of this node may build the same replay now: one at a time, and the
        # second finds it up to date.
        async with self._gate_keeper.lock(session_id):
            if not forced and await self._up_to_date(session_id):
                return
            await self._set(session_id, ReplayStatus.PENDING, 0)
            async with self._gate:
                try:
                    await self._build(session_id)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.exception("replay build failed", extra={"session_id": session_id})
                    await self._set(session_id, ReplayStatus.FAILED, 0, error=str(exc)[-500:])

    async def _up_to_date(self, session_id: int) -> bool:
        async with self._database.session() as db:
            row = await db.get(Replay, session_id)
            if row is None or row.status != ReplayStatus.READY.value:
                return False
            used = row.segments_used
        return used == len(await asyncio.to_thread(self._recordings.segments, session_id))

    async def _build(self, session_id: int) -> None:
        entries = await asyncio.to_thread(self._recordings.segments, session_id)
        if not entries:
            await self._set(session_id, ReplayStatus.EMPTY, 100)
            return
        async with self._database.session() as db:
            pins = [
                Pin(pin.id, pin.product_id, pin.batch_id, str((pin.snapshot or {}).get("name", "")),
                    as_utc(pin.pinned_at), as_utc(pin.unpinned_at) if pin.unpinned_at else None,
                    dict(pin.snapshot or {}))
                for pin in await catalog.pins_for_session(db, session_id)
            ]
        await self._set(session_id, ReplayStatus.PROCESSING, 1)
        last = [0.0, 1]

        def progress(percent: int) -> None:
            now = time.monotonic()
            if percent > last[1] and now - last[0] >= PROGRESS_INTERVAL_S:
                last[0], last[1] = now, percent
                task = asyncio.ensure_future(self._set(session_id, ReplayStatus.PROCESSING, percent))
                self._progress_tasks.add(task)
                task.add_done_callback(self._progress_tasks.discard)

        async with self._database.session() as db:
            row = await db.get(Replay, session_id)
            build = (row.builds if row is not None else 0) + 1
        builder = ReplayBuilder(self._recordings.recording_dir(session_id),
                                self._recordings.replay_dir(session_id), build)
        result = await builder.build(entries, pins, progress)
        # A late progress write must not land after (and hide) the final state.
        await asyncio.gather(*self._progress_tasks, return_exceptions=True)
        await self._set(session_id, ReplayStatus.READY, 100, result=result.__dict__)

    async def _set(self, session_id: int, status: ReplayStatus, percent: int,
                   error: str = "", result: dict[str, Any] | None = None) -> None:
        async with self._database.session() as db:
            row = await db.get(Replay, session_id)
            if row is None:
                row = Replay(session_id=session_id, chapters=[], thumbnails=[])
                db.add(row)
            row.status = status.value
            row.percent = percent
            row.error = error
            row.updated_at = utcnow()
            if result is not None:
                row.duration_s = result["duration_s"]
                row.segments_used = result["segments_used"]
                row.chapters = result["chapters"]
                row.thumbnails = result["thumbnails"]
                row.has_poster = result["has_poster"]
                row.builds = (row.builds or 0) + 1
        await self._events.publish(DomainEvent(
            "replay_progress", session_id, ReplayProgress(status=status.value, percent=percent)))

    # --- reads for the API --------------------------------------------------------------------

    async def describe(self, session_id: int) -> dict[str, Any]:
        """What `GET /api/sessions/{id}/replay` answers (404 for an unknown session)."""
        async with self._database.session() as db:
            session = await live_sessions.get_session(db, session_id)
            row = await db.get(Replay, session_id)
            data: dict[str, Any]
            if row is not None:
                data = row.public_dict()
            else:
                has_media = bool(await asyncio.to_thread(self._recordings.segments, session_id))
                status = "none"
                if has_media:
                    status = "recording" if session.status != "ended" else "pending"
                data = {"session_id": session_id, "status": status, "percent": 0,
                        "duration_s": 0.0, "hls": None, "poster": None, "thumbnails": [],
                        "chapters": [], "error": None, "updated_at": None}
            data["live"] = self._recordings.is_publishing(session_id)
            data["live_hls"] = f"/hls/{session_id}/index.m3u8" if self.has_live(session_id) else None
            data["title"] = session.title
            return data

    async def list_ready(self, limit: int, offset: int) -> dict[str, Any]:
        async with self._database.session() as db:
            ready = Replay.status == ReplayStatus.READY.value
            total = (await db.execute(select(func.count()).select_from(Replay).where(ready))).scalar_one()
            rows = await db.execute(
                select(Replay, live_sessions.LiveSession)
                .join(live_sessions.LiveSession, live_sessions.LiveSession.id == Replay.session_id)
                .where(ready).order_by(Replay.session_id.desc()).limit(min(limit, MAX_LIST)).offset(offset)
            )
            items = []
            for replay, session in rows.all():
                data = replay.public_dict()
                data.update(title=session.title, farm=session.farm, host_id=session.host_id,
                            ended_at=as_utc(session.ended_at).isoformat() if session.ended_at else None)
                items.append(data)
        return {"total": int(total), "items": items}

    def has_live(self, session_id: int) -> bool:
        return (self._recordings.recording_dir(session_id) / "index.m3u8").exists()

    async def ensure_session(self, session_id: int) -> None:
        async with self._database.session() as db:
            if await db.get(live_sessions.LiveSession, session_id) is None:
                raise NotFound("直播不存在 / No such live session")

