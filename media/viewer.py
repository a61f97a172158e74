"""One WHEP viewer: aiortc negotiates ICE/DTLS/SRTP; media bypasses its sender pipeline.

Each sender gets an idle track (aiortc's send loop waits on it forever and never encodes);
the stream's `RtpFanout` protects and sends packets for this viewer itself, through its own
duplicate of the viewer's ICE socket (media/rtp_forward.py). The
sender's `_handle_rtcp_packet` is replaced per instance so the viewer's NACKs are answered
from the fan-out's history and its PLI/FIR become (rate-limited) keyframe requests to the
publisher. aiortc's own RTCP task keeps sending SR/SDES/BYE from the counters we update.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
)

from media.rtp_forward import RtpFanout, ViewerLeg
from media.seats import Seat

MAX_NACKS_PER_PACKET = 64  # one RTCP packet may list many losses; bound the work it causes


class IdleTrack(MediaStreamTrack):
    """Gives an RTCRtpSender something to wait on: media for this sender is sent directly."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    async def recv(self) -> Any:
        await asyncio.Future()  # until the sender is stopped (cancelled)


class ViewerPeer:
    """A viewer's peer connection and its legs in the stream's fan-outs."""

    def __init__(self, pc: RTCPeerConnection, resource_id: str, seat: Seat) -> None:
        self.pc = pc
        self.resource_id = resource_id
        self.seat = seat
        self.created = time.monotonic()
        self.legs: list[tuple[RtpFanout, ViewerLeg]] = []
        self.attached = False
        self.deadline: asyncio.TimerHandle | None = None

    def prepare(self, transceiver: Any, fanout: RtpFanout) -> None:
        """Called after createAnswer: the sender's SSRC and payload type are final."""
        sender = transceiver.sender
        leg = ViewerLeg(sender, transceiver._codecs[0].payloadType, wait_for_key=fanout.kind == "video")
        self.legs.append((fanout, leg))
        original = sender._handle_rtcp_packet

        async def handle_rtcp_packet(packet: Any) -> None:
            if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                for seq in packet.lost[:MAX_NACKS_PER_PACKET]:
                    fanout.retransmit(leg, seq)
            elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                fanout.on_keyframe_needed()
            else:
                await original(packet)

        sender._handle_rtcp_packet = handle_rtcp_packet

    def attach(self) -> None:
        """DTLS is up: start receiving (a video leg first waits for a keyframe, requested now)."""
        if not self.attached:
            self.attached = True
            for fanout, leg in self.legs:
                fanout.add_leg(leg)

    def detach(self) -> None:
        for fanout, leg in self.legs:
            fanout.remove_leg(leg)
        self.attached = False

    def release(self) -> None:
        """The viewer is gone: its seat is free again, its connect deadline moot."""
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        self.seat.release()

    async def close(self) -> None:
        self.detach()
        self.release()
        await self.pc.close()
