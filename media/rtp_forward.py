"""Direct RTP forwarding: the publisher's decrypted RTP, re-addressed and sent to every viewer.

Why not aiortc's own path: an `RTCRtpSender` per viewer re-encodes (15-18% of a core per viewer)
or, fed `av.Packet`s, still re-packetises, builds headers with two datetime->NTP conversions,
and wakes one task per viewer per packet (~50 us/packet, ~1%/viewer, measured with bench/media.py).
Here each packet the publisher sends is handled once, synchronously, on the loop thread, in one
tight loop over the viewers: the viewer's 12-byte header (payload type, SSRC; sequence and
timestamp rewritten once per stream) and the payload are written into one preallocated buffer,
libsrtp protects it in place with the viewer's context, and the datagram leaves through a
duplicate of the viewer's ICE socket. No bytes object, no asyncio transport, no pylibsrtp
wrapper per packet: that took the server's CPU per packet per viewer from ~15 to ~9 us (perf;
what is left is the kernel's sendto and libsrtp, see bench/RESULTS.md). A viewer reached
through a TURN relay (no socket of its own) goes through aioice's transport and pylibsrtp.

Internals relied on (checked by tests/test_dependency_canaries.py):
- aiortc 1.16: `RTCDtlsTransport._state`, `._tx_srtp` (pylibsrtp Session, `allow_repeat_tx=True`,
  so a NACKed packet can be re-sent with its own sequence number) and `.transport._connection`
  (aioice Connection) whose `_nominated[1]` is the selected `CandidatePair`.
- aioice: `CandidatePair.protocol.transport` (a datagram transport whose "socket" extra is the
  candidate's UDP socket, or a TurnTransport without one) and `CandidatePair.remote_addr`.
- pylibsrtp: `Session._srtp` (the `srtp_t *` it frees when collected: a leg keeps its Session)
  and the `_binding` module's `ffi` and `lib.srtp_protect`.
- aiortc: `RTCRtpSender._ssrc` (announced in the SDP answer) and `_handle_rtcp_packet` (replaced
  per instance: NACK/PLI/FIR reach us instead of the idle sender), and the name-mangled
  `__ntp_timestamp`, `__rtp_timestamp`, `__packet_count`, `__octet_count` that aiortc's own
  RTCP task puts in its sender reports (we keep them current, see `RtpFanout.sync_reports`).
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import pylibsrtp
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtp import RtpPacket
from pylibsrtp._binding import ffi as srtp_ffi
from pylibsrtp._binding import lib as srtp_lib

from media.rtp_keyframes import is_keyframe_start

log = logging.getLogger(__name__)

RTP_HEADER = struct.Struct("!BBHII")
HISTORY_SIZE = 1024  # packets kept for NACKs: ~0.8 s of 1.5 Mbit/s video; a power of two
HISTORY_MASK = HISTORY_SIZE - 1
# A viewer that joined waits for a keyframe start before getting video (a decoder fed P-frames
# only shows garbage); if the publisher never sends one we stop waiting after this long.
KEYFRAME_WAIT_S = 3.0
NTP_UNIX_OFFSET_S = 2_208_988_800
# libsrtp appends its tag (and MKI) after the payload: SRTP_MAX_TRAILER_LEN is 16 + 128.
SRTP_TRAILER_ROOM = 144
WIRE_SIZE = 2048
MAX_PLAIN = WIRE_SIZE - SRTP_TRAILER_ROOM  # larger than any RTP packet a publisher sends


def ntp_from_unix(t: float) -> int:
    return int((t + NTP_UNIX_OFFSET_S) * (1 << 32)) & 0xFFFF_FFFF_FFFF_FFFF


def random_u16() -> int:
    import secrets

    # Lower half: aiortc's note on Chrome's SRTP decryption breaking on early wrap-around.
    return secrets.randbelow(1 << 15)


class Wire:
    """One packet's bytes on their way out: protected in place, then sent from this buffer."""

    __slots__ = ("cdata", "length", "view")

    def __init__(self) -> None:
        self.cdata = srtp_ffi.new("char[]", WIRE_SIZE)
        self.view = memoryview(srtp_ffi.buffer(self.cdata))
        self.length = srtp_ffi.new("int *")


def udp_socket_of(transport: Any) -> socket.socket | None:
    """A duplicate of the transport's UDP socket (same port, so the same ICE 5-tuple), or None
    for a transport without one of its own (a TURN allocation)."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.type != socket.SOCK_DGRAM:
        return None
    # A duplicate, not the descriptor itself: if aioice closes its socket first, this one can
    # never send into whatever reuses the number. It shares the non-blocking mode.
    try:
        dup = socket.socket(sock.family, sock.type, sock.proto, fileno=os.dup(sock.fileno()))
        # The loop's socket already is: a full send buffer must drop a datagram, never block.
        dup.setblocking(False)
        return dup
    except OSError:  # out of descriptors: the transport still works
        log.warning("no socket of its own for a viewer; sending through its transport", exc_info=True)
        return None


class ViewerLeg:
    """One viewer's sending side for one kind: where and how its packets go."""

    __slots__ = (
        "addr",
        "base_octets",
        "base_packets",
        "closed",
        "direct",
        "dtls",
        "pair",
        "payload_type",
        "protect",
        "sender",
        "sendto",
        "session",
        "sock",
        "srtp",
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
        # The fan-out's counters when this leg started receiving (its sender report counts).
        self.base_packets = -1
        self.base_octets = 0
        self.closed = False
        # The route, resolved when the leg joins and checked again on the stream's tick.
        self.pair: Any = None
        self.direct = False  # sends through its own duplicate of the ICE socket
        self.sock: socket.socket | None = None
        self.sendto: Any = None
        self.addr: tuple[str, int] = ("", 0)
        self.session: Any = None  # keeps the pylibsrtp Session (and so `srtp`) alive
        self.srtp: Any = None
        self.protect: Any = None

    def route(self) -> bool:
        """Find where this leg's packets go now; False while it cannot send (not connected)."""
        dtls = self.dtls
        pair = dtls.transport._connection._nominated.get(1) if dtls._state is DtlsState.CONNECTED else None
        if pair is None or self.closed:
            self._unroute()
            return False
        session = dtls._tx_srtp
        if pair is self.pair and session is self.session:
            return True
        self._unroute()
        transport = pair.protocol.transport
        sock = udp_socket_of(transport)
        self.sock = sock
        self.direct = sock is not None
        self.sendto = sock.sendto if sock is not None else transport.sendto
        self.addr = pair.remote_addr  # a property building a tuple: not per packet
        self.session = session
        self.srtp = session._srtp[0]
        self.protect = session.protect
        self.pair = pair
        return True

    def _unroute(self) -> None:
        self.pair = None
        self.sendto = None
        self.direct = False
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def close(self) -> None:
        self.closed = True
        self._unroute()

    def sync_report(self, packets: int, octets: int, rtp_ts: int, unix: float) -> None:
        """Keep aiortc's RTCP task sending true sender reports (A/V sync in the viewer)."""
        if self.base_packets >= 0 and unix:
            s = self.sender
            s._RTCRtpSender__ntp_timestamp = ntp_from_unix(unix)
            s._RTCRtpSender__rtp_timestamp = rtp_ts
            s._RTCRtpSender__packet_count = (packets - self.base_packets) & 0xFFFF_FFFF
            s._RTCRtpSender__octet_count = (octets - self.base_octets) & 0xFFFF_FFFF


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
        self.wire = Wire()
        self.src_ssrc: int | None = None
        self.seq_off = 0
        self.ts_off = 0
        self.last_seq = (random_u16() - 1) & 0xFFFF
        self.last_ts = random_u16() << 16
        self.last_mono = 0.0
        self.last_unix = 0.0  # wall clock of the newest packet (last_ts): sender reports
        self.forwarded = 0
        self.octets = 0  # payload octets forwarded (each leg reports its share since it started)
        self.retransmitted = 0
        self.send_errors = 0  # datagrams the kernel refused (a full socket buffer): lost, NACKable
        # True while another source (the guest composer) feeds this fan-out instead of the
        # publisher: the publisher's packets are then not forwarded.
        self.paused = False
        # Called when a viewer joins or asks for a keyframe; the stream rate-limits it.
        self.on_keyframe_needed: Callable[[], None] = lambda: None

    # -- viewers
    def add_leg(self, leg: ViewerLeg) -> None:
        if not leg.route():
            log.info("a %s viewer joined before its transport was connected", self.kind)
        self.legs.append(leg)
        if leg.waiting_key:
            self.on_keyframe_needed()

    def remove_leg(self, leg: ViewerLeg) -> None:
        leg.close()
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
            self.last_unix = time.time()
        self.forwarded += 1
        self.octets += len(payload)
        end = 12 + len(payload)
        if end > MAX_PLAIN:
            self.send_errors += len(self.legs)
            return
        wire = self.wire
        view, cdata, length = wire.view, wire.cdata, wire.length
        pack_into = RTP_HEADER.pack_into
        protect = srtp_lib.srtp_protect
        key: bool | None = None
        for leg in self.legs:
            if leg.waiting_key:
                if key is None:
                    key = is_keyframe_start(self.codec, payload)
                if not key and time.monotonic() < leg.wait_deadline:
                    continue
                leg.waiting_key = False
            if leg.base_packets < 0:
                leg.base_packets = self.forwarded - 1
                leg.base_octets = self.octets - len(payload)
            if not leg.direct:
                self._send_via_transport(leg, byte1, seq, ts, payload)
                continue
            pack_into(view, 0, 0x80, byte1 | leg.payload_type, seq, ts, leg.ssrc)
            view[12:end] = payload
            length[0] = end
            # Non-zero: libsrtp refused a sequence number far behind the newest one sent (its
            # replay window), a packet the publisher reordered or resent very late. Skip it.
            if protect(leg.srtp, cdata, length) == 0:
                try:
                    leg.sendto(view[: length[0]], leg.addr)
                except OSError:
                    self.send_errors += 1

    def _send_via_transport(self, leg: ViewerLeg, byte1: int, seq: int, ts: int, payload: bytes) -> bool:
        """A leg without a socket of its own (TURN), or not routed yet."""
        if leg.sendto is None and not leg.route():
            return False
        try:
            data = leg.protect(RTP_HEADER.pack(0x80, byte1 | leg.payload_type, seq, ts, leg.ssrc) + payload)
            leg.sendto(data, leg.addr)
        except (pylibsrtp.Error, OSError):
            # libsrtp's replay window refused a packet resent very late, or the kernel a datagram.
            self.send_errors += 1
            return False
        except Exception:
            # Never let one viewer's broken transport reach the publisher's receive loop.
            log.exception("forwarding to a viewer failed; dropping that viewer's %s", self.kind)
            self.remove_leg(leg)
            return False
        return True

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
        if entry is None or entry[0] != seq or leg.waiting_key or leg.closed:
            return False
        _, ts, byte1, payload = entry
        end = 12 + len(payload)
        if not leg.direct or end > MAX_PLAIN:
            sent = self._send_via_transport(leg, byte1, seq, ts, payload)
        else:
            wire = self.wire
            RTP_HEADER.pack_into(wire.view, 0, 0x80, byte1 | leg.payload_type, seq, ts, leg.ssrc)
            wire.view[12:end] = payload
            wire.length[0] = end
            sent = srtp_lib.srtp_protect(leg.srtp, wire.cdata, wire.length) == 0
            if sent:
                try:
                    leg.sendto(wire.view[: wire.length[0]], leg.addr)
                except OSError:
                    sent = False
        if sent:
            self.retransmitted += 1
        return sent

    # -- every tick of the stream
    def sync_reports(self) -> None:
        """Sender reports current, and routes checked (ICE may have nominated another pair)."""
        for leg in self.legs:
            leg.route()
            leg.sync_report(self.forwarded, self.octets, self.last_ts, self.last_unix)
