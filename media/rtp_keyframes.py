"""Is this a keyframe? Answered from RTP payloads (forwarding) and from whole frames (taps)."""

from __future__ import annotations

H264_IDR = 5
H264_SPS = 7
H264_STAP_A = 24
H264_FU_A = 28


def is_keyframe_start(codec: str, payload: bytes) -> bool:
    """True when this RTP payload begins a keyframe (the point a new viewer can start at)."""
    if codec == "vp8":
        return _vp8_key_start(payload)
    if codec == "h264":
        return _h264_key_start(payload)
    return True  # audio: every packet stands alone


def _vp8_key_start(p: bytes) -> bool:
    # RFC 7741 payload descriptor: X R N S R PID(3), then optional extension bytes.
    if len(p) < 2:
        return False
    b0 = p[0]
    if not b0 & 0x10 or b0 & 0x07:  # S=1 and partition 0: the first packet of a frame
        return False
    i = 1
    if b0 & 0x80:  # X: I L T K
        x = p[1]
        i = 2
        if x & 0x80:  # picture id, 7 or 15 bits
            if len(p) <= i:
                return False
            i += 2 if p[i] & 0x80 else 1
        if x & 0x40:
            i += 1
        if x & 0x30:
            i += 1
    return len(p) > i and not p[i] & 0x01  # VP8 frame tag: P bit 0 = keyframe


def _h264_key_start(p: bytes) -> bool:
    if not p:
        return False
    nal = p[0] & 0x1F
    if nal in (H264_IDR, H264_SPS):
        return True
    if nal == H264_STAP_A:
        i = 1
        while i + 2 < len(p):
            size = (p[i] << 8) | p[i + 1]
            if i + 2 < len(p) and (p[i + 2] & 0x1F) in (H264_IDR, H264_SPS):
                return True
            i += 2 + size
        return False
    if nal == H264_FU_A and len(p) > 1:
        return bool(p[1] & 0x80) and (p[1] & 0x1F) in (H264_IDR, H264_SPS)
    return False


def is_keyframe(codec: str, frame: bytes) -> bool:
    """A whole depacketised frame: VP8 raw frame, or H.264 Annex-B access unit (start codes)."""
    if codec == "vp8":
        return bool(frame) and not frame[0] & 0x01
    if codec == "h264":
        i = frame.find(b"\x00\x00\x01")
        while i >= 0 and i + 3 < len(frame):
            if frame[i + 3] & 0x1F == H264_IDR:
                return True
            i = frame.find(b"\x00\x00\x01", i + 3)
        return False
    return True
