"""Live HLS, replays and their files.

Media files are served by name from a whitelist of patterns (no path ever comes from the
request), with the content types HLS players expect and cache headers that match how each
file changes: live playlists change every segment, segments never change once published.
A live stream recorded in this process is served Low-Latency HLS from memory (media/ll_hls.py,
docs/LLHLS.md): the playlist with its parts, blocking reloads, the parts themselves.
"""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from commerce import live_sessions
from commerce.accounts import Role
from commerce.errors import InvalidInput, NotFound
from media.ll_hls import PART_FILES, LiveEdge, parse_directive
from media.low_rendition import LOW_DIR
from media.recordings import recordings_key
from media.replay_keys import replays_key
from server.api import PUBLIC, Api, json_response, path_int, principal
from server.bounded_responses import BoundedFileResponse, BoundedResponse
from server.keys import database_key, settings_key

api = Api()

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
TS_TYPE = "video/mp2t"

_LIVE_FILES = re.compile(r"^(index\.m3u8|master\.m3u8|seg_\d{6}\.ts)$")
_LOW_FILES = re.compile(r"^(index\.m3u8|seg_\d{6}\.ts)$")
_REPLAY_FILES = re.compile(
    r"^(index\.m3u8|clip_\d{1,12}\.m3u8|r\d{1,9}_\d{5}\.ts|poster\.jpg|thumb_\d{3}\.jpg)$"
)
_TYPES = {".m3u8": PLAYLIST_TYPE, ".ts": TS_TYPE, ".jpg": "image/jpeg"}


def _media_file(folder: Path, name: str, pattern: re.Pattern[str]) -> Path:
    if not pattern.match(name):
        raise NotFound("没有这个文件 / No such file")
    path = folder / name
    if not path.is_file():
        raise NotFound("没有这个文件 / No such file")
    return path


def _serve(request: web.Request, path: Path, cache: str) -> web.StreamResponse:
    headers = {"Cache-Control": cache, "Content-Type": _TYPES[path.suffix],
               "X-Content-Type-Options": "nosniff", "Access-Control-Allow-Origin": "*"}
    # A reader that stops reading is cut after the deadline (server/bounded_responses.py).
    deadline = request.app[settings_key].media_send_timeout_s
    if path.suffix == ".m3u8":
        # Playlists are tiny and replaced atomically: read whole, never a torn read.
        return BoundedResponse(deadline, body=path.read_bytes(), headers=headers)
    return BoundedFileResponse(path, deadline, headers=headers)


_PLAYLIST_CACHE = "no-cache, max-age=1"
_IMMUTABLE = "public, max-age=86400, immutable"


def _headers(content_type: str, cache: str) -> dict[str, str]:
    return {"Cache-Control": cache, "Content-Type": content_type,
            "X-Content-Type-Options": "nosniff", "Access-Control-Allow-Origin": "*"}


async def _low_latency(request: web.Request, edge: LiveEdge, name: str) -> web.StreamResponse:
    deadline = request.app[settings_key].media_send_timeout_s
    if name == "index.m3u8":
        body = await edge.wait_playlist_bytes(parse_directive(request.query))
        return BoundedResponse(deadline, body=body, headers=_headers(PLAYLIST_TYPE, _PLAYLIST_CACHE))
    match = PART_FILES.match(name)
    if match is None:
        raise NotFound("没有这个文件 / No such file")
    part = await edge.wait_part(int(match.group(1)), int(match.group(2)))
    if part is None:
        raise NotFound("没有这个文件 / No such file")
    return BoundedResponse(deadline, body=part.data, headers=_headers(TS_TYPE, _IMMUTABLE))


@api.route("GET", "/hls/{session_id}/{name}", summary="Live HLS playlist and segments",
           tag="media", auth=PUBLIC, response_content_type=PLAYLIST_TYPE,
           query={"_HLS_msn": "LL-HLS blocking reload: answer once segment msn exists "
                  "(400 when more than 2 ahead, 503 hls_not_yet after 3 target durations)",
                  "_HLS_part": "with _HLS_msn: once that part exists"})
async def live_hls(request: web.Request) -> web.StreamResponse:
    session_id = path_int(request, "session_id")
    name = request.match_info["name"]
    recordings = request.app[recordings_key]
    edge = recordings.live_edge(session_id)
    if edge is not None and (name == "index.m3u8" or name.startswith("part_")):
        return await _low_latency(request, edge, name)
    # Not recorded here (over, or plain HLS): the files on disk; directives are moot then.
    folder = recordings.recording_dir(session_id)
    path = _media_file(folder, name, _LIVE_FILES)
    # The live playlist changes every ~2 s; a published segment never changes.
    cache = _PLAYLIST_CACHE if name.endswith(".m3u8") else _IMMUTABLE
    return _serve(request, path, cache)


@api.route("GET", "/hls/{session_id}/360p/{name}", summary="Live HLS 360p rendition (weak networks)",
           tag="media", auth=PUBLIC, response_content_type=PLAYLIST_TYPE)
async def live_hls_low(request: web.Request) -> web.StreamResponse:
    # Plain HLS from disk: complete segments only, so any worker of the node serves it.
    session_id = path_int(request, "session_id")
    name = request.match_info["name"]
    folder = request.app[recordings_key].recording_dir(session_id) / LOW_DIR
    path = _media_file(folder, name, _LOW_FILES)
    return _serve(request, path, _PLAYLIST_CACHE if name.endswith(".m3u8") else _IMMUTABLE)


@api.route("GET", "/replays/{session_id}/{name}", summary="Replay HLS VOD, clips, poster, thumbnails",
           tag="media", auth=PUBLIC, response_content_type=PLAYLIST_TYPE)
async def replay_file(request: web.Request) -> web.StreamResponse:
    session_id = path_int(request, "session_id")
    name = request.match_info["name"]
    folder = request.app[recordings_key].replay_dir(session_id)
    path = _media_file(folder, name, _REPLAY_FILES)
    # Segment names are unique per build, so they never change; playlists, poster and
    # thumbnails are replaced by a rebuild (more media after a late reconnect): cache briefly.
    immutable = name.endswith(".ts")
    return _serve(request, path,
                  "public, max-age=86400, immutable" if immutable else "public, max-age=60")


@api.route("GET", "/api/sessions/{id}/replay", summary="Replay status, progress and chapters",
           tag="replays", auth=PUBLIC)
async def get_replay(request: web.Request) -> web.Response:
    session_id = path_int(request, "id")
    return json_response(await request.app[replays_key].describe(session_id))


@api.route("POST", "/api/sessions/{id}/replay", summary="Rebuild a session's replay (its host)",
           tag="replays", auth=(Role.HOST, Role.ADMIN), responses={202: "Build queued"})
async def rebuild_replay(request: web.Request) -> web.Response:
    session_id = path_int(request, "id")
    async with request.app[database_key].session() as db:
        session = await live_sessions.get_session(db, session_id)
        live_sessions.ensure_owner(session, principal(request))
    request.app[replays_key].request(session_id, force=True)
    return json_response({"session_id": session_id, "status": "pending"}, status=202)


@api.route("GET", "/api/replays", summary="Finished replays, newest first", tag="replays",
           auth=PUBLIC, query={"limit": "1..100 (default 20)", "offset": "≥ 0"})
async def list_replays(request: web.Request) -> web.Response:
    limit = _query_int(request, "limit", 20, 1, 100)
    offset = _query_int(request, "offset", 0, 0, 1_000_000)
    return json_response(await request.app[replays_key].list_ready(limit, offset))


def _query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or not lo <= int(raw) <= hi:
        raise InvalidInput(f"{name} 必须在 {lo} 到 {hi} 之间 / {name} must be {lo}..{hi}", field=name)
    return int(raw)
