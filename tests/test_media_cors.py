"""WHIP/WHEP from another origin (preflights, CORS on every answer, WWW-Authenticate on 401),
and the RTMP application name.

Guards against browser players and publishers on other origins being unable to use WHIP/WHEP
(OPTIONS answered 405), 401s without a challenge, and any RTMP app name being accepted.
"""

from __future__ import annotations

import asyncio

import pytest

from infra.settings import Settings
from media.replay_keys import rtmp_key
from tests.media_flow import host_session
from tests.media_flow import publish as rtmp_publish
from tests.test_media_webrtc_errors import offer_sdp
from tests.webrtc_clients import SDP

pytestmark = pytest.mark.timeout(60)

STUDIO = "https://studio.example.cn"


async def test_preflights_and_cors_headers(make_api, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    api = await make_api(settings.with_(allowed_origins=(STUDIO,)))
    _, session_id, key = await host_session(api)
    for path, post in ((f"/whip/{session_id}", True), (f"/whip/{session_id}/abc", False),
                       (f"/whep/{session_id}", True), (f"/whep/{session_id}/abc", False)):
        resp = await api.client.options(path, headers={
            "Origin": STUDIO, "Access-Control-Request-Method": "POST" if post else "DELETE",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert resp.status == 204, path
        h = resp.headers
        assert "POST" in h["Access-Control-Allow-Methods"] and "DELETE" in h["Access-Control-Allow-Methods"]
        for name in ("Authorization", "Content-Type", "If-Match"):
            assert name in h["Access-Control-Allow-Headers"]
        for name in ("Location", "Link", "ETag", "Accept-Patch"):
            assert name in h["Access-Control-Expose-Headers"]
        expected = "*" if path.startswith("/whep") else STUDIO
        assert h["Access-Control-Allow-Origin"] == expected
        assert (h.get("Accept-Post") == "application/sdp") is post

    # WHEP is anonymous: any origin; errors carry the header too.
    resp = await api.client.post(f"/whep/{session_id}", data=await offer_sdp(),
                                 headers={**SDP, "Origin": "https://player.example"})
    assert resp.status == 409 and resp.headers["Access-Control-Allow-Origin"] == "*"
    # WHIP: only this service's origins; a 401 carries a Bearer challenge.
    resp = await api.client.post(f"/whip/{session_id}", data=await offer_sdp(),
                                 headers={**SDP, "Origin": STUDIO})
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert resp.headers["Access-Control-Allow-Origin"] == STUDIO
    resp = await api.client.options(f"/whip/{session_id}", headers={"Origin": "https://evil.example"})
    assert resp.status == 204 and "Access-Control-Allow-Origin" not in resp.headers
    # Any 401 of the API says how to authenticate (RFC 9110).
    resp = await api.client.get("/api/orders")
    assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert key


async def test_rtmp_app_name_is_checked(make_api, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    api = await make_api(settings.with_(rtmp_port=0))
    _, session_id, key = await host_session(api)
    port = api.app[rtmp_key].port
    wrong = await rtmp_publish(f"rtmp://127.0.0.1:{port}/foo/{key}", 2)
    assert await asyncio.wait_for(wrong.wait(), 15) != 0
    resp = await api.client.get(f"/api/sessions/{session_id}")
    assert (await resp.json())["status"] == "scheduled"
    right = await rtmp_publish(f"rtmp://127.0.0.1:{port}/live/{key}", 2)
    assert await asyncio.wait_for(right.wait(), 15) == 0
