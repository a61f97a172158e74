"""The small pure parts of the WebRTC side: keyframe throttling, ICE servers, keyframe parsing."""

from __future__ import annotations

import asyncio

from media.keyframes import KeyframeThrottle
from media.rtp_keyframes import is_keyframe, is_keyframe_start
from media.sdp import rtc_configuration
from server.routes.signalling import public_ice_links


async def test_keyframe_requests_become_at_most_one_pli_per_half_second() -> None:
    sent: list[float] = []
    loop = asyncio.get_running_loop()

    def send_pli() -> bool:
        sent.append(loop.time())
        return True

    throttle = KeyframeThrottle(send_pli, interval_s=0.5)
    for _ in range(20):  # twenty viewers joining at once
        throttle.request()
    assert len(sent) == 1  # the leading edge goes at once
    await asyncio.sleep(0.2)
    throttle.request()
    await asyncio.sleep(0.45)
    assert len(sent) == 2  # the requests inside the interval became one trailing PLI
    assert sent[1] - sent[0] >= 0.49
    await asyncio.sleep(0.6)
    assert len(sent) == 2  # nothing more was asked for
    assert throttle.requests == 21 and throttle.sent == 2
    throttle.close()


def test_ice_servers_from_settings_keep_turn_credentials_private() -> None:
    urls = ("stun:stun.example.net:3478", "turn:alice:s%40cret@turn.example.net:3478?transport=udp")
    config = rtc_configuration(urls)
    stun, turn = config.iceServers
    assert stun.urls == "stun:stun.example.net:3478" and stun.username is None
    assert turn.urls == "turn:turn.example.net:3478?transport=udp"
    assert (turn.username, turn.credential) == ("alice", "s@cret")
    assert public_ice_links(urls) == ['<stun:stun.example.net:3478>; rel="ice-server"']
    assert rtc_configuration(()).iceServers == []


def test_keyframe_detection_on_rtp_payloads_and_frames() -> None:
    # VP8: descriptor with S=1, PID=0, no extension; frame tag P bit 0 = keyframe.
    assert is_keyframe_start("vp8", bytes([0x10, 0x00, 0x00]))
    assert not is_keyframe_start("vp8", bytes([0x10, 0x01, 0x00]))  # interframe
    assert not is_keyframe_start("vp8", bytes([0x00, 0x00, 0x00]))  # not a frame start
    # With X, I (15-bit picture id), and a keyframe tag after it.
    assert is_keyframe_start("vp8", bytes([0x90, 0x80, 0x81, 0x02, 0x00]))
    # H.264: STAP-A carrying SPS; FU-A start of an IDR; FU-A middle; a P slice.
    assert is_keyframe_start("h264", bytes([24, 0, 2, 0x67, 0x42, 0, 1, 0x68]))
    assert is_keyframe_start("h264", bytes([28, 0x85, 0]))
    assert not is_keyframe_start("h264", bytes([28, 0x05, 0]))
    assert not is_keyframe_start("h264", bytes([0x41, 0]))
    assert is_keyframe("h264", b"\x00\x00\x00\x01\x67\x42\x00\x00\x00\x01\x65\x88")
    assert not is_keyframe("h264", b"\x00\x00\x00\x01\x41\x9a")
    assert is_keyframe("vp8", bytes([0x10])) and not is_keyframe("vp8", bytes([0x11]))

