"""Bad WHIP/WHEP input gets a clear 4xx with a stable code; the viewer cap points to HLS."""

from __future__ import annotations

import json

import pytest
from aiortc import RTCPeerConnection

from infra.settings import Settings
from media.sdp import MAX_SDP_BYTES
from tests.test_media_webrtc import new_session, no_leaked_peers  # noqa: F401 - autouse fixture
from tests.webrtc_clients import SDP, prefer, publish, view, wait_for

pytestmark = pytest.mark.timeout(60)


async def offer_sdp() -> str:
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return str(sdp)


async def test_whip_rejects_bad_input(make_api, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    api = await make_api(settings)
    session_id, key, _ = await new_session(api)
    good = await offer_sdp()
    auth = {"Authorization": f"Bearer {key}"}

    async def post(path: str, body: str | bytes, headers: dict[str, str]) -> tuple[int, str]:
        resp = await api.client.post(path, data=body, headers=headers)
        if resp.content_type == "application/json":
            return resp.status, (await resp.json())["error"]["code"]
        return resp.status, ""

    assert await post(f"/whip/{session_id}", good, SDP) == (401, "unauthorized")
    assert await post(f"/whip/{session_id}", good, {**SDP, "Authorization": "Bearer sk_wrong"}) == (
        403, "forbidden")
    assert (await post(f"/whip/{session_id + 999}", good, {**SDP, **auth}))[0] == 404
    assert await post(f"/whip/{session_id}", good, {"Content-Type": "application/json", **auth}) == (
        415, "unsupported_media_type")
    big = good + "a=x-pad:" + "x" * MAX_SDP_BYTES + "\r\n"
    assert await post(f"/whip/{session_id}", big, {**SDP, **auth}) == (413, "sdp_too_large")
    assert await post(f"/whip/{session_id}", "hello", {**SDP, **auth}) == (400, "bad_sdp")
    mangled = good.replace("a=fingerprint:", "a=fingerprint-x:").replace("a=ice-ufrag", "a=x")
    assert await post(f"/whip/{session_id}", mangled, {**SDP, **auth}) == (400, "bad_sdp")
    assert await post(f"/whip/{session_id}", b"v=0\xff\xfe", {**SDP, **auth}) == (400, "bad_sdp")
    # A receive-only offer is not a publisher.
    recv_only = good.replace("a=sendonly", "a=recvonly")
    assert await post(f"/whip/{session_id}", recv_only, {**SDP, **auth}) == (400, "bad_sdp")
    # Nothing was started by any of these.
    resp = await api.client.get(f"/api/sessions/{session_id}")
    assert (await resp.json())["status"] == "scheduled"

    resp = await api.client.delete(f"/whip/{session_id}/nope", headers=auth)
    assert resp.status == 404
    assert await post(f"/whep/{session_id + 999}", good, SDP) == (404, "not_found")
    assert await post(f"/whep/{session_id}", good, SDP) == (409, "not_live")
    assert await post(f"/whep/{session_id}", "v=1", SDP) == (400, "bad_sdp")
    assert await post(f"/whep/{session_id}", good, {"Content-Type": "text/plain"}) == (
        415, "unsupported_media_type")


async def test_whep_cap_points_to_hls_and_delete(make_api, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    api = await make_api(settings.with_(webrtc_viewer_cap=1))
    session_id, key, _ = await new_session(api)
    pub = await publish(api.client, session_id, key, audio=False)
    first = second = None
    try:
        assert pub.status == 201
        # The stream is H.264 (preferred on ingest): a viewer that can only take VP8 is told so.
        vp8_only = RTCPeerConnection()
        vp8_only.addTransceiver("video", direction="recvonly")
        prefer(vp8_only, "video/VP8")
        await vp8_only.setLocalDescription(await vp8_only.createOffer())
        resp = await api.client.post(f"/whep/{session_id}", data=vp8_only.localDescription.sdp, headers=SDP)
        await vp8_only.close()
        assert resp.status == 422
        assert (await resp.json())["error"]["code"] == "codec_unsupported"
        first = await view(api.client, session_id, audio=False)
        assert first.status == 201
        second = await view(api.client, session_id, audio=False)
        assert second.status == 503
        error = json.loads(second.body)["error"]
        assert error["code"] == "webrtc_full"
        assert error["hls"] == f"/hls/{session_id}/index.m3u8"
        # A viewer that leaves frees its seat.
        assert first.location is not None
        assert await wait_for(lambda: first is not None and first.pc.connectionState == "connected", 30)
        resp = await api.client.delete(first.location)
        assert resp.status == 200
        assert await wait_for(lambda: first is not None and first.pc.connectionState == "closed", 30)
        await second.close()
        second = await view(api.client, session_id, audio=False)
        assert second.status == 201
        assert await wait_for(lambda: second is not None and second.got.video_frames > 5, 30)
        resp = await api.client.delete(f"/whep/{session_id}/unknown")
        assert resp.status == 404
    finally:
        for v in (first, second):
            if v is not None:
                await v.close()
        await pub.pc.close()
