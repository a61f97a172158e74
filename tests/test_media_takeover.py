"""The session's newest publisher with its key takes the stream; RTMP is watchable over WHEP.

Guards against: the host being locked out of a session by the demo source (`publisher_active`),
a replaced publisher coming back (the demo retrying), viewers left on a dead source after a
takeover, a takeover ending the session or the recording, and WHEP answering `not_live` while
an RTMP publisher is live.
"""

from __future__ import annotations

import asyncio

import pytest

from infra.settings import Settings
from media.keys import media_hub_key
from media.recordings import recordings_key
from server.demo import demo_info_key
from tests.conftest import Api
from tests.media_flow import host_session, rtmp_url, wait_segments
from tests.media_flow import publish as rtmp_publish
from tests.test_media_webrtc import no_leaked_peers  # noqa: F401 - autouse fixture
from tests.webrtc_clients import publish, view, wait_for

pytestmark = pytest.mark.timeout(150)


async def session_as(api: Api, session_id: int, token: str) -> dict[str, object]:
    resp = await api.client.get(f"/api/sessions/{session_id}", headers=api.auth(token))
    assert resp.status == 200
    body: dict[str, object] = await resp.json()
    return body


async def test_host_takes_over_the_demo_stream(make_api, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    api = await make_api(settings.with_(demo=True))
    session_id = api.app[demo_info_key].session_id
    hub = api.app[media_hub_key]
    assert await wait_for(lambda: session_id in hub.streams and "video" in hub.streams[session_id].fanouts
                          and hub.streams[session_id].fanouts["video"].forwarded > 0, 20)
    body = await session_as(api, session_id, api.admin_token)
    publisher = body["publisher"]
    assert isinstance(publisher, dict) and publisher["kind"] == "demo"
    key = str(body["stream_key"])

    viewer = await view(api.client, session_id)
    host = None
    try:
        assert viewer.status == 201
        assert await wait_for(lambda: viewer.got.video_frames >= 10, 20)
        assert viewer.got.sizes == {(640, 360)}
        host = await publish(api.client, session_id, key)  # the host's camera: 320x180
        assert host.status == 201, host.body
        body = await session_as(api, session_id, api.admin_token)
        publisher = body["publisher"]
        assert isinstance(publisher, dict) and publisher["kind"] == "whip"
        assert str(publisher["since"]).endswith("+00:00")
        # The same viewer now sees the host's picture (moved over with a keyframe request).
        assert await wait_for(lambda: (320, 180) in viewer.got.sizes, 15)
        # The demo does not come back (it used to retry every 3 s).
        await asyncio.sleep(4.0)
        assert (hub.publisher_info(session_id) or {}).get("kind") == "whip"
        assert body["status"] == "live"
    finally:
        await viewer.close()
        if host is not None:
            await host.pc.close()


async def test_rtmp_is_watchable_over_whep_and_takeovers_keep_viewers(make_api, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    api = await make_api(settings.with_(rtmp_port=0, publisher_grace_s=3))
    token, session_id, key = await host_session(api)
    hub = api.app[media_hub_key]
    first = await rtmp_publish(rtmp_url(api, key), 40)
    second = viewer = whip = None
    try:
        assert await wait_for(lambda: (hub.publisher_info(session_id) or {}).get("kind") == "rtmp", 15)
        await wait_segments(api, session_id, 1)
        viewer = await view(api.client, session_id)
        assert viewer.status == 201, viewer.body
        assert await wait_for(lambda: viewer is not None and viewer.got.video_frames >= 30
                              and viewer.got.audio_frames >= 20, 20)
        assert viewer.got.sizes == {(320, 240)}  # the RTMP picture, not transcoded
        body = await session_as(api, session_id, token)
        first_since = body["publisher"]["since"]  # type: ignore[index]

        # A second RTMP client with the key (a phone app reconnecting) takes over.
        segments_before = len(api.app[recordings_key].segments(session_id))
        second = await rtmp_publish(rtmp_url(api, key), 40)
        assert await asyncio.wait_for(first.wait(), 15) != 0  # the old one is cut off
        body = await session_as(api, session_id, token)
        assert body["publisher"]["kind"] == "rtmp"  # type: ignore[index]
        assert body["publisher"]["since"] != first_since  # type: ignore[index]
        frames = viewer.got.video_frames
        assert await wait_for(lambda: viewer is not None and viewer.got.video_frames >= frames + 30, 20)
        # Same recording, carrying on.
        assert await wait_for(
            lambda: len(api.app[recordings_key].segments(session_id)) >= segments_before + 2, 20)

        # The host's browser (WHIP) takes over from RTMP: the viewer follows, nothing ends.
        whip = await publish(api.client, session_id, key)
        assert whip.status == 201, whip.body
        assert await asyncio.wait_for(second.wait(), 15) != 0
        assert await wait_for(lambda: viewer is not None and (320, 180) in viewer.got.sizes, 20)
        body = await session_as(api, session_id, token)
        assert body["status"] == "live" and body["publisher"]["kind"] == "whip"  # type: ignore[index]
        segments_now = len(api.app[recordings_key].segments(session_id))
        assert await wait_for(
            lambda: len(api.app[recordings_key].segments(session_id)) >= segments_now + 2, 20)
        # Past the RTMP grace nothing ended the session under the WHIP publisher.
        await asyncio.sleep(4.0)
        assert (await session_as(api, session_id, token))["status"] == "live"
    finally:
        for client in (first, second):
            if client is not None and client.returncode is None:
                client.kill()
                await client.wait()
        if viewer is not None:
            await viewer.close()
        if whip is not None:
            await whip.pc.close()
