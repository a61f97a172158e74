"""WHEP seats: offers that never connect give their seat back; one address holds a few at most.

Guards against anonymous clients holding every WebRTC seat with offers that never send a
candidate, and against a burst of offers overshooting the caps (check-then-act across awaits).
"""

from __future__ import annotations

import asyncio
import json

import pytest
from aiortc import RTCPeerConnection

from infra.settings import Settings
from media.keys import media_hub_key
from tests.test_media_webrtc import new_session, no_leaked_peers  # noqa: F401 - autouse fixture
from tests.webrtc_clients import SDP, publish, view, wait_for

pytestmark = pytest.mark.timeout(90)

DEADLINE_S = 2


async def dead_offer() -> str:
    """A viewer's offer whose peer is gone: no candidate will ever answer the server's checks."""
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = str(pc.localDescription.sdp)
    await pc.close()
    return sdp


async def test_offers_that_never_connect_free_their_seats(make_api, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    cap = 6
    api = await make_api(settings.with_(webrtc_viewer_cap=cap, whep_connect_deadline_s=DEADLINE_S))
    session_id, key, _ = await new_session(api)
    hub = api.app[media_hub_key]
    pub = await publish(api.client, session_id, key)
    viewer = None
    try:
        assert pub.status == 201, pub.body
        assert await wait_for(lambda: hub.streams[session_id].fanouts["video"].forwarded > 0, 20)
        offer = await dead_offer()
        # 25 offers at once: exactly `cap` get a seat, never more, the rest are sent to HLS.
        responses = await asyncio.gather(*(
            api.client.post(f"/whep/{session_id}", data=offer, headers=SDP) for _ in range(25)))
        statuses = sorted(r.status for r in responses)
        assert statuses == [201] * cap + [503] * (25 - cap), statuses
        assert hub.viewer_count() == cap
        for resp in responses:
            if resp.status == 503:
                assert (await resp.json())["error"]["code"] == "webrtc_full"

        blocked = await view(api.client, session_id)
        assert blocked.status == 503
        await blocked.close()

        # Past the connect deadline every dead seat is free again and a real viewer plays.
        assert await wait_for(lambda: hub.viewer_count() == 0, DEADLINE_S + 3)
        assert not hub.streams[session_id].viewers
        viewer = await view(api.client, session_id)
        assert viewer.status == 201, viewer.body
        assert await wait_for(lambda: viewer is not None and viewer.got.video_frames >= 20, 20)
        # A connected viewer keeps its seat past the deadline.
        await asyncio.sleep(DEADLINE_S + 0.5)
        assert hub.viewer_count() == 1
        frames = viewer.got.video_frames
        assert await wait_for(lambda: viewer is not None and viewer.got.video_frames > frames + 10, 10)
    finally:
        if viewer is not None:
            await viewer.close()
        await pub.pc.close()


async def test_one_address_holds_a_few_seats(make_api, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    per_address = 4
    # Loopback is a trusted proxy here, so X-Forwarded-For names the client; nobody is exempt.
    api = await make_api(settings.with_(webrtc_viewer_cap=40, whep_seats_per_address=per_address,
                                        whep_connect_deadline_s=DEADLINE_S, rate_limit_exempt=()))
    session_id, key, _ = await new_session(api)
    hub = api.app[media_hub_key]
    pub = await publish(api.client, session_id, key)
    try:
        assert pub.status == 201, pub.body
        assert await wait_for(lambda: hub.streams[session_id].fanouts["video"].forwarded > 0, 20)
        offer = await dead_offer()
        attacker = {**SDP, "X-Forwarded-For": "203.0.113.7"}
        responses = await asyncio.gather(*(
            api.client.post(f"/whep/{session_id}", data=offer, headers=attacker) for _ in range(20)))
        statuses = sorted(r.status for r in responses)
        assert statuses == [201] * per_address + [429] * (20 - per_address), statuses
        refused = next(r for r in responses if r.status == 429)
        error = json.loads(await refused.text())["error"]
        assert error["code"] == "rate_limited" and error["reason"] == "too_many_seats"
        assert error["hls"] == f"/hls/{session_id}/index.m3u8"
        assert int(refused.headers["Retry-After"]) >= 1
        assert hub.viewer_count() == per_address

        # Another address is not affected.
        other = await api.client.post(f"/whep/{session_id}", data=offer,
                                      headers={**SDP, "X-Forwarded-For": "203.0.113.8"})
        assert other.status == 201

        # The dead seats expire: the same address may try again.
        assert await wait_for(lambda: hub.viewer_count() == 0, DEADLINE_S + 3)
        again = await api.client.post(f"/whep/{session_id}", data=offer, headers=attacker)
        assert again.status == 201
    finally:
        await pub.pc.close()
