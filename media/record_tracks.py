"""How one input track becomes MPEG-TS packets: copied as sent, or (VP8, Opus) encoded once.

Every track receives packets already mapped onto the recording's timeline (time base 1/90000)
and returns packets ready to mux. Encoders live in the track, not in a segment's container, so
one encoder per stream serves every segment (HLS and the recording share it).
"""

from __future__ import annotations

import fractions
from typing import Protocol

import av
import av.container
import av.stream

from media.tap import EncodedPacket

TS_TIME_BASE = fractions.Fraction(1, 90000)
AUDIO_RATE = 48000
AUDIO_LAYOUT = "mono"
AUDIO_BITRATE = 64_000
# Forced keyframes for the one VP8→H.264 encode: segments follow them.
SEGMENT_TARGET_S = 2.0


class Track(Protocol):
    kind: str  # "video" | "audio"
    # True when the track encodes video itself and can put a keyframe wherever a segment starts.
    controls_keyframes: bool

    def add_to(self, container: av.container.OutputContainer) -> av.stream.Stream: ...

    def process(self, packet: EncodedPacket, force_keyframe: bool = False) -> list[EncodedPacket]: ...

    def flush(self) -> list[EncodedPacket]: ...


class CopyTemplateTrack:
    """Remux: packets go out as they came; stream parameters come from a demuxed stream (RTMP)."""

    controls_keyframes = False

    def __init__(self, kind: str, template: av.stream.Stream) -> None:
        self.kind = kind
        self._template = template

    @property
    def extradata(self) -> bytes | None:
        """The stream's codec setup (H.264 SPS/PPS of an AVCC stream), for a decoder."""
        context = self._template.codec_context
        return context.extradata if context is not None else None

    def add_to(self, container: av.container.OutputContainer) -> av.stream.Stream:
        return container.add_stream_from_template(self._template)

    def process(self, packet: EncodedPacket, force_keyframe: bool = False) -> list[EncodedPacket]:
        return [packet]

    def flush(self) -> list[EncodedPacket]:
        return []


class CopyAnnexBTrack:
    """Remux of Annex-B H.264 (what a WebRTC depacketiser yields): SPS/PPS travel in-band."""

    kind = "video"
    controls_keyframes = False

    def __init__(self, codec_name: str = "h264") -> None:
        self._codec_name = codec_name

    def add_to(self, container: av.container.OutputContainer) -> av.stream.Stream:
        stream = container.add_mux_stream(self._codec_name, rate=30)
        stream.time_base = TS_TIME_BASE
        return stream

    def process(self, packet: EncodedPacket, force_keyframe: bool = False) -> list[EncodedPacket]:
        return [packet]

    def flush(self) -> list[EncodedPacket]:
        return []


class TranscodeVideoTrack:
    """The one encode a VP8 publisher costs: decode, encode H.264 with a keyframe per segment."""

    kind = "video"
    controls_keyframes = True

    def __init__(self, source_codec: str, max_width: int = 1280, max_height: int = 720) -> None:
        decoder = av.CodecContext.create(source_codec, "r")
        assert isinstance(decoder, av.VideoCodecContext)
        self._decoder = decoder
        self._encoder: av.VideoCodecContext | None = None
        self._size: tuple[int, int] | None = None
        self._max = (max_width, max_height)

    def _open_encoder(self, width: int, height: int) -> av.VideoCodecContext:
        # Bounded output size: a 4K phone must not cost a core; even sizes for yuv420p.
        scale = min(1.0, self._max[0] / width, self._max[1] / height)
        w, h = int(width * scale) // 2 * 2, int(height * scale) // 2 * 2
        encoder = av.CodecContext.create("libx264", "w")
        assert isinstance(encoder, av.VideoCodecContext)
        encoder.width, encoder.height = w, h
        encoder.pix_fmt = "yuv420p"
        encoder.time_base = TS_TIME_BASE
        encoder.framerate = fractions.Fraction(30)
        # No lookahead, no B-frames: the encode adds no latency and little CPU. Keyframes are
        # forced by the segmenter, so x264's own GOP is set long.
        encoder.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": "23",
                           "bf": "0", "g": "300", "sc_threshold": "0"}
        self._size = (w, h)
        self._encoder = encoder
        return encoder

    def add_to(self, container: av.container.OutputContainer) -> av.stream.Stream:
        width, height = self._size or (0, 0)
        stream = container.add_mux_stream("h264", rate=30, width=width, height=height)
        stream.time_base = TS_TIME_BASE
        return stream

    def process(self, packet: EncodedPacket, force_keyframe: bool = False) -> list[EncodedPacket]:
        out: list[EncodedPacket] = []
        pts = packet.pts
        for frame in self._decoder.decode(packet):
            encoder = self._encoder or self._open_encoder(frame.width, frame.height)
            assert self._size is not None
            if (frame.width, frame.height) != self._size or frame.format.name != "yuv420p":
                frame = frame.reformat(width=self._size[0], height=self._size[1], format="yuv420p")
            frame.pts = pts
            frame.time_base = TS_TIME_BASE
            picture = av.video.frame.PictureType
            frame.pict_type = picture.I if force_keyframe else picture.NONE
            force_keyframe = False
            out.extend(encoder.encode(frame))
        for p in out:
            p.time_base = TS_TIME_BASE
        return out

    def flush(self) -> list[EncodedPacket]:
        if self._encoder is None:
            return []
        out = list(self._encoder.encode(None))
        for p in out:
            p.time_base = TS_TIME_BASE
        return out


class TranscodeAudioTrack:
    """Opus → AAC once per stream: HLS players (hls.js, Safari) play AAC in MPEG-TS, not Opus."""

    kind = "audio"
    controls_keyframes = False

    def __init__(self, source_codec: str = "opus") -> None:
        decoder = av.CodecContext.create(source_codec, "r")
        assert isinstance(decoder, av.AudioCodecContext)
        self._decoder = decoder
        encoder = av.CodecContext.create("aac", "w")
        assert isinstance(encoder, av.AudioCodecContext)
        encoder.sample_rate = AUDIO_RATE
        # Mono: a phone or laptop microphone is one channel (browsers send mono Opus by default),
        # and a stereo AAC encode costs 2-3x the CPU (~1.5-2% of a core vs ~0.6% measured).
        encoder.layout = AUDIO_LAYOUT
        encoder.format = "fltp"
        encoder.time_base = fractions.Fraction(1, AUDIO_RATE)
        encoder.bit_rate = AUDIO_BITRATE
        encoder.options = {"aac_coder": "fast"}
        self._encoder = encoder
        self._resampler = av.AudioResampler(format="fltp", layout=AUDIO_LAYOUT, rate=AUDIO_RATE,
                                            frame_size=1024)
        # Output pts counts samples from the first packet's time, so the encode never drifts.
        self._next_sample: int | None = None

    def add_to(self, container: av.container.OutputContainer) -> av.stream.Stream:
        # Same settings as our encoder, so the stream's AudioSpecificConfig matches its packets.
        stream = container.add_stream("aac", rate=AUDIO_RATE)
        stream.layout = AUDIO_LAYOUT
        stream.bit_rate = AUDIO_BITRATE
        stream.options = {"aac_coder": "fast"}
        return stream

    def process(self, packet: EncodedPacket, force_keyframe: bool = False) -> list[EncodedPacket]:
        if self._next_sample is None and packet.pts is not None:
            self._next_sample = int(packet.pts * AUDIO_RATE / 90000)
        out: list[EncodedPacket] = []
        for frame in self._decoder.decode(packet):
            frame.pts = None
            for chunk in self._resampler.resample(frame):
                out.extend(self._encode(chunk))
        return out

    def _encode(self, chunk: av.AudioFrame | None) -> list[EncodedPacket]:
        if chunk is not None:
            chunk.pts = self._next_sample or 0
            chunk.time_base = fractions.Fraction(1, AUDIO_RATE)
            self._next_sample = (self._next_sample or 0) + chunk.samples
        packets = list(self._encoder.encode(chunk))
        for p in packets:
            p.time_base = fractions.Fraction(1, AUDIO_RATE)
        return packets

    def flush(self) -> list[EncodedPacket]:
        out: list[EncodedPacket] = []
        for chunk in self._resampler.resample(None):
            out.extend(self._encode(chunk))
        out.extend(self._encode(None))
        return out
