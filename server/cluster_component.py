"""Wires the cluster (cluster/) into the app: this process's registration, media ownership, the
cross-process event bus, request forwarding and the work done once per cluster."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager

from aiohttp import web
from sqlalchemy import update

from cluster.forward import Forwarder, Signer
from cluster.leader import ClusterLeader
from cluster.media_owners import MediaOwners
from cluster.registry import ProcessInfo, new_process_id, node_id_for
from commerce import live_sessions
from commerce.base import utcnow
from commerce.event_payloads import SessionEnded
from commerce.events import DomainEvent, Handler
from infra.background import PeriodicTask
from media.keys import media_hub_key
from server.api import Api
from server.cluster_keys import LEASE_MS, Cluster, cluster_key
from server.cluster_routing import forward_middleware
from server.keys import database_key, events_key, redis_key, settings_key

log = logging.getLogger(__name__)

HEARTBEAT_S = LEASE_MS / 3000
ORPHAN_CHECK_S = 1.0
REPLAY_LOCK_MS = 30_000
PROCESS_HEADER = "X-Linli-Process"
ORPHANS = "linli:media:orphans"


def setup(app: web.Application, api: Api) -> None:
    settings = app[settings_key]
    me = ProcessInfo(new_process_id(), settings.node_id or node_id_for(settings.data_dir),
                     settings.internal_url)
    app[cluster_key] = Cluster(me, Forwarder(Signer(settings.secret_key.get_secret_value(), me.process_id)))
    # Right after request_context: a request for another process goes there before any
    # handler (or rate limit) runs here.
    app.middlewares.append(forward_middleware)
    app.on_response_prepare.append(_name_process)
    app.on_shutdown.append(_release_forwards)
    app.cleanup_ctx.append(cluster_ctx)


async def _release_forwards(app: web.Application) -> None:
    app[cluster_key].forwarder.release()


async def _name_process(request: web.Request, response: web.StreamResponse) -> None:
    """Which process answered (an opaque id, also the prefix of its Engine.IO ids): for
    operators reading logs and for the cluster tests. A forwarded answer keeps the owner's."""
    response.headers.setdefault(PROCESS_HEADER, request.app[cluster_key].me.process_id)


class ClusterOwnership:
    """media.ownership.Ownership over the owner leases."""

    def __init__(self, owners: MediaOwners) -> None:
        self._owners = owners

    async def claim(self, session_id: int) -> bool:
        return await self._owners.claim(session_id) == self._owners.process_id

    async def release(self, session_id: int) -> None:
        await self._owners.release(session_id)


class ClusterBuildGate:
    """media.replay_service.BuildGate: a replay is built on the node holding its recording,
    one build of a session at a time across that node's processes."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    async def may_build(self, session_id: int) -> bool:
        record = await self._cluster.owners.record(session_id)
        return record is None or record.node_id == self._cluster.me.node_id

    def lock(self, session_id: int) -> AbstractAsyncContextManager[None]:
        return self._cluster.leases.hold(f"linli:replay:build:{session_id}", REPLAY_LOCK_MS)


def ownership(app: web.Application) -> ClusterOwnership | None:
    cluster = app.get(cluster_key)
    return None if cluster is None else ClusterOwnership(cluster.owners)


def build_gate(app: web.Application) -> ClusterBuildGate | None:
    cluster = app.get(cluster_key)
    return None if cluster is None else ClusterBuildGate(cluster)


def subscribe_everywhere(app: web.Application, handler: Handler,
                         kinds: Iterable[str]) -> Callable[[], None]:
    """For subscribers acting on what only their process holds (peers, recorders): they hear
    every process's events. Without the cluster, the local bus."""
    cluster = app.get(cluster_key)
    if cluster is None:
        return app[events_key].subscribe(handler, kinds=kinds)
    return cluster.bus.subscribe(handler, kinds)


async def builds_replay_here(app: web.Application, event: DomainEvent) -> bool:
    """Whether this process builds the replay of a session that just ended (and is not
    recording it any more): the process that recorded it last; if that one died, one process
    of its node; if it never had media, the process that ended it."""
    cluster = app.get(cluster_key)
    if cluster is None or event.session_id is None:
        return True
    record = await cluster.owners.record(event.session_id)
    if record is None:
        return event.origin is None
    if record.process_id == cluster.me.process_id:
        return True
    if record.node_id != cluster.me.node_id or await cluster.registry.alive(record.process_id):
        return False
    return await _adopt(cluster, event.session_id, record.process_id)


async def _adopt(cluster: Cluster, session_id: int, dead: str) -> bool:
    adopt = f"linli:replay:adopt:{session_id}:{dead}"
    return bool(await cluster.redis.set(adopt, cluster.me.process_id, nx=True, ex=86_400))


async def builds_replay_later(app: web.Application, session_id: int) -> bool:
    """The recording process of this node looked alive when the session ended; it may have died
    just before (a crash and a restart within its lease). Once its registration would have
    lapsed: True if it is gone and this process adopts the build. A build that finds the
    replay up to date is skipped, so a late adopter never builds it twice."""
    cluster = app.get(cluster_key)
    if cluster is None:
        return False
    record = await cluster.owners.record(session_id)
    if (record is None or record.process_id == cluster.me.process_id
            or record.node_id != cluster.me.node_id):
        return False
    await asyncio.sleep(LEASE_MS / 1000 + 1)
    cluster.registry.forget(record.process_id)
    if await cluster.registry.alive(record.process_id):
        return False
    return await _adopt(cluster, session_id, record.process_id)


async def cluster_ctx(app: web.Application) -> AsyncIterator[None]:
    cluster = app[cluster_key]
    cluster.connect(app[redis_key])
    await cluster.registry.register()
    detach = cluster.bus.attach(app[events_key])
    await cluster.bus.start()
    leader = ClusterLeader(app[redis_key], cluster.me.process_id, "media-orphans", LEASE_MS)
    tasks = [
        PeriodicTask("cluster-heartbeat", lambda: _heartbeat(app), idle_s=HEARTBEAT_S),
        PeriodicTask("media-orphans", leader.guard(lambda: _end_orphans(app)),
                     idle_s=ORPHAN_CHECK_S),
    ]
    for task in tasks:
        task.start()
    try:
        yield
    finally:
        for task in tasks:
            await task.stop()
        detach()
        await cluster.bus.stop()
        await leader.resign()
        try:
            await cluster.registry.unregister()
        except Exception:
            # Redis is away: the lease and the entry lapse by themselves.
            log.warning("cluster entries not removed at stop", exc_info=True)
        await cluster.forwarder.close()


async def _heartbeat(app: web.Application) -> int:
    cluster = app[cluster_key]
    await cluster.registry.register()
    hub = app.get(media_hub_key)
    if hub is not None:
        for session_id in list(hub.streams):
            if not await cluster.owners.renew(session_id):
                await hub.ownership_lost(session_id)
    return 0


async def _end_orphans(app: web.Application) -> int:
    """Live sessions whose media owner died (its registration lapsed) and that no process took
    over: ended once the publisher grace has passed since the owner was last known alive."""
    cluster = app[cluster_key]
    grace_ms = app[settings_key].publisher_grace_s * 1000
    async with app[database_key].session() as db:
        live = await live_sessions.list_sessions(db, live_sessions.SessionStatus.LIVE.value, 500)
    ended = 0
    now_ms = int(time.time() * 1000)
    for session in live:
        owner = await cluster.owners.owner(session.id)
        record = await cluster.owners.record(session.id)
        if owner is not None and await cluster.registry.alive(owner):
            await cluster.redis.hdel(ORPHANS, str(session.id))
            continue
        if record is None or await cluster.registry.alive(record.process_id):
            continue  # never published, or its owner let it go without ending it (no media)
        # Its owner stopped renewing about LEASE_MS before its registration lapsed.
        await cluster.redis.hsetnx(ORPHANS, str(session.id), now_ms - LEASE_MS)
        since = int(await cluster.redis.hget(ORPHANS, str(session.id)) or now_ms)
        if now_ms - since < grace_ms:
            continue
        if owner is not None:
            await cluster.owners.evict(session.id, owner)
        await cluster.redis.hdel(ORPHANS, str(session.id))
        if await _end_if_live(app, session.id):
            ended += 1
    return ended


async def _end_if_live(app: web.Application, session_id: int) -> bool:
    ended_at = utcnow()
    async with app[database_key].session() as db:
        result = await db.execute(
            update(live_sessions.LiveSession)
            .where(live_sessions.LiveSession.id == session_id,
                   live_sessions.LiveSession.status == live_sessions.SessionStatus.LIVE.value)
            .values(status=live_sessions.SessionStatus.ENDED.value, ended_at=ended_at))
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
    log.warning("session %s ended: its media owner died and no publisher came back", session_id)
    await app[events_key].publish(DomainEvent("session_ended", session_id, SessionEnded(ended_at=ended_at)))
    return True
