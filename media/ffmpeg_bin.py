"""Finding and running ffmpeg: the distro's binary when on PATH, else imageio-ffmpeg's static one.

Commands are built with ffmpeg-python's `.compile()` and run with `asyncio.create_subprocess_exec`
(ffmpeg-python's own `run()` blocks the event loop). Progress comes from `-progress pipe:1`.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Callable, Sequence
from functools import lru_cache

# ffmpeg's stderr can be long; keep only the tail for error messages.
_STDERR_TAIL = 4000


class FfmpegError(RuntimeError):
    """ffmpeg exited with an error; the message carries the end of its stderr."""


@lru_cache(maxsize=1)
def ffmpeg_binary() -> str:
    """The distro's ffmpeg if installed, else the static binary shipped by imageio-ffmpeg."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def compile_args(stream: object) -> list[str]:
    """argv for an ffmpeg-python stream graph, with our binary in front."""
    args: list[str] = stream.compile(cmd=ffmpeg_binary())  # type: ignore[attr-defined]
    return args


async def run_ffmpeg(
    argv: Sequence[str],
    *,
    total_s: float | None = None,
    on_progress: Callable[[float], None] | None = None,
    timeout_s: float = 1800.0,
) -> None:
    """Run ffmpeg to completion; `on_progress(fraction)` is fed from `-progress pipe:1` lines.

    `argv` must already contain `-progress pipe:1` when progress is wanted. A timeout kills the
    process so a stuck job never holds the replay queue forever.
    """
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    stderr_chunks: list[bytes] = []

    async def read_progress() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").strip()
            if on_progress is None or not total_s or not line.startswith("out_time_us="):
                continue
            with contextlib.suppress(ValueError):
                done_s = int(line.split("=", 1)[1]) / 1_000_000
                on_progress(max(0.0, min(1.0, done_s / total_s)))

    async def read_stderr() -> None:
        assert proc.stderr is not None
        while chunk := await proc.stderr.read(65536):
            stderr_chunks.append(chunk)
            # Bounded memory: ffmpeg can log for hours on a bad input.
            while sum(len(c) for c in stderr_chunks) > 4 * _STDERR_TAIL and len(stderr_chunks) > 1:
                stderr_chunks.pop(0)

    try:
        await asyncio.wait_for(asyncio.gather(read_progress(), read_stderr(), proc.wait()), timeout_s)
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        tail = b"".join(stderr_chunks)[-_STDERR_TAIL:].decode(errors="replace")
        raise FfmpegError(f"ffmpeg exited with {proc.returncode}: {tail}")
