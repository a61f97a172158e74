"""WHEP: a viewer POSTs an SDP offer (receive-only) and gets the live stream, forwarded as sent."""

from __future__ import annotations

from aiohttp import web

from media.keys import media_hub_key
from server.api import PUBLIC, Api, path_int
from server.keys import settings_key
from server.rate_limits import rate_limiter_key
from server.routes.signalling import public_ice_links, read_offer

api = Api()


@api.route("POST", "/whep/{id}", summary="WHEP: watch a live stream with low delay",
           tag="media", auth=PUBLIC, request_content_type="application/sdp",
           response_content_type="application/sdp",
           responses={201: "SDP answer; Location is the resource to DELETE",
                      404: "no such session", 409: "not live yet (error.hls: where to wait)",
                      413: "SDP offer too large", 415: "not application/sdp",
                      422: "the offer cannot receive the stream's codec",
                      429: "rate_limited, reason too_many_seats: this address holds "
                           "LINLI_WHEP_SEATS_PER_ADDRESS seats of the session (Retry-After)",
                      503: "WebRTC seats full: error.code webrtc_full, error.hls: the HLS URL"})
async def whep_view(request: web.Request) -> web.Response:
    session_id = path_int(request, "id")
    offer = await read_offer(request)
    resource_id, answer = await request.app[media_hub_key].view(
        session_id, offer, _seat_address(request))
    response = web.Response(status=201, text=answer, content_type="application/sdp")
    response.headers["Location"] = f"/whep/{session_id}/{resource_id}"
    for link in public_ice_links(request.app[settings_key].stun_urls):
        response.headers.add("Link", link)
    return response


def _seat_address(request: web.Request) -> str | None:
    """Whom the per-address seat cap counts: the client's address; None when it is exempt
    (LINLI_RATE_LIMIT_EXEMPT: the box itself, a benchmark)."""
    limiter = request.app.get(rate_limiter_key)
    if limiter is None:
        return request.remote
    address = limiter.request_ip(request)
    return None if limiter.is_exempt(address) else address


@api.route("DELETE", "/whep/{id}/{resource}", summary="WHEP: stop watching", tag="media",
           auth=PUBLIC, responses={404: "no such viewer"})
async def whep_stop(request: web.Request) -> web.Response:
    session_id = path_int(request, "id")
    await request.app[media_hub_key].stop_view(session_id, request.match_info["resource"])
    return web.Response(status=200)
