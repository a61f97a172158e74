"""Sharing a live room: the QR code of its link (the share sheet's poster) and the site icon."""

from __future__ import annotations

from aiohttp import web

from commerce import live_sessions, referrals
from server import qr_images
from server.api import PUBLIC, Api, json_response, optional_principal, path_int
from server.keys import database_key, settings_key
from server.routes.pages import WEB_DIR

api = Api()
FAVICON = WEB_DIR / "static" / "img" / "favicon.svg"


PAGES = {"live": "live", "preview": "preview"}


def room_url(request: web.Request, session_id: int, page: str = "live", ref: str = "") -> str:
    url = f"{request.app[settings_key].base_url}/{PAGES.get(page, 'live')}/{session_id}"
    return f"{url}?ref={ref}" if ref else url


def _page(request: web.Request) -> str:
    return "preview" if request.query.get("page") == "preview" else "live"


def _ref(request: web.Request) -> str:
    """A ref asked for in the query, when it is one (the poster's <img> sends no token)."""
    ref = request.query.get("ref", "")
    return ref if referrals.valid_code(ref) else ""


@api.route("GET", "/api/sessions/{id}/share", summary="A session's share card: link, title, QR "
           "image; a signed-in sharer's link and poster carry her share code (?ref=)",
           tag="sessions", auth=PUBLIC, query={"page": "live (default) | preview"},
           responses={404: "No such session"})
async def share_card(request: web.Request) -> web.Response:
    session_id = path_int(request, "id")
    who = optional_principal(request)
    page = _page(request)
    async with request.app[database_key].session() as db:
        session = await live_sessions.get_session(db, session_id)
        ref = await referrals.code_for(db, who.user_id) if who is not None else ""
    query = f"?page={page}" + (f"&ref={ref}" if ref else "")
    return json_response({"url": room_url(request, session.id, page, ref), "title": session.title,
                          "farm": session.farm, "status": session.status, "ref": ref or None,
                          "qr_svg": f"/api/sessions/{session.id}/qr.svg{query}"})


@api.route("GET", "/api/sessions/{id}/qr.svg", summary="QR code (SVG) opening the session's live room",
           tag="sessions", auth=PUBLIC, response_content_type="image/svg+xml",
           query={"page": "live (default) | preview", "ref": "a sharer's share code"},
           responses={404: "No such session"})
async def share_qr(request: web.Request) -> web.Response:
    session_id = path_int(request, "id")
    async with request.app[database_key].session() as db:
        session = await live_sessions.get_session(db, session_id)
    url = room_url(request, session.id, _page(request), _ref(request))
    response = qr_images.qr_response(qr_images.qr_svg(url, title=session.title or url), "svg")
    response.headers["X-Share-Url"] = url
    return response


@api.route("GET", "/favicon.ico", summary="Site icon", tag="pages", auth=PUBLIC,
           response_content_type="image/svg+xml")
async def favicon(request: web.Request) -> web.Response:
    return web.Response(body=FAVICON.read_bytes(), content_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=86400",
                                 "Content-Security-Policy": "default-src 'none'"})
