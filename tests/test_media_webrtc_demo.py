"""`make run` (demo on) streams a synthetic farm picture into the demo session over WHIP."""

from __future__ import annotations

import pytest

from infra.settings import Settings
from media.keys import media_hub_key
from server.demo import demo_info_key
from tests.test_media_webrtc import no_leaked_peers  # noqa: F401 - autouse fixture
from tests.webrtc_clients import view, wait_for

pytestmark = pytest.mark.timeout(90)


async def test_demo_session_is_live_and_watchable(make_api, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    api = await make_api(settings.with_(demo=True))
    session_id = api.app[demo_info_key].session_id
    hub = api.app[media_hub_key]
    assert await wait_for(lambda: session_id in hub.streams and "video" in hub.streams[session_id].fanouts
                          and hub.streams[session_id].fanouts["video"].forwarded > 0, 20)
    resp = await api.client.get(f"/api/sessions/{session_id}")
    assert (await resp.json())["status"] == "live"
    viewer = await view(api.client, session_id, read_latency=True)
    try:
        assert viewer.status == 201, viewer.body
        assert await wait_for(lambda: viewer.got.video_frames >= 10 and viewer.got.audio_frames >= 10, 20)
        assert viewer.got.sizes == {(640, 360)}
        # The painted clock strip reads back as a plausible publisher->viewer delay.
        assert viewer.got.latencies_ms and min(viewer.got.latencies_ms) < 5000
    finally:
        await viewer.close()
