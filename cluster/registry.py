"""Which processes are alive, where each one answers, and on which node it keeps its files.

Each process writes `linli:cluster:proc:{id}` = {"url", "node"} with a TTL and renews it every
`ttl / 3`; a process killed without clean-up disappears when its entry expires. A node's
processes are also listed in a sorted set scored by their entries' expiry, so "some live
process of node N" is one range query (the node that holds a replay's files answers for it).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

PREFIX = "linli:cluster:"


def new_process_id() -> str:
    """Short and URL-safe: it is also the prefix of this process's Engine.IO session ids."""
    return "p" + secrets.token_hex(5)


@dataclass(frozen=True)
class ProcessInfo:
    process_id: str
    node_id: str
    url: str | None  # its internal listener (None: serves no forwarded requests)


class ProcessRegistry:
    def __init__(self, redis: Redis, me: ProcessInfo, ttl_ms: int) -> None:
        self.redis = redis
        self.me = me
        self.ttl_ms = ttl_ms
        self._known: dict[str, tuple[float, ProcessInfo | None]] = {}

    @staticmethod
    def _key(process_id: str) -> str:
        return f"{PREFIX}proc:{process_id}"

    @staticmethod
    def _node_key(node_id: str) -> str:
        return f"{PREFIX}node:{node_id}"

    async def register(self) -> None:
        """Also the renewal: called every ttl/3 by the app's heartbeat."""
        value = json.dumps({"url": self.me.url, "node": self.me.node_id, "pid": os.getpid()})
        now_ms = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key(self.me.process_id), value, px=self.ttl_ms)
            pipe.zadd(self._node_key(self.me.node_id), {self.me.process_id: now_ms + self.ttl_ms})
            pipe.zremrangebyscore(self._node_key(self.me.node_id), 0, now_ms)
            await pipe.execute()

    async def unregister(self) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(self.me.process_id))
            pipe.zrem(self._node_key(self.me.node_id), self.me.process_id)
            await pipe.execute()

    async def lookup(self, process_id: str) -> ProcessInfo | None:
        """A live process's entry, None once it stopped or its entry expired. Cached for a
        second: forwarding a crowd's requests must not cost a Redis read each."""
        if process_id == self.me.process_id:
            return self.me
        now = time.monotonic()
        cached = self._known.get(process_id)
        if cached is not None and now - cached[0] < 1.0:
            return cached[1]
        raw = await self.redis.get(self._key(process_id))
        info = None
        if raw is not None:
            data = json.loads(raw)
            info = ProcessInfo(process_id, str(data["node"]), data.get("url"))
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[process_id] = (now, info)
        return info

    def forget(self, process_id: str) -> None:
        self._known.pop(process_id, None)

    async def alive(self, process_id: str) -> bool:
        return await self.lookup(process_id) is not None

    async def any_of_node(self, node_id: str) -> ProcessInfo | None:
        """A live process of `node_id` that serves forwarded requests (this one if it is)."""
        if node_id == self.me.node_id:
            return self.me
        now_ms = int(time.time() * 1000)
        members = await self.redis.zrangebyscore(self._node_key(node_id), now_ms, "+inf")
        for member in members:
            process_id = member.decode() if isinstance(member, bytes) else str(member)
            info = await self.lookup(process_id)
            if info is not None and info.url:
                return info
        return None


def node_id_for(data_dir: Path) -> str:
    """The node's id, kept in its data dir: workers sharing the dir (and so the recordings on
    it) are one node; a second node has a dir of its own and so an id of its own."""
    path = data_dir / "node_id"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pass  # another worker wrote it first
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write("n" + secrets.token_hex(6))
    for _ in range(50):
        text = path.read_text().strip()
        if text:
            return text
        time.sleep(0.01)  # written by a sibling just now
    raise RuntimeError(f"{path} is empty")
