"""Replay state survives a restart: a build interrupted by a restart runs again and finishes."""

from __future__ import annotations

import asyncio

from infra.settings import Settings
from media.probe import probe
from media.recorder import Recorder
from media.recordings import recordings_key, tracks_for
from media.replay_model import Replay
from media.tap import StreamInfo
from server.keys import database_key
from tests.conftest import AppFactory
from tests.media_flow import host_session, wait_replay
from tests.media_synth import interleave, opus_packets, video_packets


async def test_interrupted_build_resumes_after_restart(make_api: AppFactory, settings: Settings) -> None:
    settings = settings.with_(rtmp_port=-1)
    first = await make_api(settings)
    token, session_id, _ = await host_session(first)
    # A recording on disk, as a stream left it.
    recorder = Recorder(session_id, first.app[recordings_key].recording_dir(session_id))
    recorder.start_input(tracks_for(StreamInfo(session_id, "h264", "opus")), "shared")
    for kind, packet in interleave(video_packets(5.0), opus_packets(5.0)):
        recorder.push_packet(kind, packet)
    recorder.stop_input(final=True)
    await asyncio.to_thread(recorder.close)
    # The process died while building: the row says "processing" and no replay files exist.
    async with first.app[database_key].session() as db:
        db.add(Replay(session_id=session_id, status="processing", percent=40, chapters=[],
                      thumbnails=[]))
    await first.client.close()

    second = await make_api(settings)
    replay = await wait_replay(second, session_id)
    assert replay["status"] == "ready", replay
    vod = await asyncio.to_thread(probe, str(second.client.make_url(replay["hls"])))
    assert abs(vod.duration_s - 5.0) <= 0.5, vod
    listing = await (await second.client.get("/api/replays")).json()
    assert [item["session_id"] for item in listing["items"]] == [session_id]

    # A host may ask for a rebuild; a viewer may not.
    _, viewer = await second.user("viewer")
    resp = await second.client.post(f"/api/sessions/{session_id}/replay", headers=second.auth(viewer))
    assert resp.status == 403
    resp = await second.client.post(f"/api/sessions/{session_id}/replay", headers=second.auth(token))
    assert resp.status == 202
    for _ in range(300):  # until the forced build has replaced the first one
        rebuilt = await (await second.client.get(f"/api/sessions/{session_id}/replay")).json()
        if rebuilt["status"] == "ready" and rebuilt["updated_at"] != replay["updated_at"]:
            break
        await asyncio.sleep(0.1)
    assert rebuilt["status"] == "ready" and rebuilt["updated_at"] != replay["updated_at"], rebuilt
    # New segment names per build; the previous build's stay for viewers already playing it.
    playlist = await (await second.client.get(rebuilt["hls"])).text()
    assert "r2_00000.ts" in playlist and "r1_" not in playlist
    old = await second.client.get(f"/replays/{session_id}/r1_00000.ts")
    assert old.status == 200 and old.headers["Content-Type"] == "video/mp2t"
