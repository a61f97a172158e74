"""Low-Latency HLS: parts cut from the segments being written, blocking playlist reloads.

Real encoded packets through the recorder's thread, the app serving an RTMP publisher (ffmpeg,
paced in real time) over HTTP, and ffmpeg as a plain HLS client that knows nothing of parts.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from commerce.errors import InvalidInput
from infra.settings import Settings
from media.ffmpeg_bin import ffmpeg_binary
from media.ll_hls import Directive, LiveEdge, NotYet, TooManyWaiters, parse_directive
from media.record_tracks import CopyAnnexBTrack, TranscodeAudioTrack
from media.recorder import Recorder
from media.recordings import Recordings, recordings_key
from media.segment_index import SegmentEntry, load_index
from media.segment_writer import PartReady
from tests import llhls_support
from tests.conftest import AppFactory
from tests.media_flow import host_session, publish, rtmp_url, wait_segments
from tests.media_synth import interleave, opus_packets, video_packets
from tests.webrtc_clients import wait_for

PART_TARGET = 0.5


async def test_parts_are_their_segment_byte_for_byte(tmp_path: Path) -> None:
    """Parts come out while a segment is written; together they are the segment's file."""
    parts: list[PartReady] = []
    recorder = Recorder(3, tmp_path / "rec", part_target_s=PART_TARGET, on_part=parts.append)
    recorder.start_input({"video": CopyAnnexBTrack(), "audio": TranscodeAudioTrack()}, "shared")
    for kind, packet in interleave(video_packets(7.0), opus_packets(7.0)):
        recorder.push_packet(kind, packet)
    recorder.stop_input(final=True)
    await asyncio.to_thread(recorder.close)
    entries = load_index(tmp_path / "rec")
    assert len(entries) >= 3
    for entry in entries:
        mine = [p for p in parts if p.msn == entry.seq]
        assert [p.index for p in mine] == list(range(len(mine))), mine
        assert mine[0].independent and not any(p.independent for p in mine[1:])
        assert mine[-1].last and not any(p.last for p in mine[:-1])
        assert b"".join(p.data for p in mine) == (tmp_path / "rec" / entry.file).read_bytes()
        assert all(0 < p.duration <= PART_TARGET for p in mine), mine
        assert all(p.duration >= 0.85 * PART_TARGET for p in mine[:-1]), mine
        assert abs(sum(p.duration for p in mine) - entry.duration) < 0.01


def _entry(seq: int, disc: bool = False, disc_seq: int = 0) -> SegmentEntry:
    return SegmentEntry(seq=seq, file=f"seg_{seq:06d}.ts", duration=2.0, start=2.0 * (seq - 1),
                        wall=1_700_000_000 + 2.0 * seq, disc=disc, disc_seq=disc_seq)


def _part(msn: int, index: int, last: bool = False, disc: bool = False) -> PartReady:
    return PartReady(msn=msn, index=index, duration=0.5, independent=index == 0,
                     data=bytes([msn % 256, index]) * 188, disc=disc,
                     wall=1_700_000_000 + 2.0 * msn, last=last)


def _edge(max_waiters: int = 100) -> LiveEdge:
    edge = LiveEdge(PART_TARGET, 6, max_waiters, [_entry(s) for s in range(1, 4)])
    for index in range(4):
        edge.add_part(_part(3, index, last=index == 3))
    for index in range(2):
        edge.add_part(_part(4, index))
    return edge


async def test_blocking_reload_answers_when_the_part_appears_and_not_before() -> None:
    edge = _edge()
    pl = llhls_support.check(edge.render())
    assert pl.preload_hint == "part_000004_02.ts"
    # What exists is answered at once.
    assert "part_000004_01.ts" in await asyncio.wait_for(edge.wait_playlist(Directive(4, 1)), 0.1)
    waiting = asyncio.ensure_future(edge.wait_playlist(Directive(4, 2)))
    segment = asyncio.ensure_future(edge.wait_playlist(Directive(4, None)))
    await asyncio.sleep(0.05)
    assert not waiting.done() and not segment.done()
    edge.add_part(_part(4, 2))
    text = await asyncio.wait_for(waiting, 1)
    assert llhls_support.check(text).preload_hint == "part_000004_03.ts"
    assert not segment.done(), "a segment is waited for until it is complete"
    edge.add_part(_part(4, 3, last=True))
    edge.add_segment(_entry(4))
    assert "seg_000004.ts" in await asyncio.wait_for(segment, 1)
    # A segment that ended with fewer parts than asked for: the next segment's first part is later.
    later = asyncio.ensure_future(edge.wait_playlist(Directive(4, 4)))
    await asyncio.sleep(0.02)
    assert not later.done()
    edge.add_part(_part(5, 0))
    assert "part_000005_00.ts" in await asyncio.wait_for(later, 1)
    assert edge.waiters == 0


async def test_far_ahead_requests_are_400_and_malformed_ones_too() -> None:
    edge = _edge()
    with pytest.raises(InvalidInput):
        await edge.wait_playlist(Directive(3 + 3, None))  # last complete is 3: up to 5 may wait
    with pytest.raises(InvalidInput):
        await edge.wait_playlist(Directive(4, 1 + edge.advance_part_limit() + 1))
    for query in ({"_HLS_part": "1"}, {"_HLS_msn": "-1"}, {"_HLS_msn": "x"},
                  {"_HLS_msn": "4", "_HLS_part": "100"}, {"_HLS_msn": "٣"}):
        with pytest.raises(InvalidInput):
            parse_directive(query)
    assert parse_directive({}) is None
    assert parse_directive({"_HLS_msn": "4", "_HLS_part": "2"}) == Directive(4, 2)
    # Within the limits, it waits (and the stream's end answers it).
    pending = asyncio.ensure_future(edge.wait_playlist(Directive(5, 0)))
    await asyncio.sleep(0.02)
    assert not pending.done()
    edge.end()
    assert (await asyncio.wait_for(pending, 1)).endswith("#EXT-X-ENDLIST\n")


async def test_waiters_per_stream_are_bounded() -> None:
    edge = _edge(max_waiters=3)
    held = [asyncio.ensure_future(edge.wait_playlist(Directive(4, 2))) for _ in range(3)]
    await asyncio.sleep(0.02)
    with pytest.raises(TooManyWaiters) as refused:
        await edge.wait_playlist(Directive(4, 2))
    assert refused.value.status == 503 and refused.value.details["retry_after"] == 1
    with pytest.raises(TooManyWaiters):
        await edge.wait_part(4, 2)
    # Answered requests free their places at once.
    edge.add_part(_part(4, 2))
    await asyncio.wait_for(asyncio.gather(*held), 1)
    assert edge.waiters == 0
    assert await asyncio.wait_for(edge.wait_part(4, 2), 0.1) == edge.part(4, 2)


async def test_released_waiters_are_answered_at_once_with_503() -> None:
    """The server stopping releases its held requests: they would otherwise hold the stop for
    their timeout (three target durations) waiting on a process that is going away."""
    edge = _edge()
    playlist = asyncio.ensure_future(edge.wait_playlist(Directive(4, 2)))
    part = asyncio.ensure_future(edge.wait_part(4, 2))
    await asyncio.sleep(0.02)
    assert edge.waiters == 2 and not playlist.done() and not part.done()
    edge.release_waiters()
    for held in (playlist, part):
        with pytest.raises(NotYet) as late:
            await asyncio.wait_for(held, 0.5)
        assert late.value.status == 503 and late.value.details["retry_after"] == 1
    assert edge.waiters == 0
    # What exists is still served; what does not is not waited for any more.
    assert "part_000004_01.ts" in await asyncio.wait_for(edge.wait_playlist(Directive(4, 1)), 0.1)
    with pytest.raises(NotYet):
        await asyncio.wait_for(edge.wait_playlist(Directive(5, None)), 0.5)

@pytest.mark.slow
async def test_a_request_for_a_part_that_never_comes_times_out_with_503() -> None:
    edge = _edge()
    started = time.monotonic()
    with pytest.raises(NotYet) as late:
        await edge.wait_playlist(Directive(4, 2))
    # Three target durations (2 s), as RFC 8216bis asks of a server.
    assert 5.9 <= time.monotonic() - started < 7.5
    assert late.value.status == 503
    assert edge.waiters == 0


def test_discontinuity_numbering_holds_as_a_reconnect_slides_out() -> None:
    """RFC 8216 6.2.1 in the LL playlist: the sequence grows only when the tagged segment leaves."""
    edge = LiveEdge(PART_TARGET, 3, 10, [_entry(1), _entry(2)])
    edge.add_part(_part(3, 0, disc=True))
    text = edge.render()
    # The open segment after a reconnect carries its tag before its parts.
    assert text.index("#EXT-X-DISCONTINUITY\n") < text.index("part_000003_00.ts")
    assert llhls_support.parse(text).discontinuity_sequence == 0
    edge.add_segment(_entry(3, disc=True, disc_seq=1))
    for seq in (4, 5):
        edge.add_segment(_entry(seq, disc_seq=1))
        assert llhls_support.parse(edge.render()).discontinuity_sequence == 0
    edge.add_segment(_entry(6, disc_seq=1))  # segment 3 (the tagged one) slid out
    pl = llhls_support.parse(edge.render())
    assert (pl.media_sequence, pl.discontinuity_sequence) == (4, 1)
    assert "#EXT-X-DISCONTINUITY\n" not in edge.render()


async def _get(api_client: object, path: str) -> tuple[int, bytes, dict[str, str], float]:
    from aiohttp.test_utils import TestClient

    assert isinstance(api_client, TestClient)
    started = time.monotonic()
    resp = await api_client.get(path)
    body = await resp.read()
    return resp.status, body, dict(resp.headers), time.monotonic() - started


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_live_stream_is_served_low_latency_and_plain_players_still_play(
    make_api: AppFactory, settings: Settings
) -> None:
    api = await make_api(settings.with_(hls_part_target_s=PART_TARGET, hls_max_waiters=4))
    _, sid, key = await host_session(api)
    proc = await publish(rtmp_url(api, key), 25)
    try:
        await wait_segments(api, sid, 2)
        base = f"/hls/{sid}/index.m3u8"
        status, body, headers, _ = await _get(api.client, base)
        assert status == 200 and headers["Content-Type"] == "application/vnd.apple.mpegurl"
        pl = llhls_support.check(body.decode())
        assert pl.parts and pl.dated >= len(pl.segments)

        # Blocking reload two parts ahead of the newest: held, and answered with a playlist
        # that holds that part (or a later one: the segment may end first), so not before it
        # existed (tests above show it is not answered before, to the event).
        last = pl.last_part
        assert last is not None
        msn, index = last.msn, pl.part_index(last)
        status, body, _, waited = await _get(api.client, f"{base}?_HLS_msn={msn}&_HLS_part={index + 2}")
        assert status == 200, body
        after = llhls_support.check(body.decode())
        assert any(p.msn > msn or (p.msn == msn and after.part_index(p) >= index + 2)
                   for p in after.parts), body
        assert after.parts[-1] != last and waited < 3 * pl.target_duration, waited

        # The hinted part is held until it is written, then served (or 404 when its segment
        # was cut at a keyframe before it: it will never exist). Parts concatenated are the
        # segment.
        served = 0
        for _ in range(4):
            hint = llhls_support.parse((await _get(api.client, base))[1].decode()).preload_hint
            assert hint is not None
            status, data, headers, waited = await _get(api.client, f"/hls/{sid}/{hint}")
            if status == 404:
                now = llhls_support.parse((await _get(api.client, base))[1].decode())
                assert any(m == int(hint.split("_")[1]) for m, _, _ in now.segments), hint
                continue
            assert status == 200 and headers["Content-Type"] == "video/mp2t" and data[0] == 0x47
            assert "immutable" in headers["Cache-Control"]
            served += 1
        assert served >= 2
        complete = after.segments[-1][0]
        listed = [p for p in after.parts if p.msn == complete]
        assert listed
        joined = b"".join([(await _get(api.client, f"/hls/{sid}/{p.uri}"))[1] for p in listed])
        assert joined == (await _get(api.client, f"/hls/{sid}/seg_{complete:06d}.ts"))[1]

        # Too far ahead: 400 at once; a part the playlist never named: 404.
        newest = llhls_support.parse((await _get(api.client, base))[1].decode()).segments[-1][0]
        status, body, _, waited = await _get(api.client, f"{base}?_HLS_msn={newest + 4}")
        assert status == 400 and b"invalid_input" in body and waited < 1, body
        assert (await _get(api.client, f"{base}?_HLS_part=1"))[0] == 400
        assert (await _get(api.client, f"/hls/{sid}/part_{newest + 5:06d}_00.ts"))[0] == 404

        # Beyond the waiters allowed per stream: 503 with Retry-After.
        fresh = llhls_support.parse((await _get(api.client, base))[1].decode())
        ahead = f"{base}?_HLS_msn={fresh.segments[-1][0] + 2}"
        held = [asyncio.ensure_future(_get(api.client, ahead)) for _ in range(4)]
        await asyncio.sleep(0.2)
        status, body, headers, _ = await _get(api.client, ahead)
        assert status == 503 and b"hls_busy" in body and headers["Retry-After"] == "1"
        assert all(r[0] == 200 for r in await asyncio.gather(*held))

        # A player that knows nothing of LL-HLS (ffmpeg's HLS demuxer) plays the same playlist.
        url = str(api.client.make_url(base))
        player = await asyncio.create_subprocess_exec(
            ffmpeg_binary(), "-nostdin", "-v", "error", "-i", url, "-t", "3",
            "-progress", "pipe:1", "-f", "null", "-",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(player.communicate(), 30)
        assert player.returncode == 0, err.decode()
        frames = [int(line[6:]) for line in out.decode().splitlines() if line.startswith("frame=")]
        assert frames and frames[-1] >= 50, out.decode()  # 3 s at 25 fps, all decoded
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_blocking_reload_held_when_the_server_stops_is_answered_at_once(
    make_api: AppFactory, settings: Settings
) -> None:
    """The publisher dropped (its grace is running), so the next segment never comes and a
    blocking reload for it is held for three target durations. Stopping the server (what
    Ctrl-C runs) answers it at once with 503 and Retry-After, so the player retries with the
    next process and the stop does not wait for the hold."""
    api = await make_api(settings.with_(hls_part_target_s=PART_TARGET, publisher_grace_s=60))
    _, sid, key = await host_session(api)
    proc = await publish(rtmp_url(api, key), 25)
    try:
        await wait_segments(api, sid, 2)
    finally:
        proc.kill()
        await proc.wait()
    recordings = api.app[recordings_key]
    assert await wait_for(lambda: not recordings.is_publishing(sid), 10)
    await asyncio.sleep(1)  # the recorder's thread closes the segment it was writing
    edge = recordings.live_edge(sid)
    assert edge is not None
    base = f"/hls/{sid}/index.m3u8"
    newest = llhls_support.parse((await _get(api.client, base))[1].decode()).segments[-1][0]
    held = asyncio.ensure_future(_get(api.client, f"{base}?_HLS_msn={newest + 1}"))
    assert await wait_for(lambda: edge.waiters == 1 or held.done(), 5)
    assert not held.done(), held.result()
    hold_s = edge.block_timeout_s
    assert hold_s >= 6
    started = time.monotonic()
    await api.client.server.close()
    took = time.monotonic() - started
    status, body, headers, waited = await asyncio.wait_for(held, 5)
    assert status == 503 and b"hls_not_yet" in body and headers["Retry-After"] == "1", body
    assert waited < hold_s - 3, f"the reload was held {waited:.1f} s of its {hold_s:.0f} s"
    assert took < hold_s - 3, f"stopping took {took:.1f} s"


async def test_part_target_zero_serves_plain_hls_only(tmp_path: Path) -> None:
    """LINLI_HLS_PART_TARGET_S=0: no edge in memory; the playlist on disk is served as before."""
    plain = Recordings(tmp_path / "plain", asyncio.get_running_loop())
    plain.recorder(1)
    assert plain.live_edge(1) is None
    low = Recordings(tmp_path / "low", asyncio.get_running_loop(), part_target_s=PART_TARGET)
    low.recorder(1)
    edge = low.live_edge(1)
    assert edge is not None and edge.part_target_s == PART_TARGET
    await plain.close()
    await low.close()
    assert low.live_edge(1) is None and edge.ended
