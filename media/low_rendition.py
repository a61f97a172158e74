"""A second, lighter HLS rendition (360p) for viewers on weak networks (docs/LLHLS.md).

It is an extra output of the `SegmentWriter`, not a second recorder: every video packet the
writer muxes is also decoded and re-encoded here, audio packets are muxed into both, and the
writer's open and cut decisions apply to both outputs. The rendition's segments therefore start
at the same moments, carry the same numbers and the same discontinuities as the source's, which
is what a player switching renditions by media sequence number needs.

A decoder is opened per segment: the segment starts at a keyframe, and flushing it at the cut
puts every picture of the segment (a source with B-frames holds some back) into that segment.
Runs on the recorder's thread only.
"""

from __future__ import annotations

import contextlib
import fractions
import logging
import os
from pathlib import Path

import av
import av.container
import av.stream

from media.hls_playlist import atomic_write_text, write_live_playlist
from media.record_tracks import TS_TIME_BASE, CopyTemplateTrack, Track
from media.segment_index import SegmentEntry
from media.tap import EncodedPacket

log = logging.getLogger(__name__)

LOW_DIR = "360p"
MASTER_NAME = "master.m3u8"
# The rendition's box: the short side at most 360, the long side at most 640 (portrait phones
# give 360x640).
LOW_SHORT, LOW_LONG = 360, 640
# ~450 kbit/s with AAC and MPEG-TS overhead: an 800 kbit/s link still carries it while hls.js
# catches up to live at 1.5x speed (maxLiveSyncPlaybackRate), with room for playlists.
LOW_VIDEO_BITRATE = 320_000
LOW_VIDEO_MAXRATE = "350k"
LOW_VIDEO_BUFSIZE = "350k"
# What ultrafast libx264 writes (Constrained Baseline, level 3.0) and AAC-LC.
LOW_CODECS = "avc1.42e01e"
AAC_CODEC = "mp4a.40.2"
_PROFILE_CODECS = {"Baseline": "avc1.42001f", "Constrained Baseline": "avc1.42e01f",
                   "Main": "avc1.4d401f", "High": "avc1.640028"}
_MUX_OPTIONS = {"flush_packets": "1", "pes_payload_size": "0"}


def low_size(width: int, height: int) -> tuple[int, int]:
    """The rendition's size for a source: inside 640x360 (or 360x640), even, never upscaled."""
    short, long_ = min(width, height), max(width, height)
    scale = min(1.0, LOW_SHORT / short, LOW_LONG / long_)
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def low_rendition_enabled(mode: str, cpus: int | None) -> bool:
    """"auto": on with 4 or more cores. The extra decode and encode costs a share of a core per
    stream (bench/RESULTS.md); on a smaller box it would compete with the source's own work."""
    if mode == "on":
        return True
    if mode == "off":
        return False
    return (cpus or 1) >= 4


class LowRendition:
    """The 360p output of one `SegmentWriter`: files `360p/seg_*.ts` and `360p/index.m3u8`,
    and the master playlist next to the source's."""

    def __init__(self, source_dir: Path) -> None:
        self.source_dir = source_dir
        self.directory = source_dir / LOW_DIR
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob("*.tmp"):
            stale.unlink(missing_ok=True)
        self._container: av.container.OutputContainer | None = None
        self._tmp: Path | None = None
        self._video: av.stream.Stream | None = None
        self._audio: av.stream.Stream | None = None
        self._decoder: av.VideoCodecContext | None = None
        self._encoder: av.VideoCodecContext | None = None
        self._need_key = True
        self.source_size: tuple[int, int] | None = None
        self.size: tuple[int, int] | None = None
        self.source_codecs: str | None = None
        self.has_audio = False

    def open(self, seq: int, tracks: dict[str, Track],
             audio_template: av.stream.Stream | None) -> None:
        """A source segment opened: open ours (same number). `audio_template`: the source's."""
        self.discard()
        video = tracks.get("video")
        if video is None:
            return  # audio-only streams have no lighter rendition to offer
        self._tmp = self.directory / f"seg_{seq:06d}.ts.tmp"
        container = av.open(str(self._tmp), "w", format="mpegts", options=_MUX_OPTIONS)
        assert isinstance(container, av.container.OutputContainer)
        width, height = self.size or (0, 0)
        self._video = container.add_mux_stream("h264", rate=30, width=width, height=height)
        self._video.time_base = TS_TIME_BASE
        self._audio = (container.add_stream_from_template(audio_template)
                       if audio_template is not None else None)
        self.has_audio = self._audio is not None
        self._container = container
        # What the writer muxes is always H.264 (a VP8 publisher is already encoded once).
        decoder = av.CodecContext.create("h264", "r")
        assert isinstance(decoder, av.VideoCodecContext)
        # An RTMP source is AVCC: its SPS/PPS are the stream's extradata, not in-band.
        if isinstance(video, CopyTemplateTrack) and video.extradata:
            decoder.extradata = video.extradata
        self._decoder = decoder
        self._need_key = True

    def write(self, kind: str, packet: EncodedPacket) -> None:
        """Called before the source muxes `packet` (muxing consumes it)."""
        if self._container is None:
            return
        if kind == "audio" and self._audio is not None:
            copy = av.Packet(bytes(packet))
            copy.pts, copy.dts, copy.duration = packet.pts, packet.dts, packet.duration
            copy.time_base = packet.time_base or TS_TIME_BASE
            copy.stream = self._audio
            self._container.mux(copy)
        elif kind == "video" and self._decoder is not None:
            self._encode(self._decoder.decode(packet))

    def _encode(self, frames: list[av.VideoFrame]) -> None:
        assert self._container is not None and self._video is not None
        for frame in frames:
            if frame.pts is None:
                continue
            encoder = self._encoder or self._open_encoder(frame.width, frame.height)
            assert self.size is not None
            pts = frame.pts
            scaled = frame.reformat(width=self.size[0], height=self.size[1], format="yuv420p")
            scaled.pts = pts
            scaled.time_base = TS_TIME_BASE
            picture = av.video.frame.PictureType
            # The segment's first picture is a keyframe, as the source's is.
            scaled.pict_type = picture.I if self._need_key else picture.NONE
            self._need_key = False
            for out in encoder.encode(scaled):
                out.time_base = TS_TIME_BASE
                out.stream = self._video
                self._container.mux(out)

    def _open_encoder(self, width: int, height: int) -> av.VideoCodecContext:
        self.source_size = (width, height)
        if self._decoder is not None:
            self.source_codecs = _PROFILE_CODECS.get(self._decoder.profile or "", "avc1.640028")
        w, h = low_size(width, height)
        encoder = av.CodecContext.create("libx264", "w")
        assert isinstance(encoder, av.VideoCodecContext)
        encoder.width, encoder.height = w, h
        encoder.pix_fmt = "yuv420p"
        encoder.time_base = TS_TIME_BASE
        encoder.framerate = fractions.Fraction(30)
        encoder.bit_rate = LOW_VIDEO_BITRATE
        # No lookahead, no B-frames, one thread: no picture is held back past its segment.
        encoder.options = {"preset": "ultrafast", "tune": "zerolatency", "bf": "0", "g": "300",
                           "sc_threshold": "0", "threads": "1", "maxrate": LOW_VIDEO_MAXRATE,
                           "bufsize": LOW_VIDEO_BUFSIZE}
        self.size = (w, h)
        self._encoder = encoder
        return encoder

    def cut(self, seq: int) -> bool:
        """The source segment `seq` is being closed: close ours (durably). False: none written."""
        container, tmp, decoder = self._container, self._tmp, self._decoder
        self._container, self._tmp, self._decoder = None, None, None
        if container is None or tmp is None:
            return False
        try:
            if decoder is not None:
                self._container = container
                self._encode(decoder.decode(None))
                self._container = None
            container.close()
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        except (av.FFmpegError, OSError, ValueError):
            log.exception("closing a 360p segment failed; it is dropped")
            tmp.unlink(missing_ok=True)
            return False
        os.replace(tmp, self.directory / f"seg_{seq:06d}.ts")
        return True

    def discard(self) -> None:
        """The source dropped its open segment: so do we."""
        container, tmp = self._container, self._tmp
        self._container, self._tmp, self._decoder = None, None, None
        if container is not None:
            with contextlib.suppress(av.FFmpegError, OSError, ValueError):
                container.close()
        if tmp is not None:
            tmp.unlink(missing_ok=True)

    def publish(self, entries: list[SegmentEntry], window: int, ended: bool) -> None:
        """Our playlist lists the source's entries (same names, same numbers) and the master
        names both."""
        write_live_playlist(self.directory / "index.m3u8", entries, window, ended)
        if self.size is not None and self.source_size is not None:
            atomic_write_text(self.source_dir / MASTER_NAME, self.render_master(entries[-window:]))

    def render_master(self, shown: list[SegmentEntry]) -> str:
        assert self.size is not None and self.source_size is not None
        audio = f",{AAC_CODEC}" if self.has_audio else ""
        high = _peak_bandwidth(self.source_dir, shown, 2_500_000)
        low = _peak_bandwidth(self.directory, shown, 600_000)
        source_codecs = self.source_codecs or "avc1.640028"
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:6",
            "#EXT-X-INDEPENDENT-SEGMENTS",
            # Players start with the first variant listed (hls.js does): the light one starts
            # at once on any link, and ABR climbs to the source when the link allows.
            f'#EXT-X-STREAM-INF:BANDWIDTH={low},RESOLUTION={self.size[0]}x{self.size[1]},'
            f'CODECS="{LOW_CODECS}{audio}"',
            f"{LOW_DIR}/index.m3u8",
            f'#EXT-X-STREAM-INF:BANDWIDTH={high},RESOLUTION={self.source_size[0]}x'
            f'{self.source_size[1]},CODECS="{source_codecs}{audio}"',
            "index.m3u8",
        ]
        return "\n".join(lines) + "\n"


def _peak_bandwidth(directory: Path, shown: list[SegmentEntry], default: int) -> int:
    """BANDWIDTH is the peak segment bit rate (RFC 8216 4.3.4.2), over the segments shown."""
    rates = []
    for entry in shown:
        path = directory / entry.file
        if entry.duration > 0.5 and path.is_file():
            rates.append(path.stat().st_size * 8 / entry.duration)
    return int(max(rates)) if rates else default
