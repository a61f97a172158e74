"""Live HLS and the recording: real encoded packets in, real MPEG-TS segments out, probed by PyAV."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import av
import pytest

from media.probe import decodes, probe
from media.record_tracks import CopyAnnexBTrack, TranscodeAudioTrack
from media.recorder import Recorder
from media.recordings import Recordings, RecordingSink, tracks_for
from media.segment_index import load_index
from media.tap import StreamInfo
from tests.media_synth import interleave, opus_packets, video_packets

MAX_SEGMENT_S = 2.5


def _check_segments(folder: Path, expected_s: float) -> None:
    entries = load_index(folder)
    assert entries, "no segment was written"
    assert all(e.duration <= MAX_SEGMENT_S for e in entries), [e.duration for e in entries]
    result = probe(str(folder / "index.m3u8"))
    assert abs(result.duration_s - expected_s) <= 0.1 * expected_s, result
    assert result.video_codec == "h264" and result.audio_codec == "aac"
    for entry in entries:
        seg = probe(str(folder / entry.file))
        assert seg.keyframes >= 1 and seg.duration_s <= MAX_SEGMENT_S + 0.1, (entry, seg)


@pytest.mark.parametrize("codec", ["libx264", "libvpx"])
async def test_tap_sink_records_h264_remux_and_vp8_encode(tmp_path: Path, codec: str) -> None:
    """The WebRTC tap's contract (shared clock, Annex-B H.264 or VP8, Opus) → valid 2 s segments."""
    seconds = 7.0
    video = video_packets(seconds, codec=codec)
    audio = opus_packets(seconds)
    recordings = Recordings(tmp_path, asyncio.get_running_loop())
    requested: list[int] = []
    sink = RecordingSink(recordings, 5, requested.append)
    info = StreamInfo(5, "h264" if codec == "libx264" else "vp8", "opus")
    sink.on_start(info)
    for kind, packet in interleave(video, audio):
        sink.on_packet(packet, kind)
    sink.on_stop(final=True)
    await recordings.close()
    folder = recordings.recording_dir(5)
    _check_segments(folder, seconds)
    assert "#EXT-X-ENDLIST" in (folder / "index.m3u8").read_text()


async def test_reconnect_continues_the_same_recording_without_a_gap(tmp_path: Path) -> None:
    video, audio = video_packets(4.0), opus_packets(4.0)
    recorder = Recorder(9, tmp_path / "rec")
    for final in (False, True):  # the same publisher twice: a drop, then a reconnect
        recorder.start_input({"video": CopyAnnexBTrack(), "audio": TranscodeAudioTrack()}, "shared")
        for kind, packet in interleave(video, audio):
            recorder.push_packet(kind, packet)
        recorder.stop_input(final=final)
    await asyncio.to_thread(recorder.close)
    entries = load_index(tmp_path / "rec")
    # The reconnect is a discontinuity; the start of the recording follows nothing.
    assert [e.disc for e in entries].count(True) == 1 and not entries[0].disc
    for before, after in itertools.pairwise(entries):
        assert abs(before.start + before.duration - after.start) < 0.05
    assert abs(sum(e.duration for e in entries) - 8.0) < 0.4
    # The live playlist shows the last 6 segments, across the reconnect, as one timeline.
    result = probe(str(tmp_path / "rec" / "index.m3u8"))
    window = sum(e.duration for e in entries[-6:])
    assert abs(result.duration_s - window) <= 0.1 * window


async def test_torn_segment_and_index_line_are_ignored_after_a_crash(tmp_path: Path) -> None:
    """What SIGKILL leaves behind (a .tmp segment, half an index line) never reaches a playlist."""
    video, audio = video_packets(4.0), opus_packets(4.0)
    folder = tmp_path / "rec"
    recorder = Recorder(3, folder)
    recorder.start_input(tracks_for(StreamInfo(3, "h264", "opus")), "shared")
    for kind, packet in interleave(video, audio):
        recorder.push_packet(kind, packet)
    recorder.stop_input(final=False)
    await asyncio.to_thread(recorder.close)
    complete = load_index(folder)
    (folder / "seg_000099.ts.tmp").write_bytes(b"\x47" * 1000)
    index = folder / "index.jsonl"
    index.write_text(index.read_text() + '{"seq": 99, "file": "seg_0')
    again = Recorder(3, folder)
    await asyncio.to_thread(again.close)
    assert load_index(folder) == complete
    assert not (folder / "seg_000099.ts.tmp").exists()


def test_probe_rejects_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ts"
    bad.write_bytes(b"not media at all" * 100)
    with pytest.raises(av.FFmpegError):
        probe(str(bad))


async def test_a_recorder_that_falls_behind_drops_then_resumes_at_a_keyframe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bounded memory: past the queue limit packets are dropped, and the recording resumes at
    the next keyframe, so every segment still starts with a picture that decodes."""
    import media.recorder

    monkeypatch.setattr(media.recorder, "MAX_QUEUED", 40)
    video = video_packets(5.0, codec="libvpx", gop_s=1.0)
    folder = tmp_path / "rec"
    recorder = Recorder(4, folder)
    recorder.start_input(tracks_for(StreamInfo(4, "vp8", None)), "shared")
    for packet in video:  # far faster than one VP8 decode + H.264 encode per packet
        recorder.push_packet("video", packet)
    recorder.stop_input(final=True)
    await asyncio.to_thread(recorder.close)
    entries = load_index(folder)
    assert entries
    assert sum(e.duration for e in entries) < 5.0  # something was dropped...
    for entry in entries:  # ...and what was kept plays
        seg = probe(str(folder / entry.file))
        assert seg.keyframes >= 1
        assert decodes(str(folder / entry.file), frames=1) == 1


async def test_a_source_faster_than_real_time_is_dated_by_arrival(tmp_path: Path) -> None:
    """Eight seconds of media sent within a moment (an ffmpeg without -re, a source whose clock
    runs fast): segments are dated when they arrived, never later, so a product pinned now does
    not open its chapter seconds before the picture it belongs to."""
    video, audio = video_packets(8.0), opus_packets(8.0)
    recorder = Recorder(6, tmp_path / "rec")
    before = time.time()
    recorder.start_input(tracks_for(StreamInfo(6, "h264", "opus")), "shared")
    for kind, packet in interleave(video, audio):
        recorder.push_packet(kind, packet)
    sent = time.time()
    recorder.stop_input(final=True)
    await asyncio.to_thread(recorder.close)
    entries = load_index(tmp_path / "rec")
    assert sum(e.duration for e in entries) >= 7.0
    assert all(before <= e.wall <= sent for e in entries), (before, sent, entries)
