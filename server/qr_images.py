"""QR codes drawn on the server (segno), for every page that shows one: a batch's trace label,
an invite or share poster, a pickup code. One place so each looks and is cached the same."""

from __future__ import annotations

import io

import segno
from aiohttp import web

QR_CACHE = "public, max-age=3600"


def qr_svg(text: str, title: str, scale: int = 8) -> bytes:
    buf = io.BytesIO()
    segno.make(text, error="m").save(buf, kind="svg", scale=scale, border=4, title=title,
                                     xmldecl=False)
    return buf.getvalue()


def qr_png(text: str, scale: int = 8) -> bytes:
    buf = io.BytesIO()
    segno.make(text, error="m").save(buf, kind="png", scale=scale, border=4)
    return buf.getvalue()


def qr_response(body: bytes, kind: str, cache: str = QR_CACHE) -> web.Response:
    """An image answer that can carry no script: `default-src 'none'` even for the SVG.
    A QR code of something private (a pickup code) passes `cache="private, no-store"`."""
    return web.Response(body=body, content_type="image/svg+xml" if kind == "svg" else "image/png",
                        headers={"Cache-Control": cache,
                                 "Content-Security-Policy": "default-src 'none'"})
