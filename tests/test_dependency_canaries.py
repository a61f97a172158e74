"""Canaries for the private internals of dependencies that our code relies on.

The lock pins the versions these were checked against; when an upgrade moves or reshapes one of
them, the test here fails naming the dependency, its installed version and the code to revisit,
instead of media or sockets failing in some later, slower test (or in production).
"""

from __future__ import annotations

import asyncio
import inspect
import queue
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import aiohttp
import aioice
import engineio
import pylibsrtp
import pytest
import socketio
from aiohttp import web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.web_protocol import RequestHandler
from aioice.ice import CandidatePair, StunProtocol
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcicetransport import RTCIceTransport
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import unwrap_rtx
from engineio.async_drivers import aiohttp as eio_aiohttp
from engineio.async_socket import AsyncSocket

from media.rtp_forward import RTP_HEADER, Wire


@dataclass(frozen=True)
class Reliance:
    """Who relies on what: turns a failed check into a message an upgrader can act on."""

    dist: str
    users: str

    def check(self, ok: bool, internal: str) -> None:
        if not ok:
            pytest.fail(
                f"{self.dist} {version(self.dist)}: {internal} is gone or changed shape; "
                f"{self.users} rely on it. Re-check that code before moving the pin in "
                "requirements/lock*.txt.",
                pytrace=False,
            )

    def attr(self, obj: object, name: str, kind: type | tuple[type, ...] | None = None) -> Any:
        internal = f"{type(obj).__qualname__}.{name}"
        self.check(hasattr(obj, name), internal)
        value = getattr(obj, name)
        if kind is not None:
            self.check(isinstance(value, kind), f"{internal} (expected {kind}, got {type(value)})")
        return value

    def params(self, fn: Callable[..., Any], expected: list[str], *, coroutine: bool | None = None,
               asyncgen: bool = False) -> None:
        internal = getattr(fn, "__qualname__", repr(fn))
        names = [p for p in inspect.signature(fn).parameters if p != "self"]
        self.check(names == expected, f"{internal}{inspect.signature(fn)} (expected {expected})")
        if coroutine is not None:
            self.check(inspect.iscoroutinefunction(fn) == coroutine,
                       f"{internal} (expected {'a' if coroutine else 'no'} coroutine function)")
        if asyncgen:
            self.check(inspect.isasyncgenfunction(fn), f"{internal} (expected an async generator)")

    def source_has(self, fn: Callable[..., Any], pattern: str, what: str) -> None:
        source = inspect.getsource(fn)
        self.check(re.search(pattern, source) is not None,
                   f"{fn.__qualname__} no longer {what} (`{pattern}` not in its source)")


AIORTC_FORWARD = Reliance("aiortc", "media/rtp_forward.py (ViewerLeg.route, ViewerLeg.sync_report)")
AIORTC_CODECS = Reliance("aiortc", "media/sdp.py (codec choice), media/publisher.py (PublisherPeer.hook) "
                                   "and media/viewer.py (ViewerPeer.prepare)")
AIORTC_DIRECTION = Reliance("aiortc", "media/hub.py (_ingest_transceivers and the WHEP offer check)")
AIORTC_RECEIVER = Reliance("aiortc", "media/publisher.py (PublisherPeer.hook, PublisherPeer.send_pli)")
AIORTC_SENDER = Reliance("aiortc", "media/viewer.py (ViewerPeer.prepare) and media/rtp_forward.py")
AIOICE = Reliance("aioice", "media/rtp_forward.py (ViewerLeg.route, udp_socket_of: the nominated "
                            "pair's transport and its socket)")
PYLIBSRTP = Reliance("pylibsrtp", "media/rtp_forward.py (RtpFanout.forward: libsrtp's srtp_protect "
                                  "on the fan-out's buffer with each viewer's Session._srtp)")
ENGINEIO = Reliance("python-engineio", "realtime/transport.py (direct frame writes, TrackingWebSocket)")
ENGINEIO_HUB = Reliance("python-engineio", "realtime/hub.py (HubServer wakes a parked long-poll)")
SOCKETIO = Reliance("python-socketio", "realtime/hub.py (HubManager._redis_connect/_listen, "
                                       "Hub.restart_listener)")
AIOHTTP = Reliance("aiohttp", "server/listener.py (_close_if_silent: the header timeout)")
AIOHTTP_WRITE = Reliance("aiohttp", "realtime/transport.py (direct writes skip a paused transport)")
CPYTHON_QUEUE = Reliance("python-engineio", "realtime/transport.py (asyncio.Queue._unfinished_tasks "
                                            "of the socket's queue, with the writer's task_done)")


@dataclass
class Negotiated:
    answerer: Any
    theirs: Any  # the answerer's video transceiver, after a sendonly offer
    ours: Any  # the offerer's


@pytest.fixture
async def negotiated() -> AsyncIterator[Negotiated]:
    """No ICE runs (no ICE servers, no setLocalDescription), so nothing leaves the machine."""
    config = RTCConfiguration(iceServers=[])
    offerer, answerer = RTCPeerConnection(config), RTCPeerConnection(config)
    try:
        offerer.addTransceiver("video", direction="sendonly")
        await answerer.setRemoteDescription(await offerer.createOffer())
        [theirs] = answerer.getTransceivers()
        [ours] = offerer.getTransceivers()
        yield Negotiated(answerer, theirs, ours)
    finally:
        await offerer.close()
        await answerer.close()


async def test_aiortc_transceiver_codecs_and_offer_direction(negotiated: Negotiated) -> None:
    transceiver = negotiated.theirs
    codecs = AIORTC_CODECS.attr(transceiver, "_codecs", list)
    AIORTC_CODECS.check(
        bool(codecs) and all(isinstance(c, RTCRtpCodecParameters) for c in codecs),
        "RTCRtpTransceiver._codecs (a list of RTCRtpCodecParameters after setRemoteDescription)")
    AIORTC_CODECS.check(all(isinstance(c.payloadType, int) and isinstance(c.parameters, dict)
                            and isinstance(c.mimeType, str) for c in codecs),
                        "RTCRtpCodecParameters.payloadType/mimeType/parameters")
    direction = AIORTC_DIRECTION.attr(transceiver, "_offerDirection", str)
    # Seen from the answerer: a publisher's sendonly offer reads "recvonly" (what hub.py accepts
    # for WHIP), a viewer's recvonly offer "sendonly" (what it accepts for WHEP).
    AIORTC_DIRECTION.check(direction == "recvonly",
                           "RTCRtpTransceiver._offerDirection (the offer's direction reversed to the "
                           f"answerer's view: 'recvonly' for a sendonly offer; got {direction!r})")


async def test_aiortc_answer_offers_only_the_codecs_left_in_codecs(negotiated: Negotiated) -> None:
    # Assigning a narrower list is how we choose codecs: the answer must be built from it.
    transceiver = negotiated.theirs
    chosen = transceiver._codecs[0]
    transceiver._codecs = [chosen]
    answer = await negotiated.answerer.createAnswer()
    [video_line] = [line for line in answer.sdp.splitlines() if line.startswith("m=video")]
    AIORTC_CODECS.check(video_line.split()[3:] == [str(chosen.payloadType)],
                        f"RTCRtpTransceiver._codecs as the answer's codec list (m-line: {video_line!r})")


async def test_aiortc_receiver_internals(negotiated: Negotiated) -> None:
    receiver = negotiated.theirs.receiver
    AIORTC_RECEIVER.attr(receiver, "_RTCRtpReceiver__rtx_ssrc", dict)
    AIORTC_RECEIVER.attr(receiver, "_RTCRtpReceiver__decoder_queue", queue.Queue)
    AIORTC_RECEIVER.params(RTCRtpReceiver._handle_rtp_packet, ["packet", "arrival_time_ms"],
                           coroutine=True)
    AIORTC_RECEIVER.params(RTCRtpReceiver._send_rtcp_pli, ["media_ssrc"], coroutine=True)
    # Our decoder-queue stand-in takes (codec, frame) tuples and passes the None stop sentinel on.
    AIORTC_RECEIVER.source_has(RTCRtpReceiver._handle_rtp_packet, r"__decoder_queue\.put\(\(codec,",
                               "queues (codec, encoded_frame) tuples for the decoder")
    # The per-instance replacement is reached because the DTLS router looks the method up on the
    # instance and passes arrival_time_ms by keyword.
    AIORTC_RECEIVER.source_has(RTCDtlsTransport._handle_rtp_data,
                               r"receiver\._handle_rtp_packet\(\s*packet,\s*arrival_time_ms=",
                               "calls receiver._handle_rtp_packet(packet, arrival_time_ms=...)")


async def test_aiortc_sender_internals(negotiated: Negotiated) -> None:
    sender = negotiated.ours.sender
    AIORTC_SENDER.attr(sender, "_ssrc", int)
    AIORTC_SENDER.params(RTCRtpSender._handle_rtcp_packet, ["packet"], coroutine=True)
    AIORTC_SENDER.source_has(RTCDtlsTransport._handle_rtcp_data,
                             r"\._handle_rtcp_packet\(packet\)",
                             "routes RTCP to the sender's _handle_rtcp_packet(packet)")
    for name in ("ntp_timestamp", "rtp_timestamp", "packet_count", "octet_count"):
        AIORTC_FORWARD.attr(sender, f"_RTCRtpSender__{name}", int)
        # The values we keep current must be what aiortc's RTCP task puts in its sender reports.
        AIORTC_FORWARD.source_has(RTCRtpSender._run_rtcp, rf"self\.__{name}\b",
                                  f"reports self.__{name} in its sender reports")


async def test_aiortc_dtls_and_ice_internals(negotiated: Negotiated) -> None:
    dtls = negotiated.ours.sender.transport
    AIORTC_FORWARD.check(isinstance(dtls, RTCDtlsTransport), "RTCRtpSender.transport (an RTCDtlsTransport)")
    AIORTC_FORWARD.attr(dtls, "_state", DtlsState)
    AIORTC_FORWARD.check(hasattr(DtlsState, "CONNECTED"), "rtcdtlstransport.State.CONNECTED")
    AIORTC_FORWARD.attr(dtls, "_tx_srtp")  # None until the handshake, then a pylibsrtp.Session
    AIORTC_FORWARD.source_has(RTCDtlsTransport._setup_srtp,
                              r"self\._tx_srtp\s*=\s*Session\(", "sets _tx_srtp to a pylibsrtp Session")
    AIORTC_FORWARD.source_has(RTCDtlsTransport._setup_srtp, r"tx_policy\.allow_repeat_tx\s*=\s*True",
                              "lets the tx SRTP context re-send a sequence number (NACK resends)")
    ice = dtls.transport
    AIORTC_FORWARD.check(isinstance(ice, RTCIceTransport), "RTCDtlsTransport.transport (an RTCIceTransport)")
    connection = AIORTC_FORWARD.attr(ice, "_connection", aioice.Connection)
    AIOICE.attr(connection, "_nominated", dict)
    AIOICE.check(isinstance(inspect.getattr_static(CandidatePair, "remote_addr"), property),
                 "CandidatePair.remote_addr (a property)")
    AIOICE.params(CandidatePair.__init__, ["protocol", "remote_candidate"])
    AIOICE.source_has(CandidatePair.__init__, r"self\.protocol\s*=\s*protocol",
                      "keeps the candidate pair's protocol (whose transport we sendto)")
    AIOICE.source_has(StunProtocol.connection_made, r"self\.transport\s*=",
                      "keeps its datagram transport (whose socket a viewer's packets leave by)")
    AIOICE.source_has(aioice.Connection.get_component_candidates, r'get_extra_info\("socket"\)',
                      "gathers host candidates on transports exposing their UDP socket")
    PYLIBSRTP.check(callable(getattr(pylibsrtp.Session, "protect", None)), "Session.protect")
    PYLIBSRTP.check(hasattr(pylibsrtp.Policy(), "allow_repeat_tx"), "Policy.allow_repeat_tx")
    AIORTC_RECEIVER.params(unwrap_rtx, ["rtx", "payload_type", "ssrc"])


def test_libsrtp_protect_in_place_as_pylibsrtp_does() -> None:
    binding = PYLIBSRTP.attr(pylibsrtp, "_binding")
    ffi, lib = PYLIBSRTP.attr(binding, "ffi"), PYLIBSRTP.attr(binding, "lib")
    protect = PYLIBSRTP.attr(lib, "srtp_protect")
    signature = ffi.typeof(protect).cname
    PYLIBSRTP.check(signature == "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)",
                    f"_binding.lib.srtp_protect (libsrtp 2's (srtp_t, void *, int *); got {signature})")
    key = bytes(range(30))  # AES-128 key and 112-bit salt
    profile = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
    tx = pylibsrtp.Session(pylibsrtp.Policy(key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile))
    same = pylibsrtp.Session(pylibsrtp.Policy(key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile))
    rx = pylibsrtp.Session(pylibsrtp.Policy(key, pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=profile))
    srtp = PYLIBSRTP.attr(tx, "_srtp")
    PYLIBSRTP.check(ffi.typeof(srtp).cname == "struct srtp_ctx_t_ * *",
                    f"Session._srtp (an srtp_t *; got {ffi.typeof(srtp).cname})")
    plain = RTP_HEADER.pack(0x80, 96, 4321, 90_000, 0x1234_5678) + bytes(range(256)) * 4
    wire = Wire()
    wire.view[: len(plain)] = plain
    wire.length[0] = len(plain)
    PYLIBSRTP.check(protect(srtp[0], wire.cdata, wire.length) == 0, "srtp_protect on a cdata buffer")
    protected = bytes(wire.view[: wire.length[0]])
    PYLIBSRTP.check(protected == same.protect(plain), "srtp_protect in place (differs from Session.protect)")
    PYLIBSRTP.check(rx.unprotect(protected) == plain, "srtp_protect in place (the peer cannot unprotect it)")


async def test_engineio_websocket_driver_and_socket_internals() -> None:
    server = engineio.AsyncServer(async_mode="aiohttp")
    drivers = ENGINEIO.attr(server, "_async", dict)
    ENGINEIO.check(drivers.get("websocket") is eio_aiohttp.WebSocket,
                   "AsyncServer._async['websocket'] (the aiohttp driver's WebSocket class)")
    ENGINEIO.params(eio_aiohttp.WebSocket.__init__, ["handler", "server"])
    ws = eio_aiohttp.WebSocket(handler=None, server=server)
    for name in ("handler", "server", "_sock"):
        ENGINEIO.attr(ws, name)
    ENGINEIO.params(eio_aiohttp.WebSocket.__call__, ["environ"], coroutine=True)
    ENGINEIO.source_has(AsyncSocket._upgrade_websocket,
                        r"_async\['websocket'\]\(\s*self\._websocket_handler,\s*self\.server\)",
                        "builds the websocket as _async['websocket'](self._websocket_handler, server)")
    socket = AsyncSocket(server, "sid-1")
    for name, kind in (("sid", str), ("upgraded", bool), ("upgrading", bool), ("closed", bool),
                       ("closing", bool), ("queue", asyncio.Queue)):
        ENGINEIO.attr(socket, name, kind)
    CPYTHON_QUEUE.attr(socket.queue, "_unfinished_tasks", int)
    ENGINEIO.source_has(AsyncSocket.poll, r"self\.queue\.task_done\(\)",
                        "marks queued packets done as its writer takes them")
    ENGINEIO_HUB.attr(server, "sockets", dict)


def test_socketio_redis_manager_internals() -> None:
    manager = socketio.AsyncRedisManager("redis://", channel="canary")
    for name in ("redis", "pubsub", "connected"):
        SOCKETIO.attr(manager, name)
    SOCKETIO.params(socketio.AsyncRedisManager._redis_connect, [], coroutine=False)
    SOCKETIO.params(socketio.AsyncRedisManager._listen, [], asyncgen=True)
    SOCKETIO.params(socketio.AsyncRedisManager._thread, [], coroutine=True)
    SOCKETIO.source_has(socketio.AsyncRedisManager._thread, r"self\._listen\(\)",
                        "reads messages through self._listen()")
    SOCKETIO.source_has(socketio.AsyncRedisManager.initialize, r"self\.thread\s*=",
                        "keeps its listener task in self.thread")
    SOCKETIO.params(socketio.AsyncServer._handle_eio_disconnect, ["eio_sid", "reason"], coroutine=True)


async def test_aiohttp_request_handler_counts_requests() -> None:
    async def handler(request: web.BaseRequest) -> web.Response:
        return web.Response()

    server = web.Server(handler)
    protocol = server()
    AIOHTTP.check(isinstance(protocol, RequestHandler), "web.Server() (a RequestHandler)")
    count = AIOHTTP.attr(protocol, "_request_count", int)
    AIOHTTP.check(count == 0, f"RequestHandler._request_count (0 before any request; got {count})")
    AIOHTTP.source_has(RequestHandler.data_received, r"self\._request_count\s*\+=\s*1",
                       "counts each parsed request in _request_count")
    AIOHTTP_WRITE.check(isinstance(inspect.getattr_static(BaseProtocol, "writing_paused"), property),
                        "BaseProtocol.writing_paused (a property)")
    await server.shutdown()


def test_a_failed_canary_names_the_dependency_version_and_user() -> None:
    with pytest.raises(pytest.fail.Exception) as failed:
        Reliance("aiohttp", "server/listener.py").attr(object(), "_request_count")
    message = str(failed.value)
    assert f"aiohttp {aiohttp.__version__}" in message
    assert "object._request_count" in message and "server/listener.py" in message
