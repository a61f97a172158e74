"""The live playlist keeps RFC 8216's numbering promises across every sequence of events.

A hypothesis run drives the real `SegmentWriter` (real MPEG-TS segments, the real index on disk)
through segments, input breaks (a publisher reconnect) and restarts of the writer (a process
restart), with live windows of one to six segments. Every playlist it publishes is parsed here,
independently of the renderer, and compared with the one before (RFC 8216 6.2.1, 6.3.2):

- EXT-X-MEDIA-SEQUENCE never goes back;
- a segment URI keeps its media sequence number and its discontinuity sequence number;
- EXT-X-DISCONTINUITY-SEQUENCE grows by exactly the number of EXT-X-DISCONTINUITY tags that
  slid out of the window, and never otherwise;
- the tags sit on the segments after a break, never on the first segment of the recording.

hls.js stops playing (a fatal "discontinuity sequence mismatch") when the second one fails.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import av
import av.container
import av.stream
from hypothesis import example, given, settings
from hypothesis import strategies as st

from media.record_tracks import TS_TIME_BASE
from media.segment_writer import PLAYLIST_NAME, SegmentWriter, segment_name
from media.tap import EncodedPacket

EXAMPLES = int(os.environ.get("LINLI_PROPERTY_EXAMPLES", "200"))
PACKET_S = 1152 / 48000  # one MP2 frame
PACKETS_PER_SEGMENT = 8


def _mp2_packets() -> list[bytes]:
    """A few MP2 frames to mux again and again: a cheap codec the TS muxer needs nothing for."""
    encoder = av.CodecContext.create("mp2", "w")
    assert isinstance(encoder, av.AudioCodecContext)
    encoder.sample_rate, encoder.layout, encoder.format = 48000, "mono", "s16"
    encoder.bit_rate = 64_000
    out: list[bytes] = []
    for i in range(PACKETS_PER_SEGMENT + 2):
        frame = av.AudioFrame(format="s16", layout="mono", samples=1152)
        frame.planes[0].update(bytes(2 * 1152))
        frame.sample_rate = 48000
        frame.pts = i * 1152
        out.extend(bytes(p) for p in encoder.encode(frame))
    return out[:PACKETS_PER_SEGMENT]


MP2 = _mp2_packets()


class Mp2Track:
    """A `media.record_tracks.Track` muxing prepared MP2 frames as they are."""

    kind = "audio"
    controls_keyframes = False

    def add_to(self, container: av.container.OutputContainer) -> av.stream.Stream:
        return container.add_stream("mp2", rate=48000)

    def process(self, packet: EncodedPacket, force_keyframe: bool = False) -> list[EncodedPacket]:
        return [packet]

    def flush(self) -> list[EncodedPacket]:
        return []


@dataclass
class Playlist:
    media_seq: int
    disc_seq: int
    # (uri, media sequence number, discontinuity sequence number, tagged)
    segments: list[tuple[str, int, int, bool]]


def parse(text: str) -> Playlist:
    """RFC 8216 numbering, read the way a player reads it."""
    media_seq = disc_seq = 0
    tags = 0
    tagged = False
    raw: list[tuple[str, int, bool]] = []
    for line in text.splitlines():
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            media_seq = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-DISCONTINUITY-SEQUENCE:"):
            disc_seq = int(line.split(":", 1)[1])
        elif line == "#EXT-X-DISCONTINUITY":
            tags += 1
            tagged = True
        elif line and not line.startswith("#"):
            raw.append((line, tags, tagged))
            tagged = False
    segments = [(uri, media_seq + i, disc_seq + before, t) for i, (uri, before, t) in enumerate(raw)]
    return Playlist(media_seq, disc_seq, segments)


def check_step(before: Playlist, after: Playlist) -> None:
    assert after.media_seq >= before.media_seq
    now = {uri: (seq, dseq) for uri, seq, dseq, _ in after.segments}
    for uri, seq, dseq, _ in before.segments:
        if uri in now:
            assert now[uri] == (seq, dseq), (uri, (seq, dseq), now[uri])
    removed_tags = sum(1 for uri, _, _, tagged in before.segments if tagged and uri not in now)
    assert after.disc_seq - before.disc_seq == removed_tags, (before, after)


OPS = st.lists(st.sampled_from(["segment", "segment", "segment", "break", "restart"]),
               min_size=1, max_size=24)


@settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None)
@given(ops=OPS, window=st.integers(min_value=1, max_value=6))
# The stream's first segment sliding out: the discontinuity sequence must stay 0.
@example(ops=["segment"] * 4, window=2)
# A reconnect's segment becomes the first shown, then slides out (the 2 -> 1 -> 2 seen by hls.js).
@example(ops=["segment", "segment", "break", "segment", "segment", "segment", "segment"], window=2)
@example(ops=["segment", "restart", "segment", "break", "restart", "segment", "segment"], window=1)
def test_live_playlist_numbering_follows_rfc_8216(ops: list[str], window: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        tracks = {"audio": Mp2Track()}
        writer = SegmentWriter(directory, live_window=window)
        t = 0.0
        expected: list[tuple[str, bool]] = []  # every segment written: (uri, tagged)
        pending = False
        previous: Playlist | None = None
        for op in ops:
            if op == "break":
                writer.mark_discontinuity()  # what the recorder does when an input starts
                pending = True
                continue
            if op == "restart":
                writer = SegmentWriter(directory, live_window=window)
                pending = True
                continue
            for data in MP2:
                packet = av.Packet(data)
                packet.pts = packet.dts = round(t / float(TS_TIME_BASE))
                packet.time_base = TS_TIME_BASE
                packet.duration = round(PACKET_S / float(TS_TIME_BASE))
                writer.write(tracks, "audio", packet, t, 1_767_225_600.0 + t)
                t += PACKET_S
            entry = writer.cut()
            assert entry is not None
            expected.append((segment_name(entry.seq), pending and len(expected) > 0))
            pending = False
            playlist = parse((directory / PLAYLIST_NAME).read_text(encoding="utf-8"))
            assert [(uri, tagged) for uri, _, _, tagged in playlist.segments] == expected[-window:]
            if previous is not None:
                check_step(previous, playlist)
            previous = playlist


def test_parse_reads_numbering_like_a_player() -> None:
    """The checker itself: tags count for the segment they precede and every later one."""
    text = ("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-DISCONTINUITY-SEQUENCE:2\n"
            "#EXTINF:2.0,\na.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:2.0,\nb.ts\n#EXTINF:2.0,\nc.ts\n")
    assert parse(text).segments == [("a.ts", 7, 2, False), ("b.ts", 8, 3, True), ("c.ts", 9, 3, False)]



def test_a_recording_from_before_keeps_its_published_numbering(tmp_path: Path) -> None:
    """Indexes written by earlier versions tagged the first segment and stored no `disc_seq`;
    the playlist rendered from them numbers segments as an RFC-abiding server would have."""
    lines = [{"seq": n, "file": segment_name(n), "duration": 2.0, "start": 2.0 * (n - 1),
              "wall": 1_767_225_600.0 + 2 * n, "disc": n in (1, 3)} for n in (1, 2, 3, 4)]
    (tmp_path / "index.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    for line in lines:
        (tmp_path / str(line["file"])).write_bytes(b"")
    writer = SegmentWriter(tmp_path, live_window=2)
    writer.write_playlist()
    playlist = parse((tmp_path / PLAYLIST_NAME).read_text(encoding="utf-8"))
    assert playlist.disc_seq == 0
    assert playlist.segments == [(segment_name(3), 3, 1, True), (segment_name(4), 4, 1, False)]
