"""A guest on camera (连线): the guest's picture laid over a corner of the host's, once per stream.

While a guest is on, the host's encoded video no longer goes to viewers, HLS and the recording
as sent: the stream diverts it here (media/stream.py). One worker thread decodes it, pastes the
latest decoded guest picture into the bottom-right corner, and encodes the result once with the
codec viewers negotiated (H.264 or VP8). The output is RTP for the stream's video fan-out (a new
SSRC: the fan-out rebases, and viewers wait for the keyframe the composer starts with) and
encoded packets for the taps, on the host's own timeline. So the cost is one decode of each
picture and one encode per stream, whatever the number of viewers (docs/GUEST.md has the figures).

Keyframe requests (viewers joining, HLS segment cuts) go to the composer while it runs; the host
is asked only when the composer's decoder needs a fresh start.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder, vp8_depayload
from aiortc.rtp import RtpPacket

from media.rtp_keyframes import is_keyframe
from media.tap import VIDEO_TIME_BASE_HZ, EncodedPacket

log = logging.getLogger(__name__)

TIME_BASE = fractions.Fraction(1, VIDEO_TIME_BASE_HZ)
QUEUE_MAX = 30  # ~1 s of host frames; a composer further behind skips to the next keyframe
PIP_WIDTH_SHARE = 0.32  # of the host picture's width
PIP_MAX_HEIGHT_SHARE = 0.5  # a portrait phone picture stays in its corner
PIP_MARGIN = 8
BIT_RATE = 1_200_000
_DECODERS = {"h264": "h264", "vp8": "vp8"}


def _even(value: float) -> int:
    return max(2, int(value) // 2 * 2)


def pip_box(host_w: int, host_h: int, guest_w: int, guest_h: int) -> tuple[int, int, int, int]:
    """(x, y, width, height) of the guest's picture inside the host's: bottom-right corner."""
    width = _even(host_w * PIP_WIDTH_SHARE)
    height = _even(width * guest_h / max(1, guest_w))
    if height > host_h * PIP_MAX_HEIGHT_SHARE:
        height = _even(host_h * PIP_MAX_HEIGHT_SHARE)
        width = _even(height * guest_w / max(1, guest_h))
    x = _even(host_w - width - PIP_MARGIN)
    y = _even(host_h - height - PIP_MARGIN)
    return x, y, width, height


def overlay(host: av.VideoFrame, guest: av.VideoFrame) -> av.VideoFrame:
    """The host's picture with the guest's scaled into its corner (yuv420p, host's size)."""
    w, h = host.width // 2 * 2, host.height // 2 * 2
    if (w, h) != (host.width, host.height) or host.format.name != "yuv420p":
        host = host.reformat(width=w, height=h, format="yuv420p")
    x, y, pw, ph = pip_box(w, h, guest.width, guest.height)
    small = guest.reformat(width=pw, height=ph, format="yuv420p").to_ndarray().reshape(-1)
    # Both arrays hold the three planes one after another (Y, then U, then V at half size).
    canvas = host.to_ndarray()
    flat = canvas.reshape(-1)
    y_size, c_size = w * h, (w // 2) * (h // 2)
    sy, sc = pw * ph, (pw // 2) * (ph // 2)
    flat[:y_size].reshape(h, w)[y:y + ph, x:x + pw] = small[:sy].reshape(ph, pw)
    for plane in range(2):
        dst = flat[y_size + plane * c_size:y_size + (plane + 1) * c_size].reshape(h // 2, w // 2)
        src = small[sy + plane * sc:sy + (plane + 1) * sc].reshape(ph // 2, pw // 2)
        dst[y // 2:(y + ph) // 2, x // 2:(x + pw) // 2] = src
    return av.VideoFrame.from_ndarray(canvas, format="yuv420p")


class _Rtp:
    """The composer's own RTP source (its SSRC tells the fan-out the source changed)."""

    def __init__(self) -> None:
        self.ssrc = secrets.randbits(32)
        self.seq = secrets.randbelow(1 << 15)

    def packets(self, payloads: list[bytes], timestamp: int) -> list[RtpPacket]:
        out = []
        for i, payload in enumerate(payloads):
            out.append(RtpPacket(payload_type=0, sequence_number=self.seq, timestamp=timestamp,
                                 ssrc=self.ssrc, payload=payload, marker=int(i == len(payloads) - 1)))
            self.seq = (self.seq + 1) & 0xFFFF
        return out


Deliver = Callable[[list[RtpPacket], EncodedPacket], None]


class Composer:
    """The worker thread: host packets in (from the loop), composed RTP and packets out."""

    def __init__(self, session_id: int, codec: str, loop: asyncio.AbstractEventLoop,
                 deliver: Deliver, ask_host_keyframe: Callable[[], None]) -> None:
        self.session_id = session_id
        self.codec = codec  # what viewers negotiated; the host sends the same
        self.guest_frame: av.VideoFrame | None = None  # replaced by the loop, read by the thread
        self.frames = 0
        self.dropped = 0
        self.cpu_s = 0.0  # this thread's CPU time: the per-stream cost of composing
        self._loop = loop
        self._deliver = deliver
        self._ask_host_keyframe = ask_host_keyframe
        self._queue: queue.Queue[EncodedPacket | None] = queue.Queue(maxsize=QUEUE_MAX)
        self._force_key = True
        self._waiting_key = True  # the decoder starts at a host keyframe
        self._decoder: Any = None
        self._encoder: Any = None
        self._size = (0, 0)
        self._rtp = _Rtp()
        self._thread = threading.Thread(target=self._run, name=f"guest-compose-{session_id}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ask_host_keyframe()

    def push(self, packet: EncodedPacket) -> None:
        """A host video packet, on the loop thread (must not block)."""
        try:
            self._queue.put_nowait(packet)
        except queue.Full:
            # Behind: what is queued still decodes, then we wait for the host's next keyframe.
            self.dropped += 1
            self._waiting_key = True
            self._ask_host_keyframe()

    def force_keyframe(self) -> None:
        self._force_key = True

    def stop(self) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        if not self._thread.is_alive():
            return
        while True:  # the stop sentinel must get in even when the queue is full
            try:
                self._queue.put(None, timeout=0.1)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()

    def join(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- the worker thread
    def _run(self) -> None:
        while True:
            packet = self._queue.get()
            if packet is None:
                return
            started = time.thread_time()
            try:
                self._one(packet)
            except (av.FFmpegError, ValueError):
                log.warning("guest composer of session %s: bad host frame; waiting for a keyframe",
                            self.session_id, exc_info=True)
                self._decoder = None
                self._waiting_key = True
                self._call(self._ask_host_keyframe)
            self.cpu_s += time.thread_time() - started

    def _one(self, packet: EncodedPacket) -> None:
        if self._waiting_key:
            if not packet.is_keyframe:
                return
            self._waiting_key = False
        if self._decoder is None:
            # One thread each (decoder, encoder): the cost stays on this thread, where it is
            # counted, and a stream's composing cannot take both cores of a small box.
            self._decoder = av.CodecContext.create(_DECODERS[self.codec], "r")
            self._decoder.thread_count = 1
        pts = packet.pts
        for frame in self._decoder.decode(packet):
            guest = self.guest_frame
            picture = overlay(frame, guest) if guest is not None else frame
            if picture.format.name != "yuv420p":
                picture = picture.reformat(format="yuv420p")
            picture.pts = pts
            picture.time_base = TIME_BASE
            if self.codec == "vp8":
                self._encode_vp8(picture)
            else:
                self._encode_h264(picture)
            self.frames += 1

    def _encode_h264(self, picture: av.VideoFrame) -> None:
        if self._encoder is None or self._size != (picture.width, picture.height):
            encoder = av.CodecContext.create("libx264", "w")
            assert isinstance(encoder, av.VideoCodecContext)
            encoder.width, encoder.height, encoder.pix_fmt = picture.width, picture.height, "yuv420p"
            encoder.time_base = TIME_BASE
            encoder.framerate = fractions.Fraction(30)
            encoder.bit_rate = BIT_RATE
            # Baseline, no lookahead, no B-frames (viewers negotiated constrained baseline;
            # nothing may add latency). Keyframes come when asked for, so x264's GOP is long.
            encoder.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline",
                               "bf": "0", "g": "300", "sc_threshold": "0", "threads": "1"}
            self._encoder, self._size = encoder, (picture.width, picture.height)
            self._force_key = True
        kind = av.video.frame.PictureType
        picture.pict_type = kind.I if self._force_key else kind.NONE
        self._force_key = False
        for encoded in self._encoder.encode(picture):
            data = bytes(encoded)
            if data:
                payloads = H264Encoder._packetize(H264Encoder._split_bitstream(data))
                pts = int(encoded.pts) if encoded.pts is not None else int(picture.pts or 0)
                self._emit(data, payloads, pts, bool(encoded.is_keyframe))

    def _encode_vp8(self, picture: av.VideoFrame) -> None:
        # aiortc's libvpx binding, tuned for real time: PyAV's libvpx took ~15x the CPU here.
        if self._encoder is None:
            self._encoder = Vp8Encoder()
            self._encoder.target_bitrate = BIT_RATE
        force, self._force_key = self._force_key, False
        pts = int(picture.pts or 0)  # read first: encoding rebases the frame's pts in place
        payloads, _ = self._encoder.encode(picture, force_keyframe=force)
        if payloads:
            data = b"".join(vp8_depayload(p) for p in payloads)
            self._emit(data, payloads, pts, is_keyframe("vp8", data))

    def _emit(self, data: bytes, payloads: list[bytes], pts: int, key: bool) -> None:
        rtp = self._rtp.packets(payloads, pts & 0xFFFFFFFF)
        packet = av.Packet(data)
        packet.pts = packet.dts = pts
        packet.time_base = TIME_BASE
        packet.is_keyframe = key
        self._call(self._deliver, rtp, packet)

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed under us at shutdown
            self._loop.call_soon_threadsafe(fn, *args)


AUDIO_RATE = 48_000
AUDIO_FRAME = 960  # 20 ms, what WebRTC publishers send
GUEST_AUDIO_MAX = AUDIO_RATE // 4  # samples kept of the guest's voice: at most 250 ms behind
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE)


class AudioMixer:
    """The host's Opus and the guest's decoded voice -> one Opus stream, on the host's timeline.

    Runs on the event loop: an Opus decode, a sum and an Opus encode per 20 ms packet cost
    well under a millisecond. The guest's samples wait in a short buffer (at most 250 ms, the
    oldest dropped) and silence stands in when she has none.
    """

    def __init__(self, deliver: Callable[[list[RtpPacket], EncodedPacket], None]) -> None:
        self._deliver = deliver
        decoder = av.CodecContext.create("libopus", "r")
        assert isinstance(decoder, av.AudioCodecContext)
        decoder.format, decoder.layout, decoder.sample_rate = "s16", "stereo", AUDIO_RATE
        self._decoder = decoder
        encoder = av.CodecContext.create("libopus", "w")
        assert isinstance(encoder, av.AudioCodecContext)
        encoder.format, encoder.layout, encoder.sample_rate = "s16", "stereo", AUDIO_RATE
        encoder.bit_rate = 64_000
        encoder.time_base = AUDIO_TIME_BASE
        encoder.options = {"application": "voip"}
        self._encoder = encoder
        self._to_pcm = av.AudioResampler(format="s16", layout="stereo", rate=AUDIO_RATE)
        self._guest_to_pcm = av.AudioResampler(format="s16", layout="stereo", rate=AUDIO_RATE)
        self._guest = np.zeros((0, 2), np.int16)
        self._host = np.zeros((0, 2), np.int16)
        self._host_pts: list[int] = []  # the pts of each 20 ms of host audio waiting to go out
        self._rtp = _Rtp()
        self.packets = 0

    def guest_frame(self, frame: av.AudioFrame) -> None:
        for pcm in self._guest_to_pcm.resample(frame):
            samples = pcm.to_ndarray().reshape(-1, 2)
            self._guest = np.concatenate([self._guest, samples])[-GUEST_AUDIO_MAX:]

    def push(self, packet: EncodedPacket) -> None:
        """One host Opus packet (on the loop)."""
        try:
            frames = self._decoder.decode(packet)
        except (av.FFmpegError, ValueError):
            return  # a damaged packet: the next one decodes on its own
        pts = int(packet.pts or 0)
        for frame in frames:
            for pcm in self._to_pcm.resample(frame):
                self._host = np.concatenate([self._host, pcm.to_ndarray().reshape(-1, 2)])
        while len(self._host) >= AUDIO_FRAME:
            host, self._host = self._host[:AUDIO_FRAME], self._host[AUDIO_FRAME:]
            guest, self._guest = self._guest[:AUDIO_FRAME], self._guest[AUDIO_FRAME:]
            mixed = host.astype(np.int32)
            mixed[:len(guest)] += guest
            out = av.AudioFrame.from_ndarray(
                np.clip(mixed, -32768, 32767).astype(np.int16).reshape(1, -1),
                format="s16", layout="stereo")
            out.sample_rate = AUDIO_RATE
            out.pts = pts
            out.time_base = AUDIO_TIME_BASE
            self._host_pts.append(pts)
            pts += AUDIO_FRAME
            for encoded in self._encoder.encode(out):
                self._emit(bytes(encoded))

    def _emit(self, data: bytes) -> None:
        if not data or not self._host_pts:
            return
        pts = self._host_pts.pop(0)
        packet = av.Packet(data)
        packet.pts = packet.dts = pts
        packet.time_base = AUDIO_TIME_BASE
        self.packets += 1
        self._deliver(self._rtp.packets([data], pts & 0xFFFFFFFF), packet)


class GuestPeer:
    """The guest's WHIP connection: its video decoded by aiortc, the newest picture kept."""

    def __init__(self, pc: RTCPeerConnection, user_id: int) -> None:
        self.pc = pc
        self.user_id = user_id
        self.resource_id = secrets.token_urlsafe(16)
        self.latest: av.VideoFrame | None = None
        self.frames = 0
        self.on_frame: Callable[[av.VideoFrame], None] = lambda frame: None
        self.on_audio: Callable[[av.AudioFrame], None] = lambda frame: None
        self._tasks: list[asyncio.Task[None]] = []

    def consume(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.ensure_future(self._pull(track)))

    async def _pull(self, track: MediaStreamTrack) -> None:
        # Read as it comes even when nobody uses it: aiortc queues every frame of a track.
        with contextlib.suppress(Exception):
            while True:
                frame = await track.recv()
                if isinstance(frame, av.VideoFrame):
                    self.latest = frame
                    self.frames += 1
                    self.on_frame(frame)
                elif isinstance(frame, av.AudioFrame):
                    self.on_audio(frame)

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()

