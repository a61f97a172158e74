"""Checking SDP offers, choosing codecs, and the ICE servers we hand to peers."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from media.errors import BadSdp, CodecUnsupported, SdpTooLarge

# Real offers are 3-10 KB (a browser with many codecs and candidates); 64 KiB is generous.
MAX_SDP_BYTES = 64 * 1024
MAX_MEDIA_SECTIONS = 4


def check_offer(body: bytes) -> str:
    """An SDP offer as text: bounded size, UTF-8, plausible content."""
    if len(body) > MAX_SDP_BYTES:
        raise SdpTooLarge(limit=MAX_SDP_BYTES)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadSdp("SDP 必须是 UTF-8 文本 / SDP must be UTF-8 text") from None
    if not text.startswith("v=0"):
        raise BadSdp()
    sections = sum(1 for line in text.splitlines() if line.startswith("m="))
    if sections == 0:
        raise BadSdp("SDP 没有媒体 / The offer has no media section")
    if sections > MAX_MEDIA_SECTIONS:
        raise BadSdp(f"媒体段过多 / At most {MAX_MEDIA_SECTIONS} media sections", limit=MAX_MEDIA_SECTIONS)
    return text


def rtc_configuration(urls: tuple[str, ...]) -> RTCConfiguration:
    """`stun:host:port`, `turn:user:pass@host:port?transport=udp` (credentials optional)."""
    servers = []
    for url in urls:
        scheme, _, rest = url.partition(":")
        username = credential = None
        if "@" in rest and scheme in ("turn", "turns"):
            creds, _, rest = rest.rpartition("@")
            user, _, password = creds.partition(":")
            username, credential = unquote(user), unquote(password)
        servers.append(RTCIceServer(urls=f"{scheme}:{rest}", username=username, credential=credential))
    # An empty list means host candidates only (no STUN wait on an offline box).
    return RTCConfiguration(iceServers=servers)


def _is(codec: RTCRtpCodecParameters, name: str) -> bool:
    return bool(codec.mimeType.lower() == name)


def _rtx_of(codecs: list[RTCRtpCodecParameters], base: RTCRtpCodecParameters) -> list[RTCRtpCodecParameters]:
    return [c for c in codecs if _is(c, "video/rtx") and c.parameters.get("apt") == base.payloadType]


def prefer_ingest_video(transceiver: Any) -> str:
    """Publisher video: H.264 (packetization-mode 1) first so HLS/recording can remux; else VP8."""
    codecs: list[RTCRtpCodecParameters] = transceiver._codecs
    h264 = [c for c in codecs if _is(c, "video/h264") and str(c.parameters.get("packetization-mode")) == "1"]
    vp8 = [c for c in codecs if _is(c, "video/vp8")]
    chosen = (h264 or vp8)[:1]
    if not chosen:
        raise CodecUnsupported()
    transceiver._codecs = chosen + _rtx_of(codecs, chosen[0])
    return "h264" if h264 else "vp8"


def only_opus(transceiver: Any) -> None:
    codecs: list[RTCRtpCodecParameters] = transceiver._codecs
    opus = [c for c in codecs if _is(c, "audio/opus")]
    if not opus:
        raise CodecUnsupported("音频需要 Opus / Audio must be Opus")
    transceiver._codecs = opus[:1]


def match_viewer_video(transceiver: Any, codec: str, profile: str | None = None) -> None:
    """A viewer gets the publisher's codec as sent (no transcoding), without RTX (we resend
    NACKed packets on the media SSRC). For H.264, packetization-mode 1 and the publisher's
    profile-level-id are preferred (any H.264 decoder copes with another profile, but a
    matching one is what the viewer agreed to receive)."""
    codecs: list[RTCRtpCodecParameters] = transceiver._codecs
    if codec == "h264":
        found = [c for c in codecs if _is(c, "video/h264")]
        found.sort(key=lambda c: (str(c.parameters.get("packetization-mode")) != "1",
                                  str(c.parameters.get("profile-level-id", "")).lower() != (profile or "")))
    else:
        found = [c for c in codecs if _is(c, "video/vp8")]
    if not found:
        raise CodecUnsupported(f"此直播使用 {codec.upper()} / This stream is {codec.upper()}", codec=codec)
    transceiver._codecs = found[:1]


def video_profile(transceiver: Any) -> str | None:
    """The negotiated H.264 profile-level-id of a publisher's video, lower-case."""
    value = transceiver._codecs[0].parameters.get("profile-level-id")
    return str(value).lower() if value else None
