"""Cross-origin WHIP and WHEP: preflights (`OPTIONS`) and the CORS headers of every response
(errors included; their 401s get `WWW-Authenticate` from the error middleware).

WHEP is anonymous, so any origin may use it (`*`). WHIP carries a stream key as a bearer
token (never a cookie), but a publishing page is still only trusted from this service's own
origins: `LINLI_ALLOWED_ORIGINS` and the origin of `LINLI_PUBLIC_URL`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from infra.settings import Settings
from server.api import PUBLIC, Api
from server.keys import settings_key

api = Api()

ALLOW_HEADERS = "Authorization, Content-Type, If-Match"
EXPOSE_HEADERS = "Location, Link, ETag, Accept-Patch, Accept-Post, Retry-After"
ALLOW_METHODS = "POST, DELETE, OPTIONS"
PREFLIGHT_MAX_AGE_S = "600"


def _origins(settings: Settings) -> set[str]:
    origins = set(settings.allowed_origins)
    if settings.public_url:
        parts = urlsplit(settings.public_url)
        origins.add(f"{parts.scheme}://{parts.netloc}")
    return origins


def allowed_origin(request: web.BaseRequest) -> str | None:
    """The Access-Control-Allow-Origin value for this request, or None (no CORS grant)."""
    if request.path.startswith("/whep/"):
        return "*"
    origin = request.headers.get("Origin")
    if origin and isinstance(request, web.Request) and origin in _origins(request.app[settings_key]):
        return origin
    return None


async def add_cors_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """`on_response_prepare`: errors rendered by the middleware get the headers too."""
    if not request.path.startswith(("/whip/", "/whep/")):
        return
    origin = allowed_origin(request)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        if origin != "*":
            response.headers.add("Vary", "Origin")


def _preflight(request: web.Request, endpoint: bool) -> web.Response:
    response = web.Response(status=204)
    response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
    response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
    response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE_S
    response.headers["Allow"] = "POST, OPTIONS" if endpoint else "DELETE, OPTIONS"
    if endpoint:
        response.headers["Accept-Post"] = "application/sdp"
    return response


_OPTIONS = {204: "Allowed methods and headers (CORS preflight); Accept-Post: application/sdp"}


@api.route("OPTIONS", "/whip/{id}", summary="WHIP: CORS preflight", tag="media", auth=PUBLIC,
           responses=_OPTIONS)
async def whip_options(request: web.Request) -> web.Response:
    return _preflight(request, endpoint=True)


@api.route("OPTIONS", "/whip/{id}/{resource}", summary="WHIP resource: CORS preflight",
           tag="media", auth=PUBLIC, responses=_OPTIONS)
async def whip_resource_options(request: web.Request) -> web.Response:
    return _preflight(request, endpoint=False)


@api.route("OPTIONS", "/whep/{id}", summary="WHEP: CORS preflight", tag="media", auth=PUBLIC,
           responses=_OPTIONS)
async def whep_options(request: web.Request) -> web.Response:
    return _preflight(request, endpoint=True)


@api.route("OPTIONS", "/whep/{id}/{resource}", summary="WHEP resource: CORS preflight",
           tag="media", auth=PUBLIC, responses=_OPTIONS)
async def whep_resource_options(request: web.Request) -> web.Response:
    return _preflight(request, endpoint=False)
