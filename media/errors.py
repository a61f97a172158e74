"""Errors of WHIP/WHEP signalling, with stable codes (rendered by the app's error middleware)."""

from __future__ import annotations

from commerce.errors import DomainError


class BadSdp(DomainError):
    code = "bad_sdp"
    status = 400
    default_message = "SDP 无效 / The SDP offer is not valid"


class SdpTooLarge(DomainError):
    code = "sdp_too_large"
    status = 413
    default_message = "SDP 过大 / The SDP offer is too large"


class NotSdp(DomainError):
    code = "unsupported_media_type"
    status = 415
    default_message = "请使用 application/sdp / Send the offer as application/sdp"


class CodecUnsupported(DomainError):
    code = "codec_unsupported"
    status = 422
    default_message = "没有可用的编码(需要 H.264 或 VP8 视频)/ No usable codec (H.264 or VP8 video needed)"


class NotLive(DomainError):
    code = "not_live"
    status = 409
    default_message = "直播尚未开始 / The stream is not live yet"


class WebrtcFull(DomainError):
    code = "webrtc_full"
    status = 503
    default_message = "低延迟观看人数已满,请使用 HLS / Low-latency seats are full, watch over HLS"


class ResourceGone(DomainError):
    code = "not_found"
    status = 404
    default_message = "该推流/观看会话不存在 / No such WHIP/WHEP resource"
