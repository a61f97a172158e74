"""Real encoded media for media tests: synthetic pictures and tones through libx264/libvpx/libopus."""

from __future__ import annotations

import fractions
import math
import os
import struct

import av

from media.ffmpeg_bin import ffmpeg_binary

VIDEO_TB = fractions.Fraction(1, 90000)
AUDIO_TB = fractions.Fraction(1, 48000)


def _picture(index: int, width: int, height: int, noise: bool = False) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, "yuv420p")
    y, u, v = frame.planes
    # A bar that moves each frame, so every picture differs (the encoder does real work).
    row = bytearray(y.line_size)
    bar = (index * 8) % width
    for x in range(width):
        row[x] = 235 if bar <= x < bar + 24 else 40 + (x * 100) // width
    luma = bytes(row) * height
    if noise:
        # Camera-like detail (leaves, grain) in the lower third: a realistic bitrate.
        third = (height // 3) * y.line_size
        luma = luma[:-third] + os.urandom(third)
    y.update(luma)
    u.update(bytes([128]) * u.buffer_size)
    v.update(bytes([(index * 3) % 256]) * v.buffer_size)
    return frame


def video_packets(seconds: float, fps: int = 25, codec: str = "libx264", width: int = 320,
                  height: int = 240, gop_s: float = 2.0,
                  bit_rate: int | None = None) -> list[av.Packet]:
    """Encoded video packets with pts in 1/90000 (like RTP video clocks), keyframes every gop_s."""
    encoder = av.CodecContext.create(codec, "w")
    assert isinstance(encoder, av.VideoCodecContext)
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = VIDEO_TB
    encoder.framerate = fractions.Fraction(fps)
    gop = str(int(fps * gop_s))
    if codec == "libx264":
        encoder.options = {"preset": "ultrafast", "tune": "zerolatency", "g": gop, "bf": "0",
                           "sc_threshold": "0"}
    else:
        encoder.options = {"g": gop, "deadline": "realtime", "cpu-used": "8"}
        encoder.bit_rate = bit_rate or 500_000
    if bit_rate:
        encoder.bit_rate = bit_rate
    packets: list[av.Packet] = []
    for i in range(int(seconds * fps)):
        frame = _picture(i, width, height, noise=bit_rate is not None)
        frame.pts = i * 90000 // fps
        frame.time_base = VIDEO_TB
        packets.extend(encoder.encode(frame))
    packets.extend(encoder.encode(None))
    for p in packets:
        p.time_base = VIDEO_TB
    return packets


def opus_packets(seconds: float) -> list[av.Packet]:
    """A 1 kHz tone as 20 ms Opus packets, pts in 1/48000 (1 kHz: a whole number of periods
    per packet, so one packet of samples serves every frame)."""
    encoder = av.CodecContext.create("libopus", "w")
    assert isinstance(encoder, av.AudioCodecContext)
    encoder.sample_rate, encoder.layout, encoder.format = 48000, "stereo", "s16"
    encoder.time_base = AUDIO_TB
    packets: list[av.Packet] = []
    samples = 960
    data = b"".join(
        struct.pack("<hh", v, v)
        for n in range(samples)
        for v in [int(8000 * math.sin(2 * math.pi * 1000 * n / 48000))]
    )
    for i in range(int(seconds * 50)):
        frame = av.AudioFrame(format="s16", layout="stereo", samples=samples)
        frame.planes[0].update(data)
        frame.sample_rate = 48000
        frame.pts = i * samples
        frame.time_base = AUDIO_TB
        packets.extend(encoder.encode(frame))
    packets.extend(encoder.encode(None))
    for p in packets:
        p.time_base = AUDIO_TB
    return packets


def interleave(video: list[av.Packet], audio: list[av.Packet]) -> list[tuple[str, av.Packet]]:
    """Both tracks in time order, as a publisher would send them."""
    tagged = [("video", p) for p in video] + [("audio", p) for p in audio]
    tagged.sort(key=lambda kp: float((kp[1].pts or 0) * (kp[1].time_base or 1)))
    return tagged


def rtmp_publish_argv(url: str, seconds: float, fps: int = 25, size: str = "320x240") -> list[str]:
    """An ffmpeg RTMP client like a phone app: H.264 (keyframe every 2 s) + AAC, paced in real time.
    The distro's ffmpeg, or imageio-ffmpeg's when none is installed (as the server would use)."""
    return [
        ffmpeg_binary(), "-nostdin", "-v", "error", "-re",
        "-f", "lavfi", "-i", f"testsrc=size={size}:rate={fps}",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
        "-g", str(2 * fps), "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k",
        "-f", "flv", url,
    ]
