"""The demo stream: `make run` publishes a synthetic farm picture with a tone into the demo
session, in-process over the same WHIP path a phone uses (offer -> MediaHub.publish -> answer),
so a newcomer opening /live/{id} sees a live picture at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from commerce import live_sessions
from media.hub import MediaHub
from media.keys import media_hub_key
from media.synthetic import FarmVideoTrack, ToneAudioTrack
from server.demo import DemoInfo
from server.keys import database_key

log = logging.getLogger(__name__)

RETRY_S = 3.0
POLL_S = 0.5
DEMO_FPS = 15  # a demo, not a benchmark: half the encoding work of 30 fps


class DemoSource:
    """Publishes until stopped; republishes (within the hub's grace) if its peer fails, but
    never after a real publisher (the host, with the session's key) took the stream over."""

    def __init__(self, hub: MediaHub, session_id: int, stream_key: str) -> None:
        self.hub = hub
        self.session_id = session_id
        self._key = stream_key
        self._pc: RTCPeerConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._resource: str | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _publish_once(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # in-process: host candidates
        pc.addTrack(FarmVideoTrack(fps=DEMO_FPS))
        pc.addTrack(ToneAudioTrack())
        await pc.setLocalDescription(await pc.createOffer())
        self._resource, answer = await self.hub.publish(
            self.session_id, self._key, pc.localDescription.sdp, kind="demo")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        return pc

    def _taken_over(self) -> bool:
        current = self.hub.publisher_resource(self.session_id)
        return current is not None and current != self._resource

    async def _until_gone(self, pc: RTCPeerConnection) -> None:
        done = asyncio.Event()

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                done.set()

        # Also polled: a peer the hub closed after a takeover may look connected here a while.
        while not self._taken_over():
            try:
                await asyncio.wait_for(done.wait(), POLL_S)
                return
            except TimeoutError:
                continue

    async def _run(self) -> None:
        while not self._taken_over():
            try:
                self._pc = await self._publish_once()
                await self._until_gone(self._pc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the session ended, a publisher is active, ...
                log.warning("demo stream could not publish: %s", exc)
            finally:
                if self._pc is not None:
                    await self._pc.close()
                    self._pc = None
            await asyncio.sleep(RETRY_S)
        log.info("demo stream of session %s handed over to a real publisher", self.session_id)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pc is not None:
            await self._pc.close()


async def seed_demo_stream(app: web.Application, info: DemoInfo) -> None:
    """Demo seeder (server/demo.py): start the synthetic stream into the demo session."""
    hub = app[media_hub_key]
    async with app[database_key].session() as db:
        session = await live_sessions.get_session(db, info.session_id)
        key = session.stream_key
    source = DemoSource(hub, info.session_id, key)
    hub.own(source.stop)
    source.start()
    info.lines.append(f"  演示直播 Demo stream:  WHEP /whep/{info.session_id} (synthetic farm + tone)")
