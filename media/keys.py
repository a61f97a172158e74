"""Typed app keys of the media subsystem (WebRTC side)."""

from __future__ import annotations

from aiohttp import web

from media.tap import PublisherTaps

# Consumers of encoded packets (live HLS, recording) register here; see media/tap.py.
publisher_taps_key = web.AppKey("publisher_taps", PublisherTaps)
