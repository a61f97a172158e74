"""The app's recordings: one `Recorder` per session, the tap sink that feeds it, the hooks run
when a stream is over (replay building), and where each session's files live."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from media.ll_hls import LiveEdge
from media.record_tracks import CopyAnnexBTrack, Track, TranscodeAudioTrack, TranscodeVideoTrack
from media.recorder import Recorder
from media.segment_index import SegmentEntry, load_index
from media.segment_writer import PartReady
from media.tap import EncodedPacket, StreamInfo

log = logging.getLogger(__name__)

FinalHook = Callable[[int], Awaitable[None]]
SegmentHook = Callable[[int, SegmentEntry], None]


def session_dir(root: Path, session_id: int) -> Path:
    return root / str(session_id)


class Recordings:
    """Registry of recorders; hooks fire on the event loop, never on a worker thread."""

    def __init__(self, root: Path, loop: asyncio.AbstractEventLoop,
                 part_target_s: float | None = None, max_waiters: int = 1000,
                 live_window: int = 6, low_rendition: bool = False) -> None:
        """`part_target_s`: cut LL-HLS parts this long (None: plain HLS only);
        `max_waiters`: blocking playlist/part requests held per stream at once;
        `low_rendition`: also write a 360p rendition and a master playlist (media/low_rendition.py)."""
        self.low_rendition = low_rendition
        self.root = root
        self._loop = loop
        self._part_target_s = part_target_s
        self._max_waiters = max_waiters
        self._live_window = live_window
        self._recorders: dict[int, Recorder] = {}
        self._edges: dict[int, LiveEdge] = {}
        self.final_hooks: list[FinalHook] = []
        self.segment_hooks: list[SegmentHook] = []
        self._tasks: set[asyncio.Future[None]] = set()

    def recording_dir(self, session_id: int) -> Path:
        return session_dir(self.root, session_id) / "rec"

    def replay_dir(self, session_id: int) -> Path:
        return session_dir(self.root, session_id) / "replay"

    def segments(self, session_id: int) -> list[SegmentEntry]:
        return load_index(self.recording_dir(session_id))

    def is_publishing(self, session_id: int) -> bool:
        recorder = self._recorders.get(session_id)
        return recorder is not None and recorder.active

    def is_recording(self, session_id: int) -> bool:
        """Publishing, or its final segment is still being written: the final hooks will run."""
        recorder = self._recorders.get(session_id)
        return recorder is not None and (recorder.active or recorder.finishing)

    def recorder(self, session_id: int) -> Recorder:
        """The session's recorder; created (continuing any recording on disk) when first needed."""
        recorder = self._recorders.get(session_id)
        if recorder is None:
            directory = self.recording_dir(session_id)
            if self._part_target_s is not None:
                self._edges[session_id] = LiveEdge(self._part_target_s, self._live_window,
                                                   self._max_waiters, load_index(directory))
            recorder = Recorder(
                session_id, directory,
                on_segment=lambda entry: self._call_on_loop(self._segment_done, session_id, entry),
                on_stopped=lambda final: self._call_on_loop(self._stopped, session_id, final),
                part_target_s=self._part_target_s,
                on_part=lambda part: self._call_on_loop(self._part_done, session_id, part),
                low_rendition=self.low_rendition,
            )
            self._recorders[session_id] = recorder
        return recorder

    def live_edge(self, session_id: int) -> LiveEdge | None:
        """The LL-HLS edge of a stream recorded by this process (None: not here, or not LL)."""
        return self._edges.get(session_id)

    def _call_on_loop(self, fn: Callable[..., None], *args: object) -> None:
        # Called from recorder threads; the loop may already be closed at shutdown.
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _part_done(self, session_id: int, part: PartReady) -> None:
        edge = self._edges.get(session_id)
        if edge is not None:
            edge.add_part(part)

    def _segment_done(self, session_id: int, entry: SegmentEntry) -> None:
        edge = self._edges.get(session_id)
        if edge is not None:
            edge.add_segment(entry)
        for hook in self.segment_hooks:
            try:
                hook(session_id, entry)
            except Exception:
                log.exception("segment hook failed")

    def _stopped(self, session_id: int, final: bool) -> None:
        if not final:
            return
        edge = self._edges.get(session_id)
        if edge is not None:
            edge.end()
        recorder = self._recorders.get(session_id)
        if recorder is not None:
            recorder.finishing = False
        if recorder is not None and not recorder.active:
            # The stream is over: its thread goes (a late publisher gets a new recorder that
            # continues the same files), so ended sessions hold no threads.
            del self._recorders[session_id]
            self._edges.pop(session_id, None)
            task = asyncio.ensure_future(asyncio.to_thread(recorder.close))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        for hook in self.final_hooks:
            task = asyncio.ensure_future(hook(session_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def finish(self, session_id: int) -> None:
        """End a session's stream for good (the session ended): the playlist gets its ENDLIST."""
        recorder = self._recorders.get(session_id)
        if recorder is not None and recorder.active:
            recorder.stop_input(final=True)

    def release_waiters(self) -> None:
        """The server is stopping: held LL-HLS requests are answered now (see LiveEdge)."""
        for edge in self._edges.values():
            edge.release_waiters()

    async def close(self) -> None:
        """App shutdown: every recorder closes its open segment (a complete segment, not lost)."""
        recorders = list(self._recorders.values())
        self._recorders.clear()
        for edge in self._edges.values():
            edge.end()
        self._edges.clear()
        await asyncio.gather(*(asyncio.to_thread(r.close) for r in recorders))
        await asyncio.gather(*self._tasks, return_exceptions=True)


recordings_key = web.AppKey("recordings", Recordings)


def tracks_for(info: StreamInfo) -> dict[str, Track]:
    """H.264 is remuxed; VP8 costs the stream's one encode; Opus becomes AAC for HLS players."""
    tracks: dict[str, Track] = {}
    if info.video_codec == "h264":
        tracks["video"] = CopyAnnexBTrack()
    elif info.video_codec:
        tracks["video"] = TranscodeVideoTrack(info.video_codec)
    if info.audio_codec:
        tracks["audio"] = TranscodeAudioTrack(info.audio_codec)
    return tracks


class RecordingSink:
    """A `media.tap.PacketSink`: the WebRTC publisher's packets into the session's recorder."""

    def __init__(self, recordings: Recordings, session_id: int,
                 request_keyframe: Callable[[int], None]) -> None:
        self._recordings = recordings
        self._session_id = session_id
        self._request_keyframe = request_keyframe
        self._recorder: Recorder | None = None

    def on_start(self, info: StreamInfo) -> None:
        recorder = self._recordings.recorder(self._session_id)
        self._recorder = recorder
        loop = asyncio.get_running_loop()
        session_id = self._session_id

        def request() -> None:  # called on the recorder thread
            loop.call_soon_threadsafe(self._request_keyframe, session_id)

        recorder.start_input(tracks_for(info), "shared", request)

    def on_packet(self, packet: EncodedPacket, kind: str) -> None:
        if self._recorder is not None:
            self._recorder.push_packet(kind, packet)

    def on_stop(self, final: bool) -> None:
        if self._recorder is not None:
            self._recorder.stop_input(final)
