"""Direct RTP forwarding: the publisher's decrypted RTP, re-addressed and sent to every viewer.

Why not aiortc's own path: an `RTCRtpSender` per viewer re-encodes (15-18% of a core per viewer)
or, fed `av.Packet`s, still re-packetises, builds headers with two datetime->NTP conversions,
and wakes one task per viewer per packet (~50 us/packet, ~1%/viewer, measured with bench/media.py).
Here each packet the publisher sends is handled once, synchronously, on the loop thread:
rewrite payload type / SSRC / sequence / timestamp into a fresh 12-byte header, keep the
payload, SRTP-protect with each viewer's context and `sendto` on its nominated ICE pair.

aiortc internals relied on (aiortc 1.16; checked by tests/test_dependency_canaries.py):
- `RTCDtlsTransport._state`, `._tx_srtp` (pylibsrtp Session, `allow_repeat_tx=True`, so a
  NACKed packet can be re-sent with its own sequence number) and `.transport._connection`
  (aioice Connection) whose `_nominated[1]` is the selected `CandidatePair`; its
  `protocol.transport.sendto` is synchronous (a UDP transport, or aioice's TurnTransport).
- `RTCRtpSender._ssrc` (announced in the SDP answer) and `_handle_rtcp_packet` (replaced per
  instance: NACK/PLI/FIR reach us instead of the idle sender), and the name-mangled
  `__ntp_timestamp`, `__rtp_timestamp`, `__packet_count`, `__octet_count` that aiortc's own
  RTCP task puts in its sender reports (we keep them current, see `ViewerLeg.sync_report`).
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable
from typing import Any

import pylibsrtp
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtp import RtpPacket

from media.rtp_keyframes import is_keyframe_start

log = logging.getLogger(__name__)

RTP_HEADER = struct.Struct("!BBHII")
HISTORY_SIZE = 1024  # packets kept for NACKs: ~0.8 s of 1.5 Mbit/s video; a power of two
HISTORY_MASK = HISTORY_SIZE - 1
# A viewer that joined waits for a keyframe start before getting video (a decoder fed P-frames
# only shows garbage); if the publisher never sends one we stop waiting after this long.
KEYFRAME_WAIT_S = 3.0
NTP_UNIX_OFFSET_S = 2_208_988_800


def ntp_from_unix(t: float) -> int:
    return int((t + NTP_UNIX_OFFSET_S) * (1 << 32)) & 0xFFFF_FFFF_FFFF_FFFF


def random_u16() -> int:
    import secrets

    # Lower half: aiortc's note on Chrome's SRTP decryption breaking on early wrap-around.
    return secrets.randbelow(1 << 15)


class ViewerLeg:
    """One viewer's sending side for one kind: where and how its packets go."""

    __slots__ = (
        "addr",
        "closed",
        "dtls",
        "last_rtp_ts",
        "last_unix",
        "octets",
        "packets",
        "pair",
        "payload_type",
        "protect",
        "sender",
        "sendto",
        "ssrc",
        "wait_deadline",
        "waiting_key",
    )

    def __init__(self, sender: Any, payload_type: int, wait_for_key: bool) -> None:
        self.sender = sender
        self.dtls = sender.transport
        self.ssrc: int = sender._ssrc
        self.payload_type = payload_type
        self.waiting_key = wait_for_key
        self.wait_deadline = time.monotonic() + KEYFRAME_WAIT_S
        self.packets = 0
        self.octets = 0
        self.last_rtp_ts = 0
        self.last_unix = 0.0
        self.closed = False
        # The route, resolved again only when ICE nominates another pair.
        self.pair: Any = None
        self.sendto: Any = None
        self.protect: Any = None
        self.addr: tuple[str, int] = ("", 0)

    def send(self, data: bytes) -> bool:
        """SRTP-protect and send one plain RTP packet now; False when not connected."""
        dtls = self.dtls
        if dtls._state is not DtlsState.CONNECTED:
            return False
        pair = dtls.transport._connection._nominated.get(1)
        if pair is not self.pair:
            if pair is None:
                return False
            self.pair = pair
            self.sendto = pair.protocol.transport.sendto
            self.addr = pair.remote_addr  # a property building a tuple: not per packet
            self.protect = dtls._tx_srtp.protect
        self.sendto(self.protect(data), self.addr)
        return True

    def sync_report(self) -> None:
        """Keep aiortc's RTCP task sending true sender reports (A/V sync in the viewer)."""
        if self.last_unix:
            s = self.sender
            s._RTCRtpSender__ntp_timestamp = ntp_from_unix(self.last_unix)
            s._RTCRtpSender__rtp_timestamp = self.last_rtp_ts
            s._RTCRtpSender__packet_count = self.packets
            s._RTCRtpSender__octet_count = self.octets


class RtpFanout:
    """One kind (video or audio) of one live stream: every viewer gets every publisher packet.

    Sequence numbers and timestamps are rewritten with one offset per stream, so viewers see
    one continuous RTP stream even when the publisher reconnects (new SSRC, new origins).
    """

    def __init__(self, kind: str, clock_rate: int, codec: str) -> None:
        self.kind = kind
        self.clock_rate = clock_rate
        self.codec = codec  # "vp8" | "h264" | "opus"
        self.legs: list[ViewerLeg] = []
        self.history: list[tuple[int, int, int, bytes] | None] = [None] * HISTORY_SIZE
        self.src_ssrc: int | None = None
        self.seq_off = 0
        self.ts_off = 0
        self.last_seq = (random_u16() - 1) & 0xFFFF
        self.last_ts = random_u16() << 16
        self.last_mono = 0.0
        self.last_unix = 0.0
        self.forwarded = 0
        self.retransmitted = 0
        # True while another source (the guest composer) feeds this fan-out instead of the
        # publisher: the publisher's packets are then not forwarded.
        self.paused = False
        # Called when a viewer joins or asks for a keyframe; the stream rate-limits it.
        self.on_keyframe_needed: Callable[[], None] = lambda: None

    # -- viewers
    def add_leg(self, leg: ViewerLeg) -> None:
        self.legs.append(leg)
        if leg.waiting_key:
            self.on_keyframe_needed()

    def remove_leg(self, leg: ViewerLeg) -> None:
        leg.closed = True
        self.legs = [x for x in self.legs if x is not leg]

    # -- the hot path
    def forward(self, packet: RtpPacket) -> None:
        """One publisher packet (decrypted, RTX already unwrapped) to every viewer."""
        if packet.ssrc != self.src_ssrc:
            self._rebase(packet)
        seq = (packet.sequence_number + self.seq_off) & 0xFFFF
        ts = (packet.timestamp + self.ts_off) & 0xFFFFFFFF
        # A padding-only packet (bandwidth probe) goes on as an empty one: dropping it would
        # leave a sequence gap that every viewer NACKs and waits for.
        payload = packet.payload
        byte1 = 0x80 if packet.marker else 0
        self.history[seq & HISTORY_MASK] = (seq, ts, byte1, payload)
        if ((seq - self.last_seq) & 0xFFFF) < 0x8000:
            self.last_seq = seq
            self.last_ts = ts
            self.last_mono = time.monotonic()
        now = self.last_unix = time.time()
        self.forwarded += 1
        size = len(payload)
        key: bool | None = None
        pack = RTP_HEADER.pack
        for leg in self.legs:
            if leg.waiting_key:
                if key is None:
                    key = is_keyframe_start(self.codec, payload)
                if not key and time.monotonic() < leg.wait_deadline:
                    continue
                leg.waiting_key = False
            try:
                sent = leg.send(pack(0x80, byte1 | leg.payload_type, seq, ts, leg.ssrc) + payload)
            except pylibsrtp.Error:
                # libsrtp refuses a sequence number far behind the newest one sent (its replay
                # window): a packet the publisher reordered or resent very late. Skip it.
                continue
            except Exception:
                # Never let one viewer's broken transport reach the publisher's receive loop.
                log.exception("forwarding to a viewer failed; dropping that viewer's %s", self.kind)
                self.remove_leg(leg)
                continue
            if sent:
                leg.packets += 1
                leg.octets += size
                leg.last_rtp_ts = ts
                leg.last_unix = now

    def _rebase(self, packet: RtpPacket) -> None:
        """A new source (first packet, or the publisher reconnected): continue the output."""
        elapsed = time.monotonic() - self.last_mono if self.last_mono else 0.0
        self.src_ssrc = packet.ssrc
        self.seq_off = (self.last_seq + 1 - packet.sequence_number) & 0xFFFF
        ts_next = self.last_ts + max(1, int(elapsed * self.clock_rate))
        self.ts_off = (ts_next - packet.timestamp) & 0xFFFFFFFF
        if self.kind == "video":
            # Decoders of existing viewers need a fresh keyframe from the new source.
            for leg in self.legs:
                leg.waiting_key = True
                leg.wait_deadline = time.monotonic() + KEYFRAME_WAIT_S
            if self.legs and self.last_mono:
                self.on_keyframe_needed()  # ask the new source now, not at its next GOP

    # -- feedback from viewers
    def retransmit(self, leg: ViewerLeg, seq: int) -> bool:
        entry = self.history[seq & HISTORY_MASK]
        if entry is None or entry[0] != seq or leg.waiting_key:
            return False
        _, ts, byte1, payload = entry
        self.retransmitted += 1
        return leg.send(RTP_HEADER.pack(0x80, byte1 | leg.payload_type, seq, ts, leg.ssrc) + payload)

    def sync_reports(self) -> None:
        for leg in self.legs:
            leg.sync_report()
