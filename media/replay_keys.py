"""App keys of the HLS / recording / replay side of media."""

from __future__ import annotations

from aiohttp import web

from media.replay_service import ReplayService
from media.rtmp_server import RtmpIngest

replays_key = web.AppKey("replays", ReplayService)
rtmp_key = web.AppKey("rtmp", RtmpIngest)
