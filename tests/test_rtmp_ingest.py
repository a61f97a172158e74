"""RTMP ingest from a real ffmpeg client → live HLS → replay with product chapters."""

from __future__ import annotations

import asyncio
import time

import pytest

from commerce.events import DomainEvent
from infra.settings import Settings
from media.hls_playlist import parse_media_playlist
from media.probe import decodes, probe
from media.recordings import recordings_key
from server.keys import events_key
from tests.conftest import Api, AppFactory
from tests.media_flow import host_session, publish, rtmp_url, wait_replay, wait_segments

SECONDS = 7.0


@pytest.fixture
async def media_api(make_api: AppFactory, settings: Settings) -> Api:
    return await make_api(settings.with_(rtmp_port=0, publisher_grace_s=3))


async def test_rtmp_to_live_hls_to_replay_with_chapters(media_api: Api) -> None:
    api = media_api
    token, session_id, key = await host_session(api)
    progress: list[DomainEvent] = []

    async def collect(event: DomainEvent) -> None:
        if event.kind == "replay_progress":
            progress.append(event)

    api.app[events_key].subscribe(collect)
    products = []
    for name in ("沙地西瓜", "有机番茄"):
        resp = await api.client.post("/api/products", json={"name": name, "price_fen": 1990},
                                     headers=api.auth(token))
        assert resp.status == 201, await resp.text()
        products.append(int((await resp.json())["id"]))

    client = await publish(rtmp_url(api, key), SECONDS)
    started = time.time()
    # (A second publisher with the key takes over: tests/test_media_takeover.py.)
    await wait_segments(api, session_id, 1)

    resp = await api.client.get(f"/hls/{session_id}/index.m3u8")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert "no-cache" in resp.headers["Cache-Control"]
    first_segment = parse_media_playlist(await resp.text())[0].uri
    seg = await api.client.get(f"/hls/{session_id}/{first_segment}")
    assert seg.status == 200 and seg.headers["Content-Type"] == "video/mp2t"
    assert "immutable" in seg.headers["Cache-Control"]

    pin_times = []
    for product_id in products:
        resp = await api.client.post(f"/api/sessions/{session_id}/pin",
                                     json={"product_id": product_id}, headers=api.auth(token))
        assert resp.status == 200, await resp.text()
        pin_times.append(time.time())
        await asyncio.sleep(2.0)
    await api.client.delete(f"/api/sessions/{session_id}/pin", headers=api.auth(token))
    unpinned = time.time()
    assert await asyncio.wait_for(client.wait(), 20) == 0
    assert time.time() - started >= SECONDS - 1

    # Live HLS, probed over HTTP with PyAV: everything sent is there, in ≤2.5 s segments.
    live_url = str(api.client.make_url(f"/hls/{session_id}/index.m3u8"))
    live_text = await (await api.client.get(f"/hls/{session_id}/index.m3u8")).text()
    assert all(s.duration <= 2.5 for s in parse_media_playlist(live_text))
    # The publisher left: its last, partial segment is closed (not lost) once the drop is seen.
    for _ in range(50):
        segments = api.app[recordings_key].segments(session_id)
        recorded = sum(e.duration for e in segments)
        if recorded >= 0.9 * SECONDS:
            break
        await asyncio.sleep(0.1)
    assert abs(recorded - SECONDS) <= 0.1 * SECONDS, recorded

    resp = await api.client.post(f"/api/sessions/{session_id}/end", headers=api.auth(token))
    assert resp.status == 200
    replay = await wait_replay(api, session_id)
    assert replay["status"] == "ready", replay
    assert replay["percent"] == 100
    assert "#EXT-X-ENDLIST" in await (await api.client.get(f"/hls/{session_id}/index.m3u8")).text()
    # The ended live playlist (window of 6 segments, 4 here) is the whole stream, probed over HTTP.
    live = await asyncio.to_thread(probe, live_url)
    assert abs(live.duration_s - SECONDS) <= 0.1 * SECONDS, live

    vod_url = str(api.client.make_url(replay["hls"]))
    vod = await asyncio.to_thread(probe, vod_url)
    assert abs(vod.duration_s - SECONDS) <= 0.1 * SECONDS, vod
    assert vod.video_codec == "h264" and vod.audio_codec == "aac"
    assert await asyncio.to_thread(decodes, vod_url) == 3
    vod_text = await (await api.client.get(replay["hls"])).text()
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in vod_text
    assert all(s.duration <= 2.5 for s in parse_media_playlist(vod_text))

    # Chapters follow the pins: product, and start/end relative to the recording start.
    origin = segments[0].wall
    chapters = replay["chapters"]
    assert [c["product_id"] for c in chapters] == products
    ends = [pin_times[1], unpinned]
    for chapter, pinned, ended in zip(chapters, pin_times, ends, strict=True):
        assert chapter["name"] in ("沙地西瓜", "有机番茄")
        assert abs(chapter["start_s"] - (pinned - origin)) < 0.6, (chapter, pinned - origin)
        assert abs(chapter["end_s"] - (ended - origin)) < 0.6, (chapter, ended - origin)
        clip = await api.client.get(chapter["clip_url"])
        assert clip.status == 200
        clip_segments = parse_media_playlist(await clip.text())
        assert 1 <= len(clip_segments) <= 3

    poster = await api.client.get(replay["poster"])
    assert poster.status == 200 and poster.headers["Content-Type"] == "image/jpeg"
    assert (await poster.read())[:2] == b"\xff\xd8"
    assert replay["thumbnails"]
    thumb = await api.client.get(replay["thumbnails"][0]["url"])
    assert thumb.status == 200

    statuses = [e.data["status"] for e in progress if e.session_id == session_id]
    assert statuses[0] == "pending" and statuses[-1] == "ready" and "processing" in statuses
    percents = [e.data["percent"] for e in progress if e.session_id == session_id]
    assert percents[-1] == 100

    listing = await (await api.client.get("/api/replays")).json()
    assert session_id in [item["session_id"] for item in listing["items"]]


async def test_rtmp_refuses_wrong_key_and_media_urls_refuse_bad_names(media_api: Api) -> None:
    api = media_api
    _, session_id, key = await host_session(api)
    client = await publish(rtmp_url(api, key[:-2] + "xx"), 2)
    code = await asyncio.wait_for(client.wait(), 10)
    assert client.stderr is not None
    stderr = (await client.stderr.read()).decode(errors="replace")
    assert code != 0 and "Wrong stream key" in stderr
    assert not api.app[recordings_key].segments(session_id)

    for path in (f"/hls/{session_id}/index.m3u8", "/hls/999999/index.m3u8",
                 f"/hls/{session_id}/..%2F..%2Flinli.db", f"/hls/{session_id}/index.jsonl",
                 f"/replays/{session_id}/concat.txt", f"/replays/{session_id}/..%2Findex.m3u8",
                 "/hls/abc/index.m3u8"):
        resp = await api.client.get(path)
        assert resp.status in (400, 404), path
        if resp.status != 404:
            assert (await resp.json())["error"]["code"] == "invalid_input"

    resp = await api.client.get("/api/sessions/999999/replay")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    resp = await api.client.get(f"/api/sessions/{session_id}/replay")
    assert (await resp.json())["status"] == "none"
    resp = await api.client.get("/api/replays?limit=1000")
    assert resp.status == 400
    spec = await (await api.client.get("/api/openapi.json")).json()
    for path in ("/hls/{session_id}/{name}", "/replays/{session_id}/{name}",
                 "/api/sessions/{id}/replay", "/api/replays"):
        assert path in spec["paths"]
