"""The media hub: every live stream of this process, and the WHIP/WHEP operations on them.

Who publishes a session is decided here, for WHIP and RTMP alike, under one lock per session:
the stream key (and its host's standing) is checked inside that lock, and the newest publisher
with a valid key replaces the previous one. Key rotation and a host losing their role take the
same lock, so no publisher checked against an old key can attach after the key changed.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription

from commerce import live_sessions
from commerce.errors import Conflict, Forbidden
from commerce.event_payloads import SessionEnded, SessionLive
from commerce.events import DomainEvent, EventBus
from infra.database import Database
from media.errors import BadSdp, CodecUnsupported, NotLive, ResourceGone
from media.guest import GuestPeer
from media.ownership import MediaElsewhere, Ownership, SoleOwnership
from media.publisher import PublisherPeer
from media.sdp import (
    match_viewer_video,
    only_opus,
    prefer_ingest_video,
    rtc_configuration,
    video_profile,
)
from media.seats import SeatLedger
from media.stream import Ingest, LiveStream
from media.tap import PublisherTaps
from media.viewer import IdleTrack, ViewerPeer

log = logging.getLogger(__name__)


async def _negotiate(pc: RTCPeerConnection, offer: str) -> None:
    """Apply a remote offer; anything aiortc cannot make sense of is the client's bad SDP."""
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    except Exception as exc:  # aiortc raises ValueError, KeyError, OperationError...
        if "codec" in str(exc).lower() or "send parameters" in str(exc):
            raise CodecUnsupported() from None
        raise BadSdp(detail=type(exc).__name__) from None


@dataclass(frozen=True)
class HubConfig:
    """The hub's settings (LINLI_STUN_URLS, LINLI_WEBRTC_VIEWER_CAP, LINLI_WHEP_SEATS_PER_ADDRESS,
    LINLI_WHEP_CONNECT_DEADLINE_S, LINLI_PUBLISHER_GRACE_S), handed in by whoever builds it."""

    stun_urls: tuple[str, ...]
    viewer_cap: int
    seats_per_address: int
    connect_deadline_s: int
    publisher_grace_s: int


class MediaHub:
    def __init__(self, config: HubConfig, database: Database, events: EventBus, taps: PublisherTaps,
                 ownership: Ownership | None = None) -> None:
        self.config = config
        self.ownership: Ownership = ownership or SoleOwnership()
        self.database = database
        self.events = events
        self.taps = taps
        self.streams: dict[int, LiveStream] = {}
        # One publisher change at a time per session: two publishers racing cannot both win,
        # and a key rotation waits for a publish that already checked the old key.
        self._publish_locks: dict[int, asyncio.Lock] = {}
        self.seats = SeatLedger(config.viewer_cap, config.seats_per_address,
                                retry_after_s=config.connect_deadline_s)
        self._host_of: dict[int, int] = {}  # session id -> host user id, for revocations
        # session id -> the user its host invited on camera; kept with the media (this process
        # owns it), gone with the stream.
        self.guest_invites: dict[int, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._owned: list[Callable[[], Awaitable[None]]] = []  # e.g. the demo source's stop
        taps.set_keyframe_requester(self.request_keyframe)

    def own(self, stop: Callable[[], Awaitable[None]]) -> None:
        """Something to stop before the peers close (the in-process demo publisher)."""
        self._owned.append(stop)

    def _new_pc(self) -> RTCPeerConnection:
        return RTCPeerConnection(rtc_configuration(self.config.stun_urls))

    # -- WHIP
    def publish_lock(self, session_id: int) -> asyncio.Lock:
        return self._publish_locks.setdefault(session_id, asyncio.Lock())

    async def _check_key(self, session_id: int, stream_key: str) -> None:
        async with self.database.session() as db:
            session = await live_sessions.session_for_stream_key(db, session_id, stream_key)
            self._host_of[session_id] = session.host_id
        # With the key checked: a wrong key must not hold the session's media anywhere.
        if not await self.ownership.claim(session_id):
            raise MediaElsewhere(retry_after=1)

    async def _release_unless_streaming(self, session_id: int) -> None:
        if session_id not in self.streams:
            await self.ownership.release(session_id)

    async def publish(self, session_id: int, stream_key: str, offer: str,
                      kind: str = "whip") -> tuple[str, str]:
        """Check the key, negotiate, start (or take over) the stream. Returns (resource id, answer)."""
        async with self.publish_lock(session_id):
            await self._check_key(session_id, stream_key)
            stream = self.streams.get(session_id)
            pc = self._new_pc()
            try:
                await _negotiate(pc, offer)
                video, audio = self._ingest_transceivers(pc)
                codec = prefer_ingest_video(video)
                if audio is not None:
                    only_opus(audio)
                await pc.setLocalDescription(await pc.createAnswer())
                async with self.database.session() as db:
                    went_live = await live_sessions.mark_live(db, session_id)
                if went_live:
                    await self.events.publish(DomainEvent("session_live", session_id, SessionLive()))
                stream = self.streams.get(session_id)
                if stream is not None and stream.publisher is not None and not stream.publisher.feeds_taps:
                    # An RTMP publisher is replaced: its recording input must have stopped
                    # before ours starts (one recorder, fed in order).
                    await stream.publisher.hand_over()
            except BaseException:
                await pc.close()
                await self._release_unless_streaming(session_id)
                raise
            stream = self._stream(session_id)
            pub = PublisherPeer(pc, secrets.token_urlsafe(16), kind)
            stream.attach_publisher(pub, video, audio, codec)
            stream.video_profile = video_profile(video)
        log.info("session %s publishing (%s, %s)", session_id, kind, codec)
        return pub.resource_id, pc.localDescription.sdp

    def _stream(self, session_id: int) -> LiveStream:
        stream = self.streams.get(session_id)
        if stream is None or stream.closed:
            stream = self.streams[session_id] = LiveStream(
                session_id, self.taps, self.config.publisher_grace_s, self._grace_expired
            )
        return stream

    async def attach_rtmp(self, session_id: int, stream_key: str, relay: Any) -> None:
        """An RTMP publisher with `stream_key`: checked and attached (replacing any publisher)
        under the session's lock. `relay` is a media.rtmp_relay.RtmpRelay."""
        async with self.publish_lock(session_id):
            await self._check_key(session_id, stream_key)
            try:
                async with self.database.session() as db:
                    went_live = await live_sessions.mark_live(db, session_id)
                if went_live:
                    await self.events.publish(DomainEvent("session_live", session_id, SessionLive()))
            except BaseException:
                await self._release_unless_streaming(session_id)
                raise
            current = self.streams.get(session_id)
            if current is not None and current.publisher is not None and not current.publisher.feeds_taps:
                await current.publisher.hand_over()  # the previous RTMP connection, fully stopped
            self._stream(session_id).attach_relay(relay)
        log.info("session %s publishing (rtmp)", session_id)

    def relay_lost(self, session_id: int, relay: Ingest) -> None:
        """The RTMP connection ended on its own: the grace starts as for a WHIP drop."""
        stream = self.streams.get(session_id)
        if stream is not None:
            stream.publisher_lost(relay, "rtmp closed")

    def publisher_info(self, session_id: int) -> dict[str, str] | None:
        """Who feeds the session now: {"kind": whip | rtmp | demo, "since": ISO 8601}, and for
        WHIP its "resource" (a host console tells its own publisher from another device's)."""
        stream = self.streams.get(session_id)
        pub = stream.publisher if stream is not None else None
        if pub is None:
            return None
        info = {"kind": pub.kind, "since": pub.since.isoformat()}
        if pub.kind == "whip":
            info["resource"] = f"/whip/{session_id}/{pub.resource_id}"
        return info

    def publisher_resource(self, session_id: int) -> str | None:
        stream = self.streams.get(session_id)
        return stream.publisher.resource_id if stream is not None and stream.publisher else None

    async def kick(self, session_id: int, reason: str) -> bool:
        """Stop the session's publisher now (its key was rotated, its host lost the right to
        stream). Viewers stay for the grace window; True if there was one."""
        async with self.publish_lock(session_id):
            stream = self.streams.get(session_id)
            pub = stream.publisher if stream is not None else None
            if stream is None or pub is None:
                return False
            stream.publisher_lost(pub, reason)
            await pub.close()
        log.info("publisher of session %s stopped (%s)", session_id, reason)
        return True

    def on_user_revoked(self, user_id: int) -> None:
        """A revocation listener (server/revocations.py): a host disabled or demoted loses the
        publishers of their sessions at once. Re-checked in SQL: a promotion also revokes."""
        sessions = [sid for sid, host in self._host_of.items()
                    if host == user_id and sid in self.streams]
        if sessions:
            task = asyncio.ensure_future(self._recheck_hosts(sessions))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _recheck_hosts(self, session_ids: list[int]) -> None:
        for session_id in session_ids:
            async with self.database.session() as db:
                allowed = await live_sessions.host_may_stream(db, session_id)
            if not allowed:
                await self.kick(session_id, "host revoked")

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
        # session as it is, so the host can try again; one that did is over. An RTMP
        # publisher's own grace (media/rtmp_server.py) ends its session and recording.
        stream = self.streams.get(session_id)
        had_media = stream is not None and stream.had_media and stream.lost_kind != "rtmp"
        task = asyncio.ensure_future(self.end_stream(session_id, end_session=had_media))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- a guest on camera (media/guest.py)
    def _live_stream(self, session_id: int) -> LiveStream:
        stream = self.streams.get(session_id)
        if stream is None or stream.closed or stream.publisher is None:
            raise NotLive(hls=f"/hls/{session_id}/index.m3u8")
        if not stream.publisher.feeds_taps:
            raise Conflict("连线需要网页或 WHIP 推流 / A guest needs the host on WebRTC (WHIP), "
                           "not RTMP", reason="guest_needs_whip")
        return stream

    def invite_guest(self, session_id: int, user_id: int) -> None:
        """The host names who may join on camera (replacing an earlier invite and guest)."""
        stream = self._live_stream(session_id)
        if self.guest_invites.get(session_id) != user_id:
            stream.end_guest()
        self.guest_invites[session_id] = user_id

    def guest_info(self, session_id: int) -> dict[str, Any] | None:
        user_id = self.guest_invites.get(session_id)
        if user_id is None:
            return None
        stream = self.streams.get(session_id)
        guest = stream.guest if stream is not None else None
        return {"user_id": user_id, "on_air": guest is not None and guest.frames > 0,
                "connected": guest is not None}

    async def publish_guest(self, session_id: int, user_id: int, offer: str) -> tuple[str, str]:
        """The invited guest's WHIP offer -> (resource id, answer). A second offer from the
        same guest (a reload) replaces the first."""
        if self.guest_invites.get(session_id) != user_id:
            raise Forbidden("你没有被邀请连线 / You are not invited on camera", reason="not_invited")
        async with self.publish_lock(session_id):
            self._live_stream(session_id)
            pc = self._new_pc()
            guest = GuestPeer(pc, user_id)

            @pc.on("track")
            def on_track(track: Any) -> None:
                guest.consume(track)

            try:
                await _negotiate(pc, offer)
                video, audio = self._ingest_transceivers(pc)
                prefer_ingest_video(video)
                if audio is not None:
                    only_opus(audio)
                await pc.setLocalDescription(await pc.createAnswer())
                stream = self._live_stream(session_id)
                if self.guest_invites.get(session_id) != user_id:
                    raise Forbidden("邀请已取消 / The invitation was withdrawn", reason="not_invited")
            except BaseException:
                await guest.close()
                raise
            stream.attach_guest(guest)
        log.info("session %s: guest %s connecting", session_id, user_id)
        return guest.resource_id, pc.localDescription.sdp

    def end_guest(self, session_id: int) -> bool:
        """The host ends the guest's part: invite withdrawn, the guest's peer closed at once."""
        invited = self.guest_invites.pop(session_id, None) is not None
        stream = self.streams.get(session_id)
        ended = stream.end_guest() if stream is not None else False
        return invited or ended

    async def end_stream(self, session_id: int, *, end_session: bool) -> None:
        self.guest_invites.pop(session_id, None)
        stream = self.streams.pop(session_id, None)
        self._publish_locks.pop(session_id, None)
        self._host_of.pop(session_id, None)
        if stream is None:
            return
        try:
            await stream.close()
            if end_session:
                async with self.database.session() as db:
                    session = await live_sessions.end_session(db, session_id, None)
                await self.events.publish(
                    DomainEvent("session_ended", session_id, SessionEnded(ended_at=session.ended_at))
                )
        finally:
            # After the event: other processes deciding who builds the replay still see us.
            if session_id not in self.streams:
                await self.ownership.release(session_id)
        log.info("stream of session %s ended", session_id)

    async def ownership_lost(self, session_id: int) -> None:
        """Another process owns the session now (this one was paused past its lease): stop
        here so the media never runs in two places; the session goes on over there."""
        if session_id in self.streams:
            log.warning("media of session %s is owned elsewhere now; stopping here", session_id)
            await self.end_stream(session_id, end_session=False)

    async def on_event(self, event: DomainEvent) -> None:
        """A session ended through the API (the host pressed "end"): stop its stream."""
        if event.kind == "session_ended" and event.session_id is not None:
            await self.end_stream(event.session_id, end_session=False)

    def request_keyframe(self, session_id: int) -> None:
        stream = self.streams.get(session_id)
        if stream is not None:
            stream.request_keyframe()

    # -- WHEP
    async def view(self, session_id: int, offer: str, address: str | None = None) -> tuple[str, str]:
        """A viewer's offer -> (resource id, answer). `address`: the client's, None if exempt
        from the per-address cap. The seat is taken before the first await and given back on
        every way out; a peer not connected within the deadline loses it."""
        stream = self.streams.get(session_id)
        if stream is None or "video" not in stream.fanouts:
            # Only now ask SQL (404 for no such session): a live stream implies its session,
            # and a crowd joining should not queue behind the database.
            async with self.database.session() as db:
                await live_sessions.get_session(db, session_id)
            raise NotLive(hls=f"/hls/{session_id}/index.m3u8")
        seat = self.seats.take(session_id, address)
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
            seat.release()
            await pc.close()
            raise
        viewer = ViewerPeer(pc, secrets.token_urlsafe(16), seat)
        for t, fanout in wanted:
            viewer.prepare(t, fanout)
        stream.add_viewer(viewer)
        viewer.deadline = asyncio.get_running_loop().call_later(
            self.config.connect_deadline_s, self._connect_deadline, stream, viewer)
        return viewer.resource_id, pc.localDescription.sdp

    @staticmethod
    def _connect_deadline(stream: LiveStream, viewer: ViewerPeer) -> None:
        viewer.deadline = None
        if not viewer.attached and stream.viewers.get(viewer.resource_id) is viewer:
            log.info("WHEP viewer of session %s never connected; seat freed", stream.session_id)
            stream.drop_viewer(viewer)

    async def stop_view(self, session_id: int, resource_id: str) -> None:
        stream = self.streams.get(session_id)
        viewer = stream.viewers.get(resource_id) if stream is not None else None
        if stream is None or viewer is None:
            raise ResourceGone()
        stream.drop_viewer(viewer)

    def viewer_count(self) -> int:
        """Seats taken: viewers, and offers still being answered."""
        return self.seats.taken

    async def close(self) -> None:
        """App shutdown: close every peer; taps get their final stop (sessions stay live)."""
        for stop in self._owned:
            await stop()
        for session_id in list(self.streams):
            await self.end_stream(session_id, end_session=False)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
