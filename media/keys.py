"""Typed app keys of the media subsystem (WebRTC side)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from media.tap import PublisherTaps

if TYPE_CHECKING:
    from media.hub import MediaHub

# Consumers of encoded packets (live HLS, recording) register here; see media/tap.py.
publisher_taps_key = web.AppKey("publisher_taps", PublisherTaps)
# The WebRTC side (WHIP publishers, WHEP viewers); set by server/media_component.py.
media_hub_key: web.AppKey[MediaHub] = web.AppKey("media_hub")
