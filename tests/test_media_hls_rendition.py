"""The 360p rendition for weak networks: an extra output of the segment writer, so its segments
carry the source's numbers and boundaries; a master playlist names both; off changes nothing.

Real encoded packets through the recorder's thread, an RTMP publisher (ffmpeg) through the app,
ffprobe reading what was written.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from infra.settings import Settings
from media.ffmpeg_bin import ffmpeg_binary
from media.low_rendition import LOW_DIR, MASTER_NAME, low_rendition_enabled, low_size
from media.record_tracks import CopyAnnexBTrack, TranscodeAudioTrack
from media.recorder import Recorder
from media.recordings import Recordings
from media.segment_index import load_index
from tests.conftest import AppFactory
from tests.llhls_support import attributes
from tests.media_flow import host_session, publish, rtmp_url, wait_segments
from tests.media_synth import interleave, opus_packets, video_packets


def _ffprobe() -> str:
    return str(Path(ffmpeg_binary()).with_name("ffprobe"))


async def _probe(path: Path) -> dict[str, object]:
    proc = await asyncio.create_subprocess_exec(
        _ffprobe(), "-v", "error", "-show_streams", "-show_frames", "-select_streams", "v",
        "-show_entries", "stream=codec_type,codec_name,width,height:frame=pict_type,pts_time",
        "-of", "json", str(path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    result: dict[str, object] = json.loads(out)
    return result


async def _streams(path: Path) -> list[dict[str, object]]:
    proc = await asyncio.create_subprocess_exec(
        _ffprobe(), "-v", "error", "-show_entries", "stream=codec_type,width,height,start_time",
        "-of", "json", str(path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    streams: list[dict[str, object]] = json.loads(out)["streams"]
    return streams


def _master_variants(text: str) -> list[tuple[dict[str, str], str]]:
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U"
    variants = []
    for i, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF:"):
            variants.append((attributes(line.split(":", 1)[1]), lines[i + 1]))
    return variants


def test_auto_is_on_only_with_four_cores_and_the_setting_forces_it() -> None:
    assert not low_rendition_enabled("auto", 2) and not low_rendition_enabled("auto", None)
    assert low_rendition_enabled("auto", 4) and low_rendition_enabled("auto", 16)
    assert low_rendition_enabled("on", 1) and not low_rendition_enabled("off", 64)
    assert Settings.model_fields["hls_low_rendition"].default == "auto"
    assert low_size(1280, 720) == (640, 360) and low_size(720, 1280) == (360, 640)
    assert low_size(320, 240) == (320, 240)  # never upscaled


async def test_recorder_writes_an_aligned_360p_rendition_and_a_master(tmp_path: Path) -> None:
    """Same numbers, same starts, keyframe first, 640x360; the master names both variants."""
    directory = tmp_path / "rec"
    recorder = Recorder(5, directory, low_rendition=True)
    recorder.start_input({"video": CopyAnnexBTrack(), "audio": TranscodeAudioTrack()}, "shared")
    for kind, packet in interleave(video_packets(7.0, width=1280, height=720), opus_packets(7.0)):
        recorder.push_packet(kind, packet)
    recorder.stop_input(final=True)
    await asyncio.to_thread(recorder.close)
    entries = load_index(directory)
    assert len(entries) >= 3
    low = directory / LOW_DIR
    assert sorted(p.name for p in low.glob("seg_*.ts")) == [e.file for e in entries]
    assert not list(low.glob("*.tmp"))
    # The rendition's playlist is the source's with the same numbering and durations.
    assert (low / "index.m3u8").read_text() == (directory / "index.m3u8").read_text()
    for entry in entries:
        probe = await _probe(low / entry.file)
        streams = probe["streams"]
        assert isinstance(streams, list) and streams[0]["codec_name"] == "h264"
        assert (streams[0]["width"], streams[0]["height"]) == (640, 360)
        frames = probe["frames"]
        assert isinstance(frames, list) and frames and frames[0]["pict_type"] == "I"
        source, mine = await _streams(directory / entry.file), await _streams(low / entry.file)
        video_start = [float(str(s["start_time"])) for s in source if s["codec_type"] == "video"]
        low_start = [float(str(s["start_time"])) for s in mine if s["codec_type"] == "video"]
        assert abs(video_start[0] - low_start[0]) < 0.001, (entry, source, mine)
        assert {s["codec_type"] for s in mine} == {"video", "audio"}
    # Lighter: the 360p segments are a fraction of the 720p ones.
    assert sum((low / e.file).stat().st_size for e in entries) < 0.6 * sum(
        (directory / e.file).stat().st_size for e in entries)
    variants = _master_variants((directory / MASTER_NAME).read_text())
    assert [uri for _, uri in variants] == [f"{LOW_DIR}/index.m3u8", "index.m3u8"]
    (small, _), (high, _) = variants
    assert high["RESOLUTION"] == "1280x720" and small["RESOLUTION"] == "640x360"
    assert int(small["BANDWIDTH"]) < int(high["BANDWIDTH"])
    assert small["CODECS"].startswith("avc1.") and "mp4a.40.2" in small["CODECS"]


async def test_off_writes_nothing_more(tmp_path: Path) -> None:
    """The default on a small box: no master, no 360p directory, the same files as before."""
    recorder = Recorder(6, tmp_path / "rec")
    recorder.start_input({"video": CopyAnnexBTrack(), "audio": TranscodeAudioTrack()}, "shared")
    for kind, packet in interleave(video_packets(4.5), opus_packets(4.5)):
        recorder.push_packet(kind, packet)
    recorder.stop_input(final=True)
    await asyncio.to_thread(recorder.close)
    names = {p.name for p in (tmp_path / "rec").iterdir()}
    assert MASTER_NAME not in names and LOW_DIR not in names
    assert Recordings(tmp_path / "x", asyncio.get_running_loop()).low_rendition is False


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_rtmp_stream_is_served_with_a_master_and_a_360p_rendition(
    make_api: AppFactory, settings: Settings
) -> None:
    api = await make_api(settings.with_(hls_low_rendition="on"))
    _, sid, key = await host_session(api)
    proc = await publish(rtmp_url(api, key), 12, size="1280x720")
    try:
        await wait_segments(api, sid, 3, within_s=40)
        resp = await api.client.get(f"/hls/{sid}/{MASTER_NAME}")
        assert resp.status == 200 and resp.headers["Content-Type"] == "application/vnd.apple.mpegurl"
        variants = _master_variants(await resp.text())
        assert [a["RESOLUTION"] for a, _ in variants] == ["640x360", "1280x720"]
        assert all(int(a["BANDWIDTH"]) > 0 for a, _ in variants)
        low = await api.client.get(f"/hls/{sid}/{LOW_DIR}/index.m3u8")
        assert low.status == 200
        low_text = await low.text()
        source_text = await (await api.client.get(f"/hls/{sid}/index.m3u8")).text()
        low_segs = [line for line in low_text.splitlines() if line.startswith("seg_")]
        assert low_segs and set(low_segs) <= {line for line in source_text.splitlines()
                                              if line.startswith("seg_")} | set(low_segs[-1:])
        seg = await api.client.get(f"/hls/{sid}/{LOW_DIR}/{low_segs[0]}")
        assert seg.status == 200 and (await seg.read())[0] == 0x47
        assert (await api.client.get(f"/hls/{sid}/{LOW_DIR}/{MASTER_NAME}")).status == 404
        # ffmpeg as a player: the master's 360p variant decodes at 640x360.
        url = str(api.client.make_url(f"/hls/{sid}/{MASTER_NAME}"))
        player = await asyncio.create_subprocess_exec(
            _ffprobe(), "-v", "error", "-show_entries", "stream=width,height", "-of", "json", url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(player.communicate(), 30)
        assert player.returncode == 0, err.decode()
        sizes = {(s.get("width"), s.get("height")) for s in json.loads(out)["streams"]}
        assert (640, 360) in sizes and (1280, 720) in sizes, sizes
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
