"""WHIP (RFC 9725): a publisher POSTs an SDP offer with its stream key, DELETEs to stop."""

from __future__ import annotations

from aiohttp import web

from commerce.errors import Unauthorized
from media.keys import media_hub_key
from server.api import PUBLIC, Api, path_int
from server.auth import bearer_token
from server.keys import settings_key
from server.routes.signalling import public_ice_links, read_offer

api = Api()

_ERRORS = {
    401: "no stream key (WWW-Authenticate: Bearer)",
    403: "wrong stream key (reason bad_stream_key), or its host may no longer stream "
         "(reason host_revoked)", 404: "no such session",
    409: "the session has ended (a publisher already live is replaced: the newest wins)",
    413: "SDP offer too large",
    415: "not application/sdp", 422: "no H.264/VP8 video or no Opus audio",
}


def _stream_key(request: web.Request) -> str:
    key = bearer_token(request.headers.get("Authorization"))
    if key is None or len(key) > 128:
        raise Unauthorized("需要推流密钥 / Stream key required (Authorization: Bearer)",
                           reason="stream_key_missing")
    return key


@api.route("POST", "/whip/{id}", summary="WHIP: publish a live stream (SDP offer in, answer out)",
           tag="media", auth=PUBLIC, request_content_type="application/sdp",
           response_content_type="application/sdp",
           responses={201: "SDP answer; Location is the resource to DELETE", **_ERRORS})
async def whip_publish(request: web.Request) -> web.Response:
    session_id = path_int(request, "id")
    key = _stream_key(request)
    offer = await read_offer(request)
    resource_id, answer = await request.app[media_hub_key].publish(session_id, key, offer)
    response = web.Response(status=201, text=answer, content_type="application/sdp")
    response.headers["Location"] = f"/whip/{session_id}/{resource_id}"
    for link in public_ice_links(request.app[settings_key].stun_urls):
        response.headers.add("Link", link)
    return response


@api.route("DELETE", "/whip/{id}/{resource}", summary="WHIP: stop publishing (ends the session)",
           tag="media", auth=PUBLIC, responses={401: "no stream key", 403: "wrong stream key",
                                                404: "no such publisher"})
async def whip_stop(request: web.Request) -> web.Response:
    session_id = path_int(request, "id")
    key = _stream_key(request)
    await request.app[media_hub_key].unpublish(session_id, key, request.match_info["resource"])
    return web.Response(status=200)
