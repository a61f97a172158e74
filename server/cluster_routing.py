"""Which requests belong to another process, and forwarding them there (cluster/forward.py).

- WHIP and WHEP (offers, DELETE, PATCH) of a session: to its media owner. With no owner, or
  one that is gone, they are handled here (a WHIP offer then makes this process the owner).
- The host's view of a session (GET with a token: who publishes), a stream-key rotation (it
  may stop the publisher) and a guest on camera (invite, publish, end): to the media owner.
- Live HLS: playlists and parts from the media owner (they are in its memory), complete
  segments from its node; replays (files and status) from the node that recorded them; a
  process of the same node reads files from the shared data dir itself.
- Engine.IO requests with a session id: to the process that made the id.
A forwarded request (valid mark) is handled where it lands, never forwarded again.
"""

from __future__ import annotations

import logging
import re

from aiohttp import web
from aiohttp.typedefs import Handler

from cluster.engineio_sids import process_of
from cluster.forward import HEADER, OwnerUnreachable
from cluster.registry import ProcessInfo
from media.recordings import recordings_key
from server.cluster_keys import Cluster, cluster_key

log = logging.getLogger(__name__)

_MEDIA = re.compile(r"^/(?:whip|whep)/(\d{1,12})(?:/[^/]+)?$")
_SESSION = re.compile(r"^/api/sessions/(\d{1,12})(/stream-key|/replay|/guest|/guest/whip)?$")
_FILES = re.compile(r"^/(hls|replays)/(\d{1,12})/(?:360p/)?[^/]+$")
_PREFIXES = ("/whip/", "/whep/", "/api/sessions/", "/hls/", "/replays/", "/socket.io/")


def _cluster(request: web.Request) -> Cluster | None:
    return request.app.get(cluster_key)


@web.middleware
async def forward_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if not path.startswith(_PREFIXES):
        return await handler(request)
    cluster = _cluster(request)
    if cluster is None:
        return await handler(request)
    mark = request.headers.get(HEADER)
    if mark is not None:
        peer = cluster.forwarder.signer.verify(mark, request.method, request.raw_path)
        if peer is None:
            raise web.HTTPForbidden(text="bad forwarding mark")
        if peer and peer != request.remote:
            request = request.clone(remote=peer)
        return await handler(request)
    target, session_id, owner = await _route(cluster, request)
    if target is None or target.url is None or target.process_id == cluster.me.process_id:
        return await handler(request)
    try:
        response = await cluster.forwarder.forward(request, target.url)
        if not response.prepared:
            response.headers["X-Linli-Via"] = cluster.me.process_id
        return response
    except OwnerUnreachable:
        log.warning("process %s unreachable; handling %s here", target.process_id, path)
        cluster.registry.forget(target.process_id)
        if session_id is not None and owner == target.process_id:
            # Its lease has not lapsed yet, but it is gone: the next publish may claim it now.
            await cluster.owners.evict(session_id, owner)
        return await handler(request)


async def _route(cluster: Cluster, request: web.Request
                 ) -> tuple[ProcessInfo | None, int | None, str | None]:
    """(where to send it or None for here, the session it concerns, its media owner)."""
    path = request.path
    if request.method == "OPTIONS":
        return None, None, None
    if path.startswith("/socket.io/"):
        sid = request.query.get("sid")
        process = process_of(sid) if sid else None
        if process is None or process == cluster.me.process_id:
            return None, None, None
        return await cluster.registry.lookup(process), None, None
    if (match := _MEDIA.match(path)) is not None:
        return await _to_owner(cluster, int(match.group(1)))
    if (match := _SESSION.match(path)) is not None:
        session_id, tail = int(match.group(1)), match.group(2)
        if tail == "/replay":
            return await _to_recording_node(cluster, session_id), session_id, None
        if tail in ("/stream-key", "/guest", "/guest/whip") or (
                request.method == "GET" and "Authorization" in request.headers):
            return await _to_owner(cluster, session_id)
        return None, None, None
    if (match := _FILES.match(path)) is not None:
        session_id = int(match.group(2))
        if match.group(1) == "hls":
            recordings = request.app.get(recordings_key)
            if recordings is not None and recordings.is_publishing(session_id):
                # A publisher is recording here: this process owns the stream. Thousands of
                # LL-HLS players ask ~4 times a second each; two Redis round trips per request
                # were most of what one cost (py-spy).
                return None, session_id, None
            target, _sid, owner = await _to_owner(cluster, session_id)
            if owner == cluster.me.process_id:
                return None, session_id, owner
            if target is not None:
                # The live playlist and its parts are in the owner's memory (LL-HLS): only
                # complete segments are read from a shared dir by the owner's node mates.
                # The 360p rendition is plain HLS, all of it on disk.
                on_disk = "/360p/" in path or (
                    path.endswith(".ts") and path.rsplit("/", 1)[1].startswith("seg_"))
                here = on_disk and target.node_id == cluster.me.node_id
                return (None if here else target), session_id, owner
        return await _to_recording_node(cluster, session_id), session_id, None
    return None, None, None


async def _to_owner(cluster: Cluster, session_id: int
                    ) -> tuple[ProcessInfo | None, int | None, str | None]:
    owner = await cluster.owners.owner(session_id)
    if owner is None or owner == cluster.me.process_id:
        return None, session_id, owner
    target = await cluster.registry.lookup(owner)
    if target is None:
        # Registered no more: it died. Its lease goes, so this process may take the session.
        await cluster.owners.evict(session_id, owner)
    return target, session_id, owner


async def _to_recording_node(cluster: Cluster, session_id: int) -> ProcessInfo | None:
    record = await cluster.owners.record(session_id)
    if record is None or record.node_id == cluster.me.node_id:
        return None
    return await cluster.registry.any_of_node(record.node_id)
