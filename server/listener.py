"""Serving the app on a TCP port, accepting waiting connections in batches.

uvloop's libuv accepts one connection per turn of the event loop (libuv #3696). A busy turn
during a flash sale, with a thousand buyers' requests ready, takes tens of milliseconds, so
new connections were accepted at ~45 a second: in bench/flash_sale.py 1,500 buyers waited in
the kernel's accept queue, some past 10 s, while requests already inside took under 0.5 s.
This listener accepts up to `ACCEPT_BATCH` waiting connections each time the socket is ready,
as asyncio's own loop does, and hands each to the loop as an accepted socket.

It also closes a new connection that has not sent a whole request head within
`header_timeout_s` (slowloris: thousands of connections each trickling a header byte now and
then would otherwise be held open for ever, aiohttp has no such timeout). Keep-alive
connections between requests are aiohttp's own `keepalive_timeout`.

At a stop, a connection that has not sent its request head yet gets `STOP_HEAD_GRACE_S` to
send one, not `header_timeout_s`. aiohttp's shutdown closes the idle connections it knows of,
then waits for every connection's handler; a connection accepted moments before (its handler
not yet waiting for a request when the close comes, or not even made yet) is missed by that
close, and the stop would wait until the header timeout closed it (15 s by default). Clients
connect all the time: a long-polling one opens a connection per poll.

`run(app, host, port, ...)` replaces aiohttp's `web.run_app` (which has no way to take another
kind of site) and keeps what it does: a signal ends it gracefully, the runner cleans up.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from server.stopping import StopSignals, time_cleanup_contexts

log = logging.getLogger(__name__)

ACCEPT_BATCH = 256
# Out of file descriptors: stop accepting for a moment rather than spin on the error.
PAUSE_ON_EMFILE_S = 0.5
# At a stop: a client that connected just before sends its request head within a round trip.
STOP_HEAD_GRACE_S = 1.0
# At a stop: how long idle executor threads get to finish.
EXECUTOR_JOIN_S = 2.0


class BatchAcceptListener:
    """The part of `asyncio.Server` aiohttp's runner uses (`sockets`, `close`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 protocol_factory: Any, header_timeout_s: float,
                 stop_head_grace_s: float = STOP_HEAD_GRACE_S) -> None:
        self._loop = loop
        self._header_timeout_s = header_timeout_s
        self._stop_head_grace_s = stop_head_grace_s
        self.closed_silent = 0  # connections closed for not sending a request head in time
        self._sock = sock
        self._factory = protocol_factory
        self._handshakes: set[asyncio.Task[Any]] = set()
        # Connections until their header check: the ones a stop must not wait for.
        self._unchecked: dict[asyncio.BaseTransport, Any] = {}
        self._closed = False
        self.sockets = (sock,)
        loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("accept paused: out of resources", extra={"errno": exc.errno})
                    self._loop.remove_reader(self._sock.fileno())
                    self._loop.call_later(PAUSE_ON_EMFILE_S, self._resume)
                    return
                raise
            conn.setblocking(False)
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = self._loop.create_task(self._connect(conn))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            transport, protocol = await self._loop.connect_accepted_socket(self._factory, conn)
        except Exception:
            conn.close()
            log.warning("could not set up an accepted connection", exc_info=True)
            return
        if self._closed:  # accepted just before the stop
            self._loop.call_later(self._stop_head_grace_s, self._close_if_silent, transport, protocol)
            return
        self._unchecked[transport] = protocol
        self._loop.call_later(self._header_timeout_s, self._close_if_silent, transport, protocol)

    def _close_if_silent(self, transport: asyncio.BaseTransport, protocol: Any) -> None:
        self._unchecked.pop(transport, None)
        # aiohttp's RequestHandler counts requests whose head it parsed. Should a later aiohttp
        # drop the attribute, the default keeps every connection (the guard fails open).
        if getattr(protocol, "_request_count", 1) == 0 and not transport.is_closing():
            self.closed_silent += 1
            if isinstance(transport, asyncio.WriteTransport):
                transport.abort()  # nothing to flush: it never got an answer
            else:
                transport.close()

    def _resume(self) -> None:
        if not self._closed:
            self._loop.add_reader(self._sock.fileno(), self._accept)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        # Their header check comes sooner; connections still being set up get theirs in
        # _connect. One that already sent a request is aiohttp's to finish gracefully.
        for transport, protocol in self._unchecked.items():
            self._loop.call_later(self._stop_head_grace_s, self._close_if_silent, transport, protocol)
        self._unchecked.clear()

    async def wait_closed(self) -> None:
        return None


class BatchAcceptSite(web.BaseSite):
    __slots__ = ("_header_timeout_s", "_host", "_port", "_reuse_port", "_stop_head_grace_s")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, backlog: int,
                 reuse_port: bool, header_timeout_s: float,
                 stop_head_grace_s: float = STOP_HEAD_GRACE_S) -> None:
        super().__init__(runner, backlog=backlog)
        self._host, self._port, self._reuse_port = host, port, reuse_port
        self._header_timeout_s = header_timeout_s
        self._stop_head_grace_s = stop_head_grace_s

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.create_server((self._host, self._port), family=family,
                                    backlog=self._backlog, reuse_port=self._reuse_port)
        sock.setblocking(False)
        server = self._runner.server
        assert server is not None
        # Typed as asyncio.AbstractServer in aiohttp; the runner only uses sockets and close().
        self._server = BatchAcceptListener(  # type: ignore[assignment]
            loop, sock, server, self._header_timeout_s, self._stop_head_grace_s)

    @property
    def listener(self) -> BatchAcceptListener:
        assert isinstance(self._server, BatchAcceptListener), "site not started"
        return self._server

    @property
    def port(self) -> int:
        return int(self.listener.sockets[0].getsockname()[1])


def run(app: web.Application, host: str, port: int, *, backlog: int, reuse_port: bool,
        header_timeout_s: float, extra_sockets: Sequence[socket.socket] = ()) -> None:
    """Serve until SIGINT/SIGTERM, then shut down gracefully (web.run_app's contract; signals
    as server/stopping.py takes them). `extra_sockets`: bound sockets served too (the internal
    listener other processes forward to)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    signals = StopSignals(loop)
    signals.install()
    time_cleanup_contexts(app)

    async def serve() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            if not signals.requested.is_set():  # not asked to stop while starting
                site = BatchAcceptSite(runner, host, port, backlog=backlog,
                                       reuse_port=reuse_port, header_timeout_s=header_timeout_s)
                await site.start()
                for sock in extra_sockets:
                    await web.SockSite(runner, sock).start()
                await signals.requested.wait()
        finally:
            started = time.monotonic()
            await runner.cleanup()
            log.info("stopped", extra={"seconds": round(time.monotonic() - started, 1)})

    main = loop.create_task(serve())
    try:
        loop.run_until_complete(main)
    finally:
        _cancel_and_run_out({main}, loop)  # an error in start-up: serve()'s cleanup runs
        _cancel_and_run_out(asyncio.all_tasks(loop), loop)
        loop.run_until_complete(loop.shutdown_asyncgens())
        # Idle threads of the default executor (asyncio.to_thread) are not daemons: joined here,
        # so serve._leave_stuck_threads is left with only a thread that is really stuck.
        with contextlib.suppress(TimeoutError):
            loop.run_until_complete(asyncio.wait_for(loop.shutdown_default_executor(),
                                                     EXECUTOR_JOIN_S))
        signals.remove()
        loop.close()
        asyncio.set_event_loop(None)


def _cancel_and_run_out(tasks: set[asyncio.Task[Any]], loop: asyncio.AbstractEventLoop) -> None:
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler({"message": "error during shutdown",
                                         "exception": task.exception(), "task": task})
