"""A live stream: one session's publisher (across reconnects), its viewers, fan-outs and taps."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from media.guest import AudioMixer, Composer, GuestPeer
from media.keyframes import KeyframeThrottle
from media.publisher import CONNECT_TIMEOUT_S, SILENT_LOST_S, FrameTimeline, PublisherPeer
from media.rtp_forward import RtpFanout
from media.tap import AUDIO_TIME_BASE_HZ, VIDEO_TIME_BASE_HZ, EncodedPacket, PublisherTaps, StreamInfo
from media.viewer import ViewerPeer

log = logging.getLogger(__name__)

TICK_S = 0.5  # sender-report refresh and publisher liveness check


class Ingest(Protocol):
    """What feeds a stream: a WHIP peer (media/publisher.py) or an RTMP relay (media/rtmp_relay.py)."""

    resource_id: str
    kind: str
    since: datetime
    created: float
    last_rtp: float
    active: bool
    feeds_taps: bool

    def send_pli(self) -> bool: ...

    async def close(self) -> None: ...

    async def hand_over(self) -> None:
        """Stop because a newer publisher takes the session (no grace, no end)."""


class LiveStream:
    """Lives from a session's first publish until DELETE, grace expiry, session end or shutdown."""

    def __init__(
        self, session_id: int, taps: PublisherTaps, grace_s: float,
        on_grace_expired: Callable[[int], None],
    ) -> None:
        self.session_id = session_id
        self.t0 = time.monotonic()
        self.taps = taps
        self.tap = taps.open_session(session_id)
        self.grace_s = grace_s
        self.publisher: Ingest | None = None
        self.lost_kind = ""  # the kind of the publisher whose drop started the grace
        self.viewers: dict[str, ViewerPeer] = {}
        self.fanouts: dict[str, RtpFanout] = {}
        self.timelines = {
            "video": FrameTimeline("video", VIDEO_TIME_BASE_HZ, self.t0),
            "audio": FrameTimeline("audio", AUDIO_TIME_BASE_HZ, self.t0),
        }
        self.video_codec = ""
        self.last_resource_id = ""
        self.video_profile: str | None = None  # H.264 profile-level-id, for viewers' answers
        self.throttle = KeyframeThrottle(self._send_pli)
        self.guest: GuestPeer | None = None
        self.composer: Composer | None = None  # runs while a guest is on and sends pictures
        self.mixer: AudioMixer | None = None  # runs while a guest is on and sends her voice
        self.closed = False
        self._on_grace_expired = on_grace_expired
        self._grace: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._last_periodic_key = time.monotonic()
        self._ticker = asyncio.ensure_future(self._tick())

    # -- publisher
    def attach_publisher(self, pub: PublisherPeer, video: Any, audio: Any | None, video_codec: str) -> None:
        """Route a freshly negotiated publisher into this stream (before it can connect)."""
        self._replace_publisher(pub)
        # A new host source (maybe another codec): the composer restarts at the guest's next
        # picture, from the new publisher's first keyframe.
        self._stop_composer()
        self._stop_mixer()
        if self.video_codec and video_codec != self.video_codec:
            # Viewers negotiated the old codec; they must come back (their players reconnect).
            for viewer in list(self.viewers.values()):
                self.drop_viewer(viewer)
            self.fanouts.clear()
        self.video_codec = video_codec
        kinds = [("video", video, video_codec, VIDEO_TIME_BASE_HZ)]
        if audio is not None:
            kinds.append(("audio", audio, "opus", AUDIO_TIME_BASE_HZ))
        for kind, transceiver, codec, clock in kinds:
            fanout = self.fanouts.get(kind)
            if fanout is None:
                fanout = self.fanouts[kind] = RtpFanout(kind, clock, codec)
                fanout.on_keyframe_needed = self.throttle.request
            self.timelines[kind].new_source(codec)
            pub.hook(transceiver, fanout, self.timelines[kind], self.tap)

        @pub.pc.on("connectionstatechange")
        def on_state() -> None:
            if pub.pc.connectionState in ("failed", "closed"):
                self.publisher_lost(pub, "connection " + pub.pc.connectionState)

        self.tap.start(StreamInfo(self.session_id, video_codec, "opus" if audio is not None else None))

    def attach_relay(self, relay: Any) -> None:
        """An RTMP publisher takes the stream: its H.264 and Opus (made once, see
        media/rtmp_relay.py) go to the same fan-outs. Its recording is the RTMP side's own."""
        self._replace_publisher(relay)
        self.end_guest()  # an RTMP host's video never reaches the composer
        if self.video_codec and self.video_codec != "h264":
            for viewer in list(self.viewers.values()):
                self.drop_viewer(viewer)
            self.fanouts.clear()
        self.video_codec = "h264"
        for kind, clock, codec in (("video", VIDEO_TIME_BASE_HZ, "h264"),
                                   ("audio", AUDIO_TIME_BASE_HZ, "opus")):
            fanout = self.fanouts.get(kind)
            if fanout is None:
                fanout = self.fanouts[kind] = RtpFanout(kind, clock, codec)
                fanout.on_keyframe_needed = self.throttle.request
        relay.bind(self)

    def _replace_publisher(self, pub: Ingest) -> None:
        """The newest publisher with the session's key wins (a phone reconnecting, the host
        taking over from the demo): the previous one stops feeding at once and is closed."""
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        old, self.publisher = self.publisher, pub
        self.last_resource_id = pub.resource_id
        if old is not None:
            old.active = False
            self._close_later(old.close())
            if old.feeds_taps:
                self.tap.stop(final=False)

    def publisher_lost(self, pub: Ingest, reason: str) -> None:
        """The publisher dropped: keep viewers and taps, wait `grace_s` for it to come back."""
        if pub is not self.publisher or self.closed:
            return
        self.publisher = None
        self.lost_kind = pub.kind
        pub.active = False
        self._close_later(pub.close())
        if pub.feeds_taps:
            self.tap.stop(final=False)
        log.info("publisher of session %s dropped (%s); grace %ss", self.session_id, reason, self.grace_s)
        self._grace = asyncio.get_running_loop().call_later(
            self.grace_s, self._on_grace_expired, self.session_id
        )

    @property
    def had_media(self) -> bool:
        return any(f.forwarded for f in self.fanouts.values())

    def _send_pli(self) -> bool:
        if self.composer is not None:
            self.composer.force_keyframe()
            return True
        return self.publisher is not None and self.publisher.send_pli()

    def _host_keyframe(self) -> None:
        if self.publisher is not None:
            self.publisher.send_pli()

    # -- a guest on camera (media/guest.py)
    def attach_guest(self, guest: GuestPeer) -> None:
        """The guest's peer, negotiated: composing starts with its first picture."""
        self.end_guest()
        self.guest = guest
        guest.on_frame = self._guest_frame
        guest.on_audio = self._guest_audio

        @guest.pc.on("connectionstatechange")
        def on_state() -> None:
            if guest.pc.connectionState in ("failed", "closed") and self.guest is guest:
                log.info("guest of session %s left (%s)", self.session_id, guest.pc.connectionState)
                self.end_guest()

    def _guest_frame(self, frame: Any) -> None:
        if self.guest is None or self.closed:
            return
        if self.composer is None and not self._start_composer():
            return
        assert self.composer is not None
        self.composer.guest_frame = frame

    def _guest_audio(self, frame: Any) -> None:
        if self.guest is None or self.closed:
            return
        if self.mixer is None:
            fanout = self.fanouts.get("audio")
            pub = self.publisher
            if fanout is None or pub is None or not pub.feeds_taps:
                return  # a host without a microphone: nothing to mix into
            mixer = AudioMixer(lambda rtp, packet: self._mixed(mixer, rtp, packet))
            self.mixer = mixer
            fanout.paused = True
            self.tap.divert["audio"] = mixer.push
        self.mixer.guest_frame(frame)

    def _mixed(self, mixer: AudioMixer, rtp: list[Any], packet: EncodedPacket) -> None:
        if mixer is not self.mixer:
            return
        fanout = self.fanouts.get("audio")
        if fanout is not None:
            for p in rtp:
                fanout.forward(p)
        self.tap.to_sinks(packet, "audio")

    def _stop_mixer(self) -> None:
        if self.mixer is None:
            return
        self.mixer = None
        self.tap.divert.pop("audio", None)
        fanout = self.fanouts.get("audio")
        if fanout is not None:
            fanout.paused = False

    def _start_composer(self) -> bool:
        fanout = self.fanouts.get("video")
        pub = self.publisher
        if fanout is None or pub is None or not pub.feeds_taps or not self.video_codec:
            return False
        composer = Composer(self.session_id, self.video_codec, asyncio.get_running_loop(),
                            lambda rtp, packet: self._composed(composer, rtp, packet),
                            self._host_keyframe)
        self.composer = composer
        fanout.paused = True
        self.tap.divert["video"] = composer.push
        self.tap.video_waits_key = True
        composer.start()
        log.info("session %s: guest on camera, composing (%s)", self.session_id, self.video_codec)
        return True

    def _composed(self, composer: Composer, rtp: list[Any], packet: EncodedPacket) -> None:
        if composer is not self.composer:
            return  # a late frame from a composer already stopped
        fanout = self.fanouts.get("video")
        if fanout is not None:
            for p in rtp:
                fanout.forward(p)
        self.tap.to_sinks(packet, "video")

    def _stop_composer(self) -> None:
        composer, self.composer = self.composer, None
        if composer is None:
            return
        composer.stop()
        self.tap.divert.pop("video", None)
        self.tap.video_waits_key = True
        fanout = self.fanouts.get("video")
        if fanout is not None:
            fanout.paused = False
        self._host_keyframe()  # viewers, HLS and the recording go back to the host's picture
        self._close_later(asyncio.to_thread(composer.join))

    def end_guest(self) -> bool:
        """The guest's part is over (the host ended it, or the guest left): its peer is closed
        now and the host's own picture comes back. False if no guest was on."""
        guest, self.guest = self.guest, None
        self._stop_composer()
        self._stop_mixer()
        if guest is None:
            return False
        guest.on_frame = lambda frame: None
        self._close_later(guest.close())
        return True

    def request_keyframe(self) -> None:
        self.throttle.request()

    # -- viewers
    def add_viewer(self, viewer: ViewerPeer) -> None:
        self.viewers[viewer.resource_id] = viewer

        @viewer.pc.on("connectionstatechange")
        def on_state() -> None:
            state = viewer.pc.connectionState
            if state == "connected":
                viewer.attach()
            elif state in ("failed", "closed"):
                self.drop_viewer(viewer)

    def drop_viewer(self, viewer: ViewerPeer) -> None:
        if self.viewers.pop(viewer.resource_id, None) is not None:
            viewer.detach()
            viewer.release()
            self._close_later(viewer.pc.close())

    # -- periodic work
    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            for fanout in self.fanouts.values():
                fanout.sync_reports()
            pub = self.publisher
            now = time.monotonic()
            if pub is not None and pub.last_rtp and now - pub.last_rtp > SILENT_LOST_S:
                self.publisher_lost(pub, "silent")
            elif pub is not None and not pub.last_rtp and now - pub.created > CONNECT_TIMEOUT_S:
                self.publisher_lost(pub, "never connected")
            if (self.taps.has_sinks(self.session_id)
                    and now - self._last_periodic_key >= self.taps.keyframe_interval_s):
                # HLS cuts segments at keyframes: ask for one every keyframe_interval_s.
                self._last_periodic_key = now
                self.throttle.request()

    def _close_later(self, closing: Any) -> None:
        task = asyncio.ensure_future(closing)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """The stream is over: close every peer, give the taps their final stop."""
        if self.closed:
            return
        self.closed = True
        self._ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._ticker
        if self._grace is not None:
            self._grace.cancel()
        self.throttle.close()
        self.end_guest()
        peers: list[Any] = [v.close() for v in self.viewers.values()]
        self.viewers.clear()
        if self.publisher is not None:
            self.publisher.active = False
            peers.append(self.publisher.close())
            self.publisher = None
        await asyncio.gather(*peers, return_exceptions=True)
        while self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)
        self.taps.close_session(self.session_id)
