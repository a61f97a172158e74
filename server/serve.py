"""Running the HTTP service: one process, or several sharing the port (SO_REUSEPORT)."""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading

from aiohttp import web

from infra.settings import Settings
from server import listener
from server.app import create_app
from server.embedded_redis import EmbeddedRedis
from server.logs import configure_logging

log = logging.getLogger(__name__)

# Collector thresholds for a worker (CPython's default is 700, 10, 10). A generation-0 pass walks
# every young object still alive, and in a busy worker that is the requests in flight, a few
# thousand objects, nearly none of them garbage (requests free themselves by reference
# counting). At the default, 2,000 buyers tapping once a second set off ~11 passes a second per
# worker, and what they promoted brought gen-1 passes about every second and gen-2 passes of
# tens of thousands of objects every ~10 s: 35-350 ms pauses on a loaded box, the latency tail
# (bench/RESULTS.md). At 5,000 a steady worker runs a pass every few seconds at most, and
# garbage cycles still go within 5,000 allocations. Not higher: 20,000 left a crowd's new
# connections (tens of thousands of objects) young until one long pass, a 100-200 ms stall in
# the first seconds of a sale.
GC_THRESHOLDS = (5_000, 10, 10)

# Connections the kernel queues before we accept them (capped by net.core.somaxconn). aiohttp's
# 128 overflows when a crowd reconnects at once (2,000 sockets after a restart, bench/chaos.py):
# dropped SYNs are retried after 1, 2, 4, ... s, and the last viewers came back minutes later.
LISTEN_BACKLOG = 4096


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _freeze_startup_objects(_app: web.Application) -> None:
    """Move what start-up built (modules, the app, pools: ~hundreds of thousands of objects that
    live as long as the process) out of the garbage collector's sight, so a full collection in
    the middle of a flash sale walks only what requests made: it shortens the latency tail."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _leave_stuck_threads() -> None:
    """The app's cleanup has run. A library thread still blocked (an aiortc decoder whose
    receiver was never stopped, an aiosqlite connection nobody closed) would keep the process
    alive after Ctrl-C, since the interpreter waits for every non-daemon thread: say which, and
    leave without them. Every file and connection of ours was closed by the cleanup already."""
    stuck = [thread.name for thread in threading.enumerate()
             if thread is not threading.main_thread() and not thread.daemon and thread.is_alive()]
    if not stuck:
        return
    log.warning("threads still running after cleanup; exiting without them",
                extra={"threads": stuck})
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _worker(settings: Settings, index: int) -> None:
    configure_logging(settings.log_level)
    _use_uvloop()
    # Only the first worker runs the demo publisher and the background sweepers' leaders.
    if index > 0:
        settings = settings.with_(demo=False)
    # Bound before the app starts, so the process registers an address it already answers on.
    internal = socket.create_server((settings.internal_host, settings.internal_port),
                                    family=socket.AF_INET6 if ":" in settings.internal_host
                                    else socket.AF_INET, backlog=LISTEN_BACKLOG)
    settings = settings.with_(internal_url=internal_url(settings, internal.getsockname()[1]))
    app = create_app(settings)
    app.on_startup.append(_freeze_startup_objects)  # after every component's start-up
    listener.run(app, settings.host, settings.port, backlog=LISTEN_BACKLOG,
                 reuse_port=settings.workers > 1, header_timeout_s=settings.header_timeout_s,
                 extra_sockets=[internal])
    if settings.workers > 1:
        _leave_stuck_threads()


def internal_url(settings: Settings, port: int) -> str:
    """How the other processes reach this one's internal listener."""
    host = settings.advertise_host or settings.internal_host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - bound to all: advertise this machine's
        host = socket.gethostbyname(socket.gethostname())
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(settings: Settings) -> None:
    embedded: EmbeddedRedis | None = None
    if settings.redis_url is None and settings.workers > 1:
        # Several workers must share one Redis: start it here, hand them its URL.
        embedded = EmbeddedRedis(settings.data_dir / "redis")
        settings = settings.with_(redis_url=embedded.start())
    # Every effective value, for whoever reads the log after a surprise; secrets show as stars.
    log.info("starting", extra={"settings": settings.for_log()})
    try:
        if settings.workers == 1:
            _worker(settings, 0)
            if embedded is not None:
                embedded.stop()
                embedded = None
            _leave_stuck_threads()
            return
        # Migrate once here so workers starting together never race on the schema.
        from server.database import Database

        async def migrate() -> None:
            database = Database(settings.sqlalchemy_url)
            await database.migrate()
            await database.close()

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        asyncio.run(migrate())
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_worker, args=(settings, i), daemon=False)
                 for i in range(settings.workers)]
        procs[0].start()
        for proc in procs[1:]:
            proc.start()

        def stop(_signum: int, _frame: object) -> None:
            for proc in procs:
                if proc.pid is not None and proc.is_alive():
                    os.kill(proc.pid, signal.SIGINT)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        for proc in procs:
            proc.join()
    finally:
        if embedded is not None:
            embedded.stop()
    sys.stdout.flush()
