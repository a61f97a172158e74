"""End to end: an aiortc publisher over WHIP → the tap → live HLS that PyAV plays → replay."""

from __future__ import annotations

import asyncio

import pytest

from infra.settings import Settings
from media.hls_playlist import parse_media_playlist
from media.probe import decodes, probe
from media.recordings import recordings_key
from tests.conftest import AppFactory
from tests.media_flow import host_session, wait_replay, wait_segments
from tests.webrtc_clients import publish

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("codec", ["video/H264", "video/VP8"])
async def test_whip_publish_gives_playable_live_hls_and_a_replay(
    make_api: AppFactory, settings: Settings, codec: str
) -> None:
    api = await make_api(settings.with_(rtmp_port=-1, publisher_grace_s=5))
    _, session_id, key = await host_session(api)
    pub = await publish(api.client, session_id, key, codec=codec)
    assert pub.status == 201, pub.body
    try:
        text = await wait_segments(api, session_id, 3, within_s=40)
    finally:
        resp = await api.client.delete(pub.location or "", headers={"Authorization": f"Bearer {key}"})
        await pub.pc.close()
    assert resp.status in (200, 204)

    segments = parse_media_playlist(text)
    assert all(s.duration <= 2.5 for s in segments), text
    for segment in segments[:3]:
        url = str(api.client.make_url(f"/hls/{session_id}/{segment.uri}"))
        result = await asyncio.to_thread(probe, url)
        # H.264 is remuxed as sent; VP8 went through the stream's single H.264 encode.
        assert result.video_codec == "h264" and result.audio_codec == "aac", result
        assert result.keyframes >= 1
        assert await asyncio.to_thread(decodes, url) == 3
    recorded = api.app[recordings_key].segments(session_id)
    assert len(recorded) >= 3
    # Segments follow the publisher's keyframes, which arrive about every 2 s when asked for.
    assert all(1.5 <= e.duration <= 2.5 for e in recorded[:2]), recorded

    # WHIP DELETE ended the session: the replay follows.
    replay = await wait_replay(api, session_id)
    assert replay["status"] == "ready", replay
    vod = await asyncio.to_thread(probe, str(api.client.make_url(replay["hls"])))
    total = sum(e.duration for e in api.app[recordings_key].segments(session_id))
    assert abs(vod.duration_s - total) <= 0.1 * total, (vod, total)
