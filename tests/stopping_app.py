"""A small app served by server.listener.run, for the stop tests: `python -m tests.stopping_app
<dir> <cleanup_s>`. It writes <dir>/ready once serving and <dir>/cleaned once its cleanup
context, which takes `cleanup_s`, has finished."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from server import listener
from server.logs import configure_logging


def main(folder: Path, cleanup_s: float) -> None:
    configure_logging("INFO")
    app = web.Application()

    async def slow_cleanup(_app: web.Application) -> AsyncIterator[None]:
        yield
        await asyncio.sleep(cleanup_s)
        (folder / "cleaned").write_text("yes")

    async def ready(_app: web.Application) -> None:
        (folder / "ready").write_text("yes")

    app.cleanup_ctx.append(slow_cleanup)
    app.on_startup.append(ready)
    listener.run(app, "127.0.0.1", 0, backlog=16, reuse_port=False, header_timeout_s=15)


if __name__ == "__main__":
    main(Path(sys.argv[1]), float(sys.argv[2]))
