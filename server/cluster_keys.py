"""This process in the cluster (`Cluster`) and its app key, shared by the cluster component and
the forwarding middleware."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web
from redis.asyncio import Redis

from cluster.bus import ClusterBus
from cluster.forward import Forwarder
from cluster.lease import Leases
from cluster.media_owners import MediaOwners
from cluster.registry import ProcessInfo, ProcessRegistry

# A process or media owner silent this long is taken for dead.
LEASE_MS = 6_000
# Events every process must hear wherever they were published: a session's start and end (the
# processes holding its media act on them) and token revocations (each process's cut-offs and
# sockets). Moderation, stock and group-buy counters already reach every process through the
# room's Redis state and channel (realtime/), so they are not carried twice.
CLUSTER_KINDS = ("stream_started", "session_ended", "token_revoked")


@dataclass
class Cluster:
    me: ProcessInfo
    forwarder: Forwarder
    # Set when Redis is up (cluster_ctx).
    registry: ProcessRegistry = field(init=False)
    owners: MediaOwners = field(init=False)
    bus: ClusterBus = field(init=False)
    leases: Leases = field(init=False)
    redis: Redis = field(init=False)

    def connect(self, redis: Redis) -> None:
        self.redis = redis
        self.registry = ProcessRegistry(redis, self.me, LEASE_MS)
        self.owners = MediaOwners(redis, self.me.process_id, self.me.node_id, LEASE_MS)
        self.bus = ClusterBus(redis, self.me.process_id, CLUSTER_KINDS)
        self.leases = Leases(redis, self.me.process_id)


cluster_key = web.AppKey("cluster", Cluster)
