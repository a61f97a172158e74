"""HTML pages and static assets from web/. Pages are static shells; data comes over the API."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from commerce.errors import NotFound
from server.api import PUBLIC, Api
from server.static_files import StaticFiles, add_folder, static_files_key

api = Api()

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
PAGES_DIR = WEB_DIR / "pages"

# Pages send these: no inline scripts, no framing by other sites, no sniffing. `connect-src
# 'self'` covers the Socket.IO WebSocket too: CSP Level 3 matches ws:/wss: to the page's own host
# and port (Chromium, Firefox, Safari 15.4+), so no scheme-wide `ws: wss:` opening any host.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; "
        "base-uri 'self'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


async def page_response(request: web.Request, name: str) -> web.StreamResponse:
    """A page from web/pages, compressed and revalidated like every static file, with the
    security headers every page sends."""
    page = PAGES_DIR / f"{name}.html"
    if not page.is_file():
        raise NotFound()
    return await request.app[static_files_key].respond(request, page, SECURITY_HEADERS)


def _page_route(path: str, name: str, summary: str) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if "id" in request.match_info and not request.match_info["id"].isdigit():
            raise NotFound()
        return await page_response(request, name)

    handler.__name__ = f"page_{name}"
    api.route("GET", path, summary=summary, tag="pages", auth=PUBLIC,
              response_content_type="text/html")(handler)


_page_route("/", "index", "Home: live and upcoming sessions")
_page_route("/login", "login", "Sign in")
_page_route("/live/{id}", "live", "Live room (anonymous viewers welcome)")
_page_route("/host/{id}", "host", "Host console")
_page_route("/moderate/{id}", "moderate", "Moderation console")
_page_route("/replays", "replays", "Replay list")
_page_route("/replays/{id}", "replay", "Replay player with product chapters")
_page_route("/orders", "orders", "My orders")
_page_route("/pickup", "pickup", "Pickup day (staff): orders per session, community, point")
_page_route("/claims", "claims", "After-sales claims queue (assistants, admins; a host his own)")
_page_route("/reviews", "reviews", "Reviews and NPS of the shop: per product, batch, session; host replies")
_page_route("/nps/{id}", "nps", "The one-question survey for a picked-up order")
_page_route("/trace/{batch_code}", "trace", "Batch trace (QR target)")
_page_route("/dashboard", "dashboard", "Trust dashboard")
_page_route("/preview/{id}", "preview", "A scheduled session's preview with 预约")
_page_route("/me", "me", "My profile: interest tags and notifications")
_page_route("/studio", "studio", "Back office: the host's sessions (schedule, preview, share)")
_page_route("/catalog", "catalog", "Back office: products, batches, QC reports, trace, QR labels")
_page_route("/invites", "invites", "Invite neighbours: links and QR posters (hosts)")
_page_route("/communities", "communities", "The communities a host or 团长 serves: pickup points, "
            "join requests, members, 团长, notices")
_page_route("/join/{code}", "join", "Join a community from an invite link: sign up or sign in")
_page_route("/referrals", "referrals", "My share link, the neighbours it brought, my commission")
_page_route("/commissions", "commissions", "Back office: commission rates, payout report, payouts")
_page_route("/auth/wechat/callback", "wechat_callback", "Where WeChat sign-in comes back to")
_page_route("/koc", "koc", "品鉴官 programmes: rules, criteria, apply")
_page_route("/koc/admin", "koc_admin", "Back office: the host's programmes, applicants, samples")
_page_route("/ugc/new", "ugc_new", "Write a 晒单 from a picked-up order or a trial sample")
_page_route("/ugc/moderate", "ugc_moderate", "Assistants: approve or hide 晒单")
_page_route("/u/{id}", "profile", "A neighbour's public profile")
_page_route("/guest/{id}", "guest", "The guest's camera page (连线, phone)")


def install_static(app: web.Application) -> None:
    app[static_files_key] = StaticFiles()
    static = WEB_DIR / "static"
    static.mkdir(parents=True, exist_ok=True)
    add_folder(app, "/static", static, name="static")
    # Front-end libraries from the npm registry (web/package.json), served from their dist
    # folders only: nothing hand-copied, nothing else of node_modules exposed.
    for prefix, folder in VENDOR_DIRS.items():
        path = WEB_DIR / "node_modules" / folder
        if path.is_dir():
            add_folder(app, prefix, path, name=prefix.strip("/").replace("/", "_"))


VENDOR_DIRS = {
    "/vendor/socket.io": "socket.io-client/dist",
    "/vendor/hls": "hls.js/dist",
    "/vendor/jsqr": "jsqr/dist",
}
