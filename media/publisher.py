"""One WHIP publisher connection: its RTP goes to the viewers' fan-out and, as frames, to the taps.

Nothing is decoded. Two hooks on each aiortc `RTCRtpReceiver` (aiortc 1.16 internals):
- `_handle_rtp_packet` (called by the DTLS transport after SRTP decryption) is wrapped per
  instance: the packet is forwarded to viewers first (media/rtp_forward.py), then aiortc
  carries on with NACK generation, statistics and its jitter buffer.
- `__decoder_queue` (the queue feeding aiortc's decoder thread with reassembled frames) is
  replaced by an adapter that hands each complete encoded frame to the taps on the loop
  thread instead; the decoder thread stays idle and still exits on aiortc's stop sentinel.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import time
from collections.abc import Callable
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

import av
from aiortc import RTCPeerConnection
from aiortc.rtp import RtpPacket, unwrap_rtx

from media.rtp_forward import RtpFanout
from media.rtp_keyframes import is_keyframe
from media.tap import EncodedPacket, SessionTap

log = logging.getLogger(__name__)

# A publisher that sent nothing for this long is gone even if ICE has not noticed yet
# (a phone switching networks): its replacement may publish.
SILENT_GONE_S = 3.0
# Silent this long and it is dropped (grace starts) even if ICE still answers: about when ICE
# consent (aioice: 6 checks 5 s apart) would give up on a dead path, so a publisher stalled by
# a patchy network or a busy phone for a while is not forced to reconnect.
SILENT_LOST_S = 30.0
CONNECT_TIMEOUT_S = 15.0


class FrameTimeline:
    """Encoded frames of one kind -> av.Packet on the session timeline (see media/tap.py)."""

    def __init__(self, kind: str, clock_rate: int, t0: float) -> None:
        self.kind = kind
        self.clock_rate = clock_rate
        self.t0 = t0  # monotonic time of the session's first publish
        self.codec = ""
        self.last_raw: int | None = None
        self.last_pts = -1

    def new_source(self, codec: str) -> None:
        self.codec = codec
        self.last_raw = None

    def packet(self, data: bytes, rtp_timestamp: int) -> EncodedPacket | None:
        # aiortc's TimestampMapper treats any step back as a 32-bit wrap (aiortc #1041): keep
        # only its low 32 bits and unwrap here with a signed difference.
        raw = rtp_timestamp & 0xFFFFFFFF
        if self.last_raw is None:
            pts = max(self.last_pts + 1, int((time.monotonic() - self.t0) * self.clock_rate))
        else:
            step = (raw - self.last_raw) & 0xFFFFFFFF
            if step == 0 or step >= 0x80000000:
                return None  # a repeat or a late frame from before the last: pts must increase
            pts = self.last_pts + step
        self.last_raw = raw
        self.last_pts = pts
        packet = av.Packet(data)
        packet.pts = packet.dts = pts
        packet.time_base = Fraction(1, self.clock_rate)
        packet.is_keyframe = is_keyframe(self.codec, data)
        return packet


class _FrameQueue:
    """Stands in for the receiver's decoder queue: frames go to a callback, the stop sentinel
    (None) still reaches aiortc's decoder thread."""

    def __init__(self, inner: queue.Queue[Any], on_frame: Callable[[Any], None]) -> None:
        self._inner = inner
        self._on_frame = on_frame

    def put(self, item: Any) -> None:
        if item is None:
            self._inner.put(None)
        else:
            self._on_frame(item[1])

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self._inner.get(*args, **kwargs)


class PublisherPeer:
    """A publisher's peer connection; owned by its LiveStream."""

    # Its frames reach the session's taps (recording, HLS); an RTMP relay's do not.
    feeds_taps = True

    def __init__(self, pc: RTCPeerConnection, resource_id: str, kind: str = "whip") -> None:
        self.pc = pc
        self.resource_id = resource_id
        self.kind = kind  # "whip" (a browser, OBS, a phone) or "demo" (the synthetic source)
        self.since = datetime.now(UTC)
        self.created = time.monotonic()
        self.last_rtp = 0.0
        self.active = True  # False once replaced or dropped: its packets go nowhere
        self._video_receiver: Any = None
        self._video_fanout: RtpFanout | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def alive(self) -> bool:
        """Still publishing (or still connecting): a second publisher must wait."""
        state = self.pc.connectionState
        if state in ("failed", "closed"):
            return False
        now = time.monotonic()
        if self.last_rtp:
            return now - self.last_rtp < SILENT_GONE_S
        return now - self.created < CONNECT_TIMEOUT_S

    def hook(self, transceiver: Any, fanout: RtpFanout, timeline: FrameTimeline, tap: SessionTap) -> None:
        """Route this transceiver's RTP to `fanout` and its frames to `tap` (see module doc)."""
        receiver = transceiver.receiver
        media_pt = transceiver._codecs[0].payloadType
        rtx_apt = {c.payloadType: c.parameters.get("apt") for c in transceiver._codecs
                   if c.mimeType.lower().endswith("/rtx")}
        rtx_ssrc: dict[int, int] = receiver._RTCRtpReceiver__rtx_ssrc
        original = receiver._handle_rtp_packet
        kind = transceiver.kind

        async def handle_rtp_packet(packet: RtpPacket, arrival_time_ms: int) -> None:
            self.last_rtp = time.monotonic()
            if not self.active or fanout.paused:
                pass
            elif packet.payload_type == media_pt:
                fanout.forward(packet)
            elif packet.payload_type in rtx_apt and len(packet.payload) > 2:
                media_ssrc = rtx_ssrc.get(packet.ssrc)
                if media_ssrc is not None:
                    fanout.forward(unwrap_rtx(packet, payload_type=media_pt, ssrc=media_ssrc))
            await original(packet, arrival_time_ms=arrival_time_ms)

        receiver._handle_rtp_packet = handle_rtp_packet

        def on_frame(frame: Any) -> None:
            if not self.active:
                return
            packet = timeline.packet(frame.data, frame.timestamp)
            if packet is not None:
                tap.packet(packet, kind)

        receiver._RTCRtpReceiver__decoder_queue = _FrameQueue(
            receiver._RTCRtpReceiver__decoder_queue, on_frame
        )
        if kind == "video":
            self._video_receiver = receiver
            self._video_fanout = fanout

    def send_pli(self) -> bool:
        """Ask the publisher for a keyframe now (callers rate-limit); False if not possible."""
        receiver, fanout = self._video_receiver, self._video_fanout
        if receiver is None or fanout is None or fanout.src_ssrc is None:
            return False
        if self.pc.connectionState != "connected":
            return False
        task = asyncio.ensure_future(receiver._send_rtcp_pli(fanout.src_ssrc))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def hand_over(self) -> None:
        await self.close()

    async def close(self) -> None:
        await self.pc.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
