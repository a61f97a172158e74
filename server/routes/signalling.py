"""What WHIP and WHEP (RFC 9725) share over HTTP: reading the SDP offer of a POST, and the
ICE servers announced in `Link` headers."""

from __future__ import annotations

from aiohttp import web

from media.errors import NotSdp, SdpTooLarge
from media.sdp import MAX_SDP_BYTES, check_offer


async def read_offer(request: web.Request) -> str:
    """The SDP offer of a WHIP/WHEP POST: right type, bounded size, plausible content."""
    if request.content_type != "application/sdp":
        raise NotSdp(expected="application/sdp")
    if request.content_length is not None and request.content_length > MAX_SDP_BYTES:
        raise SdpTooLarge(limit=MAX_SDP_BYTES)
    # Read whole (bounded by the app's client_max_size) and kept by the request: an offer a
    # dead media owner could not take is answered here from the same body.
    return check_offer(await request.read())


def public_ice_links(urls: tuple[str, ...]) -> list[str]:
    """`Link: <stun:...>; rel="ice-server"` headers; TURN credentials stay private."""
    return [f'<{url}>; rel="ice-server"' for url in urls if url.startswith("stun:")]
