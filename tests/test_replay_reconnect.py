"""A publisher drops and comes back within the grace window: one recording, one replay, no gap."""

from __future__ import annotations

import asyncio
import time

from infra.settings import Settings
from media.probe import probe
from media.recordings import recordings_key
from tests.conftest import AppFactory
from tests.media_flow import host_session, publish, rtmp_url, wait_replay, wait_segments

PART_S = 4.0


async def test_reconnect_within_grace_gives_one_replay_without_gap(
    make_api: AppFactory, settings: Settings
) -> None:
    api = await make_api(settings.with_(rtmp_port=0, publisher_grace_s=10))
    token, session_id, key = await host_session(api)
    first = await publish(rtmp_url(api, key), PART_S)
    assert await asyncio.wait_for(first.wait(), 20) == 0
    dropped = time.monotonic()
    await asyncio.sleep(1.0)  # the outage
    second = await publish(rtmp_url(api, key), PART_S)
    assert await asyncio.wait_for(second.wait(), 20) == 0
    outage = time.monotonic() - dropped - PART_S
    await wait_segments(api, session_id, 4)

    # Both parts are one recording, with one discontinuity: at the reconnect.
    segments = api.app[recordings_key].segments(session_id)
    assert [s.disc for s in segments].count(True) == 1 and not segments[0].disc
    assert all(s.duration <= 2.5 for s in segments)
    resp = await api.client.get(f"/api/sessions/{session_id}")
    assert (await resp.json())["status"] == "live"  # the grace kept the session going

    resp = await api.client.post(f"/api/sessions/{session_id}/end", headers=api.auth(token))
    assert resp.status == 200
    replay = await wait_replay(api, session_id)
    assert replay["status"] == "ready", replay
    vod = await asyncio.to_thread(probe, str(api.client.make_url(replay["hls"])))
    sent = 2 * PART_S
    # Everything sent is in it, and at most the outage was added between the parts.
    assert vod.duration_s >= 0.9 * sent, vod
    assert vod.duration_s <= sent + max(outage, 0.0) + 0.1 * sent, (vod, outage)
    listing = await (await api.client.get("/api/replays")).json()
    assert [item["session_id"] for item in listing["items"]].count(session_id) == 1
