"""An RTMP publisher as WebRTC viewers see it: its H.264 as RTP (no transcode), its AAC as Opus.

The RTMP demuxer thread (media/rtmp_server.py) hands every packet to `RelayEncoder` before the
recorder gets it. Video is only re-framed: FLV's length-prefixed NAL units become RTP payloads
(aiortc's H.264 packetiser: STAP-A / FU-A), with the SPS/PPS of the stream's header put in front
of every IDR so a viewer can start at any keyframe. Audio is decoded and encoded to Opus once
per stream, never per viewer. The RTP packets go to the event loop in one call per frame and
from there into the stream's fan-outs, exactly like a WHIP publisher's packets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import av
from aiortc.codecs.h264 import H264Encoder
from aiortc.rtp import RtpPacket

log = logging.getLogger(__name__)

OPUS_FRAME_SAMPLES = 960  # 20 ms at 48 kHz
OPUS_BIT_RATE = 64_000


class RtmpRelay:
    """The hub's view of one RTMP connection (a `media.stream.Ingest`)."""

    kind = "rtmp"
    feeds_taps = False  # the RTMP side records on its own (media/rtmp_server.py)

    def __init__(self, stop: Callable[[], Awaitable[None]]) -> None:
        self.resource_id = "rtmp-" + secrets.token_urlsafe(12)
        self.since = datetime.now(UTC)
        self.created = time.monotonic()
        self.last_rtp = 0.0
        self.active = True
        self.handed_over = False  # a newer publisher took the session: no grace, no end
        self._stop = stop
        self._stream: Any = None  # the media.stream.LiveStream it feeds

    def bind(self, stream: Any) -> None:
        self._stream = stream

    def send_pli(self) -> bool:
        return False  # RTMP has no way to ask for a keyframe: viewers wait for the next GOP

    async def close(self) -> None:
        self.active = False
        await self._stop()

    async def hand_over(self) -> None:
        self.handed_over = True
        await self.close()

    # -- on the event loop, called from the demuxer thread
    def deliver(self, kind: str, packets: list[RtpPacket]) -> None:
        self.last_rtp = time.monotonic()
        stream = self._stream
        if not self.active or stream is None:
            return
        fanout = stream.fanouts.get(kind)
        if fanout is not None:
            for packet in packets:
                fanout.forward(packet)

    def set_profile(self, profile: str) -> None:
        if self.active and self._stream is not None:
            self._stream.video_profile = profile


class _RtpCounter:
    def __init__(self) -> None:
        self.ssrc = secrets.randbits(32)
        self.seq = secrets.randbelow(1 << 15)

    def packets(self, payloads: list[bytes], timestamp: int, marker_last: bool) -> list[RtpPacket]:
        out = []
        for i, payload in enumerate(payloads):
            out.append(RtpPacket(payload_type=0, sequence_number=self.seq, timestamp=timestamp,
                                 ssrc=self.ssrc, payload=payload,
                                 marker=int(marker_last and i == len(payloads) - 1)))
            self.seq = (self.seq + 1) & 0xFFFF
        return out


def _parse_avcc(extradata: bytes) -> tuple[int, list[bytes], str]:
    """(NAL length size, [SPS..., PPS...], profile-level-id) from an avcC record."""
    if len(extradata) < 7 or extradata[0] != 1:
        raise ValueError("not an avcC record")
    length_size = (extradata[4] & 0x03) + 1
    sets: list[bytes] = []
    i = 5
    count = extradata[i] & 0x1F
    i += 1
    for table in range(2):
        if table == 1:
            count = extradata[i]
            i += 1
        for _ in range(count):
            size = int.from_bytes(extradata[i:i + 2], "big")
            sets.append(extradata[i + 2:i + 2 + size])
            i += 2 + size
    profile = extradata[1:4].hex()
    return length_size, sets, profile


class RelayEncoder:
    """Runs on the demuxer thread: packets in, RTP handed to the loop (see module doc)."""

    def __init__(self, relay: RtmpRelay, loop: asyncio.AbstractEventLoop) -> None:
        self._relay = relay
        self._loop = loop
        self._video: _RtpCounter = _RtpCounter()
        self._audio: _RtpCounter = _RtpCounter()
        self._length_size = 4
        self._param_sets: list[bytes] = []
        self._video_ok = False
        self._decoder: Any = None
        self._resampler: Any = None
        self._opus: Any = None
        self._audio_ts = 0
        self._failed: set[str] = set()

    def open(self, container: av.container.InputContainer) -> None:
        for stream in container.streams:
            ctx = stream.codec_context
            if stream.type == "video" and ctx.name == "h264" and ctx.extradata:
                self._length_size, self._param_sets, profile = _parse_avcc(bytes(ctx.extradata))
                self._video_ok = True
                self._call(self._relay.set_profile, profile)
            elif stream.type == "audio" and self._decoder is None:
                decoder = av.CodecContext.create(ctx.name, "r")
                if ctx.extradata:
                    decoder.extradata = ctx.extradata
                self._decoder = decoder
                self._resampler = av.AudioResampler(format="s16", layout="stereo", rate=48000,
                                                    frame_size=OPUS_FRAME_SAMPLES)
                opus = av.CodecContext.create("libopus", "w")
                assert isinstance(opus, av.AudioCodecContext)
                opus.sample_rate, opus.layout, opus.format = 48000, "stereo", "s16"
                opus.bit_rate = OPUS_BIT_RATE
                opus.options = {"application": "lowdelay"}
                self._opus = opus

    def push(self, packet: Any) -> None:
        """One demuxed packet (not kept: the recorder owns it next)."""
        kind = packet.stream.type
        if kind in self._failed:
            return
        try:
            if kind == "video" and self._video_ok:
                self._push_video(packet)
            elif kind == "audio" and self._decoder is not None:
                self._push_audio(packet)
        except (av.FFmpegError, ValueError, IndexError):
            # WebRTC viewers lose this kind; the recording (and HLS) carry on unaffected.
            log.warning("RTMP %s cannot be relayed to WebRTC viewers", kind, exc_info=True)
            self._failed.add(kind)

    def _push_video(self, packet: Any) -> None:
        data = bytes(packet)
        n = self._length_size
        nals: list[bytes] = []
        i = 0
        while i + n <= len(data):
            size = int.from_bytes(data[i:i + n], "big")
            nal = data[i + n:i + n + size]
            i += n + size
            if nal and nal[0] & 0x1F not in (7, 8, 9):  # own SPS/PPS below; no delimiters
                nals.append(nal)
        if not nals:
            return
        if any(nal[0] & 0x1F == 5 for nal in nals):
            nals = self._param_sets + nals
        payloads = H264Encoder._packetize(nals)
        pts = packet.pts if packet.pts is not None else packet.dts
        timestamp = int(pts * packet.time_base * 90000) & 0xFFFFFFFF
        self._call(self._relay.deliver, "video", self._video.packets(payloads, timestamp, True))

    def _push_audio(self, packet: Any) -> None:
        copy = av.Packet(bytes(packet))
        copy.pts, copy.dts, copy.time_base = packet.pts, packet.dts, packet.time_base
        out: list[RtpPacket] = []
        for frame in self._decoder.decode(copy):
            for chunk in self._resampler.resample(frame):
                for encoded in self._opus.encode(chunk):
                    out += self._audio.packets([bytes(encoded)], self._audio_ts, False)
                    self._audio_ts = (self._audio_ts + OPUS_FRAME_SAMPLES) & 0xFFFFFFFF
        if out:
            self._call(self._relay.deliver, "audio", out)

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed under us at shutdown
            self._loop.call_soon_threadsafe(fn, *args)
