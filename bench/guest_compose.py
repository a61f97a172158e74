"""What a guest on camera (连线) costs the server: the composer's CPU per stream.

    python bench/guest_compose.py                 # 640x360 and 1280x720, H.264 and VP8
    python bench/guest_compose.py --seconds 3 --sizes 640x360 --codecs h264

The host's camera is encoded here first (libx264/libvpx realtime at ~1.5 Mbit/s, a moving
picture with camera-like noise, as a browser would send it); the guest's is a decoded 480x640
portrait picture. Then media/guest.py's Composer runs each host packet through its real path
(decode, overlay, encode, RTP packetising) in this process, and we read the process's CPU time:
the per-stream cost, paid once whatever the number of viewers. For comparison the guest's own
decode (aiortc decodes her H.264 in its decoder thread) and the voice mix (media/guest.py's
AudioMixer: host Opus decoded, her samples added, Opus encoded) are measured the same way.
Prints one JSON line per case; `core_pct_at_30fps` is the share of one core at 30 frames/s.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import sys
import time
from typing import Any

import av
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from media.guest import AudioMixer, Composer

TB = fractions.Fraction(1, 90000)
FPS = 30


def picture(n: int, width: int, height: int, rng: np.random.Generator) -> av.VideoFrame:
    y = np.tile((np.arange(width, dtype=np.int32) * 160 // width + 40).astype(np.uint8), (height, 1))
    bar = (n * 8) % width
    y[:, bar:bar + 24] = 235
    lower = height // 3
    y[-lower:] = np.clip(y[-lower:].astype(np.int16) + rng.integers(-25, 25, (lower, width)), 16, 235)
    chroma = np.full((height // 2, width), 128, np.uint8)
    frame = av.VideoFrame.from_ndarray(np.vstack([y, chroma]), format="yuv420p")
    frame.pts = n * 90000 // FPS
    frame.time_base = TB
    return frame


def encode(codec: str, frames: list[av.VideoFrame]) -> list[Any]:
    enc = av.CodecContext.create("libx264" if codec == "h264" else "libvpx", "w")
    assert isinstance(enc, av.VideoCodecContext)
    enc.width, enc.height, enc.pix_fmt = frames[0].width, frames[0].height, "yuv420p"
    enc.time_base, enc.framerate, enc.bit_rate = TB, fractions.Fraction(FPS), 1_500_000
    enc.options = ({"preset": "ultrafast", "tune": "zerolatency", "bf": "0", "g": "60"}
                   if codec == "h264" else {"deadline": "realtime", "cpu-used": "8", "g": "60"})
    packets: list[Any] = []
    for frame in frames:
        packets.extend(enc.encode(frame))
    packets.extend(enc.encode(None))
    for p in packets:
        p.time_base = TB
    return packets


def run_case(codec: str, width: int, height: int, seconds: float) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    count = int(seconds * FPS)
    host = encode(codec, [picture(n, width, height, rng) for n in range(count)])
    guest_frames = [picture(n, 480, 640, rng) for n in range(count)]
    guest_packets = encode("h264", guest_frames)
    loop = asyncio.new_event_loop()  # not run: the composer's deliveries just queue on it
    delivered = 0

    def deliver(rtp: list[Any], packet: Any) -> None:
        nonlocal delivered
        delivered += 1

    try:
        composer = Composer(1, codec, loop, deliver, lambda: None)
        # Host alone through the composer is not measured: guests are on from the first frame.
        composer.guest_frame = guest_frames[0]
        start = time.process_time()
        for n, packet in enumerate(host):
            composer.guest_frame = guest_frames[n % len(guest_frames)]
            composer._one(packet)
        compose_cpu = time.process_time() - start
        frames = composer.frames

        decoder = av.CodecContext.create("h264", "r")
        start = time.process_time()
        for packet in guest_packets:
            decoder.decode(packet)
        guest_cpu = time.process_time() - start
    finally:
        loop.close()
    per_frame_ms = compose_cpu / max(1, frames) * 1000
    guest_ms = guest_cpu / max(1, len(guest_packets)) * 1000
    return {
        "codec": codec, "host": f"{width}x{height}", "guest": "480x640", "frames": frames,
        "compose_ms_per_frame": round(per_frame_ms, 2),
        "core_pct_at_30fps": round(per_frame_ms * FPS / 10, 1),
        "guest_decode_ms_per_frame": round(guest_ms, 2),
        "guest_decode_core_pct_at_30fps": round(guest_ms * FPS / 10, 1),
        "loadavg_1m": round(os.getloadavg()[0], 1),
    }


def run_audio(seconds: float) -> dict[str, Any]:
    """The voice mix: host Opus decoded, the guest's PCM added, Opus encoded, per 20 ms."""
    enc = av.CodecContext.create("libopus", "w")
    assert isinstance(enc, av.AudioCodecContext)
    enc.format, enc.layout, enc.sample_rate = "s16", "stereo", 48000
    enc.time_base = fractions.Fraction(1, 48000)
    t = np.arange(960)
    packets: list[Any] = []
    guest: list[av.AudioFrame] = []
    for i in range(int(seconds * 50)):
        for hz, out in ((440, None), (1000, guest)):
            wave = (np.sin(2 * np.pi * hz * (t + i * 960) / 48000) * 6000).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(np.repeat(wave, 2).reshape(1, -1), format="s16",
                                               layout="stereo")
            frame.sample_rate, frame.pts = 48000, i * 960
            frame.time_base = fractions.Fraction(1, 48000)
            if out is None:
                packets.extend(enc.encode(frame))
            else:
                out.append(frame)
    mixer = AudioMixer(lambda rtp, packet: None)
    start = time.process_time()
    for n, packet in enumerate(packets):
        mixer.guest_frame(guest[n % len(guest)])
        mixer.push(packet)
    cpu = time.process_time() - start
    per_packet_ms = cpu / max(1, len(packets)) * 1000
    return {"audio": "opus 48 kHz stereo, 20 ms", "packets": len(packets),
            "mix_ms_per_packet": round(per_packet_ms, 3),
            "core_pct": round(per_packet_ms * 50 / 10, 2), "loadavg_1m": round(os.getloadavg()[0], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="media seconds per case")
    parser.add_argument("--sizes", nargs="+", default=["640x360", "1280x720"])
    parser.add_argument("--codecs", nargs="+", default=["h264", "vp8"])
    args = parser.parse_args()
    for size in args.sizes:
        width, height = (int(v) for v in size.split("x"))
        for codec in args.codecs:
            print(json.dumps(run_case(codec, width, height, args.seconds)), flush=True)
    print(json.dumps(run_audio(args.seconds)), flush=True)


if __name__ == "__main__":
    main()
