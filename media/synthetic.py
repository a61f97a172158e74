"""A synthetic camera: a farm-ish picture with a clock, a frame counter and a machine-readable
timestamp strip, plus a tone. Used by the demo stream, the tests and bench/media.py.

The strip (top-left, 32 blocks of 16x16 luma, white = 1) holds the wall-clock milliseconds
(mod 2**32) at which the frame was produced: a viewer reads it back to measure latency.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import Any

import av
import numpy as np
from aiortc import AudioStreamTrack, VideoStreamTrack

STRIP_BITS = 32
STRIP_BLOCK = 16

# 3x5 bitmaps of the characters a clock and a counter need.
_GLYPHS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001001001",
    "8": "111101111101111", "9": "111101111001111", ":": "000010000010000", " ": "000000000000000",
    "#": "101111101111101",
}


def paint_text(y: np.ndarray[Any, Any], text: str, x0: int, y0: int, scale: int, value: int = 235) -> None:
    for n, ch in enumerate(text):
        bits = _GLYPHS.get(ch, _GLYPHS[" "])
        for i, bit in enumerate(bits):
            if bit == "1":
                r, c = divmod(i, 3)
                top, left = y0 + r * scale, x0 + (n * 4 + c) * scale
                y[top:top + scale, left:left + scale] = value


def paint_strip(y: np.ndarray[Any, Any], value: int) -> None:
    for bit in range(STRIP_BITS):
        on = (value >> (STRIP_BITS - 1 - bit)) & 1
        x = bit * STRIP_BLOCK
        y[0:STRIP_BLOCK, x:x + STRIP_BLOCK] = 235 if on else 16


def read_strip(y: np.ndarray[Any, Any]) -> int:
    """The value painted by `paint_strip`, from a decoded (lossy) luma plane."""
    value = 0
    for bit in range(STRIP_BITS):
        x = bit * STRIP_BLOCK
        block = y[4:STRIP_BLOCK - 4, x + 4:x + STRIP_BLOCK - 4]
        value = (value << 1) | int(block.mean() > 128)
    return value


def now_ms32() -> int:
    return int(time.time() * 1000) & 0xFFFFFFFF


class FarmVideoTrack(VideoStreamTrack):
    """Sky, field rows swaying, a moving sun, noise (so the encoder has camera-like work),
    a clock, the frame counter and the timestamp strip."""

    def __init__(self, width: int = 640, height: int = 360, fps: int = 30, noise: float = 1.0) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        rng = np.random.default_rng(7)
        base = np.empty((height, width), np.uint8)
        horizon = height * 2 // 5
        base[:horizon] = np.linspace(200, 150, horizon, dtype=np.uint8)[:, None]  # sky
        rows = (np.sin(np.arange(width)[None, :] / 9.0 + np.arange(height - horizon)[:, None] / 3.0) > 0)
        base[horizon:] = np.where(rows, 95, 60)  # field rows
        self._base = base
        self._noise = [rng.integers(0, int(60 * noise) + 1, (height // 2, width // 2), dtype=np.uint8)
                       for _ in range(8)] if noise > 0 else []
        chroma = np.full((height // 2, width), 128, np.uint8)
        chroma[: horizon // 2, : width // 2] = 150  # bluish sky
        chroma[horizon // 2:, : width // 2] = 100  # green field
        chroma[horizon // 2:, width // 2:] = 110
        self._chroma = chroma
        self.count = 0  # frame slots of the clock so far (late ones are skipped, not painted)
        self.produced = 0  # frames really painted and handed to the encoder
        self._time_base = fractions.Fraction(1, 90000)
        self._t0: float | None = None

    async def recv(self) -> av.VideoFrame:
        # Own pacing at self.fps (VideoStreamTrack.next_timestamp is fixed at 30 fps).
        if self._t0 is None:
            self._t0 = time.monotonic()
        target = self._t0 + self.count / self.fps
        delay = target - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        # A busy box cannot paint and encode every frame in time: the late ones are skipped, as
        # a camera drops frames, so the timestamps keep to the clock painted in the picture.
        # Counting frames instead would run the media clock behind the wall clock for good.
        n = max(self.count, int((time.monotonic() - self._t0) * self.fps))
        self.count = n + 1
        self.produced += 1
        y = self._base.copy()
        shift = (n * 3) % self.width
        y[self.height * 2 // 5:] = np.roll(y[self.height * 2 // 5:], shift, axis=1)
        if self._noise:
            h, w = self.height // 2, self.width // 2
            y[self.height - h:, self.width - w:] += self._noise[n % len(self._noise)]
        sun_x = int((n * 2) % self.width)
        y[30:70, max(0, sun_x - 20):sun_x + 20] = 250
        clock = time.strftime("%H:%M:%S", time.gmtime())
        paint_text(y, clock, 20, self.height - 70, 6)
        paint_text(y, f"#{n % 1000000}", self.width - 8 * 4 * 5, self.height - 70, 5, 250)
        paint_strip(y, now_ms32())
        frame = av.VideoFrame.from_ndarray(np.vstack([y, self._chroma]), format="yuv420p")
        frame.pts = int(n * 90000 / self.fps)
        frame.time_base = self._time_base
        return frame


class ToneAudioTrack(AudioStreamTrack):
    """A 440 Hz tone, 48 kHz mono, 20 ms frames, paced in real time."""

    SAMPLES = 960

    def __init__(self, hz: int = 440) -> None:
        super().__init__()
        t = np.arange(48000) / 48000  # one second holds a whole number of periods
        self._wave = (np.sin(2 * np.pi * hz * t) * 6000).astype(np.int16)
        self._i = 0
        self._t0: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self._t0 is None:
            self._t0 = time.monotonic()
        pts = self._i * self.SAMPLES
        wait = self._t0 + pts / 48000 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        start = pts % 48000
        self._i += 1
        frame = av.AudioFrame.from_ndarray(
            self._wave[None, start:start + self.SAMPLES], format="s16", layout="mono"
        )
        frame.sample_rate = 48000
        frame.pts = pts
        frame.time_base = fractions.Fraction(1, 48000)
        return frame
