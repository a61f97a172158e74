"""Sharing a live room: the QR code of its link (the share sheet's poster) and the site icon."""

from __future__ import annotations

from aiohttp import web

from commerce import live_sessions
from server import qr_images
from server.api import PUBLIC, Api, json_response, path_int
from server.keys import database_key, settings_key
from server.routes.pages import WEB_DIR

api = Api()
FAVICON = WEB_DIR / "static" / "img" / "favicon.svg"


def room_url(request: web.Request, session_id: int) -> str:
    return f"{request.app[settings_key].base_url}/live/{session_id}"


@api.route("GET", "/api/sessions/{id}/share", summary="A session's share card: link, title, QR image",
           tag="sessions", auth=PUBLIC, responses={404: "No such session"})
async def share_card(request: web.Request) -> web.Response:
    session_id = path_int(request, "id")
    async with request.app[database_key].session() as db:
        session = await live_sessions.get_session(db, session_id)
    return json_response({"url": room_url(request, session.id), "title": session.title,
                          "farm": session.farm, "status": session.status,
                          "qr_svg": f"/api/sessions/{session.id}/qr.svg"})


@api.route("GET", "/api/sessions/{id}/qr.svg", summary="QR code (SVG) opening the session's live room",
           tag="sessions", auth=PUBLIC, response_content_type="image/svg+xml",
           responses={404: "No such session"})
async def share_qr(request: web.Request) -> web.Response:
    session_id = path_int(request, "id")
    async with request.app[database_key].session() as db:
        session = await live_sessions.get_session(db, session_id)
    url = room_url(request, session.id)
    response = qr_images.qr_response(qr_images.qr_svg(url, title=session.title or url), "svg")
    response.headers["X-Share-Url"] = url
    return response


@api.route("GET", "/favicon.ico", summary="Site icon", tag="pages", auth=PUBLIC,
           response_content_type="image/svg+xml")
async def favicon(request: web.Request) -> web.Response:
    return web.Response(body=FAVICON.read_bytes(), content_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=86400",
                                 "Content-Security-Policy": "default-src 'none'"})
