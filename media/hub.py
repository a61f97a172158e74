"""The media hub: every live stream of this process, and the WHIP/WHEP operations on them."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription

from commerce import live_sessions
from commerce.events import DomainEvent, EventBus
from media.errors import BadSdp, CodecUnsupported, NotLive, PublisherActive, ResourceGone, WebrtcFull
from media.publisher import PublisherPeer
from media.sdp import (
    match_viewer_video,
    only_opus,
    prefer_ingest_video,
    rtc_configuration,
    video_profile,
)
from media.stream import LiveStream
from media.tap import PublisherTaps
from media.viewer import IdleTrack, ViewerPeer
from server.database import Database
from server.settings import Settings

log = logging.getLogger(__name__)


async def _negotiate(pc: RTCPeerConnection, offer: str) -> None:
    """Apply a remote offer; anything aiortc cannot make sense of is the client's bad SDP."""
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    except Exception as exc:  # aiortc raises ValueError, KeyError, OperationError...
        if "codec" in str(exc).lower() or "send parameters" in str(exc):
            raise CodecUnsupported() from None
        raise BadSdp(detail=type(exc).__name__) from None


class MediaHub:
    def __init__(self, settings: Settings, database: Database, events: EventBus, taps: PublisherTaps) -> None:
        self.settings = settings
        self.database = database
        self.events = events
        self.taps = taps
        self.streams: dict[int, LiveStream] = {}
        # One negotiation at a time per session: two publishers racing cannot both win.
        self._publish_locks: dict[int, asyncio.Lock] = {}
        self._negotiating = 0  # viewers between offer and answer, counted against the cap
        self._tasks: set[asyncio.Task[None]] = set()
        self._owned: list[Callable[[], Awaitable[None]]] = []  # e.g. the demo source's stop
        taps.set_keyframe_requester(self.request_keyframe)

    def own(self, stop: Callable[[], Awaitable[None]]) -> None:
        """Something to stop before the peers close (the in-process demo publisher)."""
        self._owned.append(stop)

    def _new_pc(self) -> RTCPeerConnection:
        return RTCPeerConnection(rtc_configuration(self.settings.stun_urls))

    # -- WHIP
    async def publish(self, session_id: int, stream_key: str, offer: str) -> tuple[str, str]:
        """Check the key, negotiate, start (or resume) the stream. Returns (resource id, answer)."""
        async with self.database.session() as db:
            await live_sessions.session_for_stream_key(db, session_id, stream_key)
        async with self._publish_locks.setdefault(session_id, asyncio.Lock()):
            stream = self.streams.get(session_id)
            if stream is not None and stream.publisher is not None and stream.publisher.alive():
                raise PublisherActive()
            pc = self._new_pc()
            try:
                await _negotiate(pc, offer)
                video, audio = self._ingest_transceivers(pc)
                codec = prefer_ingest_video(video)
                if audio is not None:
                    only_opus(audio)
                await pc.setLocalDescription(await pc.createAnswer())
                async with self.database.session() as db:
                    await live_sessions.mark_live(db, session_id)
            except BaseException:
                await pc.close()
                raise
            if stream is None or stream.closed:
                stream = self.streams[session_id] = LiveStream(
                    session_id, self.taps, self.settings.publisher_grace_s, self._grace_expired
                )
            pub = PublisherPeer(pc, secrets.token_urlsafe(16))
            stream.attach_publisher(pub, video, audio, codec)
            stream.video_profile = video_profile(video)
        log.info("session %s publishing (%s)", session_id, codec)
        return pub.resource_id, pc.localDescription.sdp

    @staticmethod
    def _ingest_transceivers(pc: RTCPeerConnection) -> tuple[Any, Any | None]:
        video = [t for t in pc.getTransceivers() if t.kind == "video"]
        audio = [t for t in pc.getTransceivers() if t.kind == "audio"]
        if len(video) != 1 or len(audio) > 1:
            raise BadSdp("需要一路视频和至多一路音频 / One video and at most one audio track")
        for t in video + audio:
            if t._offerDirection not in ("recvonly", "sendrecv"):
                raise BadSdp("推流必须发送媒体 / A WHIP offer must send media")
        return video[0], (audio[0] if audio else None)

    async def unpublish(self, session_id: int, stream_key: str, resource_id: str) -> None:
        """WHIP DELETE: the publisher is done, so is the live session."""
        async with self.database.session() as db:
            await live_sessions.session_for_stream_key(db, session_id, stream_key)
        stream = self.streams.get(session_id)
        # The last publisher's resource also counts: it may DELETE while we wait out its drop.
        if stream is None or resource_id != stream.last_resource_id:
            raise ResourceGone()
        await self.end_stream(session_id, end_session=True)

    def _grace_expired(self, session_id: int) -> None:
        # A stream that never carried media (the publisher never got through) leaves the
        # session as it is, so the host can try again; one that did is over.
        stream = self.streams.get(session_id)
        had_media = stream is not None and stream.had_media
        task = asyncio.ensure_future(self.end_stream(session_id, end_session=had_media))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def end_stream(self, session_id: int, *, end_session: bool) -> None:
        stream = self.streams.pop(session_id, None)
        self._publish_locks.pop(session_id, None)
        if stream is None:
            return
        await stream.close()
        if end_session:
            async with self.database.session() as db:
                session = await live_sessions.end_session(db, session_id, None)
            await self.events.publish(
                DomainEvent("session_ended", session_id, {"ended_at": session.ended_at})
            )
        log.info("stream of session %s ended", session_id)

    async def on_event(self, event: DomainEvent) -> None:
        """A session ended through the API (the host pressed "end"): stop its stream."""
        if event.kind == "session_ended" and event.session_id is not None:
            await self.end_stream(event.session_id, end_session=False)

    def request_keyframe(self, session_id: int) -> None:
        stream = self.streams.get(session_id)
        if stream is not None:
            stream.request_keyframe()

    # -- WHEP
    async def view(self, session_id: int, offer: str) -> tuple[str, str]:
        stream = self.streams.get(session_id)
        if stream is None or "video" not in stream.fanouts:
            # Only now ask SQL (404 for no such session): a live stream implies its session,
            # and a crowd joining should not queue behind the database.
            async with self.database.session() as db:
                await live_sessions.get_session(db, session_id)
            raise NotLive(hls=f"/hls/{session_id}/index.m3u8")
        if self.viewer_count() >= self.settings.webrtc_viewer_cap:
            raise WebrtcFull(hls=f"/hls/{session_id}/index.m3u8")
        self._negotiating += 1
        pc = self._new_pc()
        try:
            await _negotiate(pc, offer)
            wanted = []
            for t in pc.getTransceivers():
                fanout = stream.fanouts.get(t.kind)
                if fanout is None or t._offerDirection not in ("sendonly", "sendrecv"):
                    continue
                if t.kind == "video":
                    match_viewer_video(t, stream.video_codec, stream.video_profile)
                else:
                    only_opus(t)
                pc.addTrack(IdleTrack(t.kind))
                wanted.append((t, fanout))
            if not any(t.kind == "video" for t, _ in wanted):
                raise BadSdp("观看需要接收视频 / A WHEP offer must receive video")
            await pc.setLocalDescription(await pc.createAnswer())
            if stream.closed:
                raise NotLive(hls=f"/hls/{session_id}/index.m3u8")
        except BaseException:
            await pc.close()
            raise
        finally:
            self._negotiating -= 1
        viewer = ViewerPeer(pc, secrets.token_urlsafe(16))
        for t, fanout in wanted:
            viewer.prepare(t, fanout)
        stream.add_viewer(viewer)
        return viewer.resource_id, pc.localDescription.sdp

    async def stop_view(self, session_id: int, resource_id: str) -> None:
        stream = self.streams.get(session_id)
        viewer = stream.viewers.get(resource_id) if stream is not None else None
        if stream is None or viewer is None:
            raise ResourceGone()
        stream.drop_viewer(viewer)

    def viewer_count(self) -> int:
        return self._negotiating + sum(len(s.viewers) for s in self.streams.values())

    async def close(self) -> None:
        """App shutdown: close every peer; taps get their final stop (sessions stay live)."""
        for stop in self._owned:
            await stop()
        for session_id in list(self.streams):
            await self.end_stream(session_id, end_session=False)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
