"""Local rooms of one process: ordered, batched delivery of room events and coalesced state.

Events arrive from the pub/sub listener already in sequence order (append.lua publishes
atomically); a room notices a hole (the listener was down) and fills it from the history stream
before going on. Delivery is batched: all comments of the last ≤100 ms go out as one `comments`
frame; other events keep their place in the order as their own frames. `state` snapshots go out
at most every 100 ms per room, latest value wins. Every frame is encoded once per process and
written to each member by `DirectSockets.send` (no task per recipient).

A member joins in "joining" mode: frames for it are held while its backfill (missed events or
recent comments, then the state snapshot) is read and sent, then released in order. Its backfill
covers exactly the events up to the room's `delivered` mark at the moment it was added, so
nothing is lost or sent twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from commerce.accounts import Principal
from infra.background import cancel_and_wait
from realtime.history import Event, RoomHistory
from realtime.state import stamped, wire_comment
from realtime.transport import DirectSockets, Frame

log = logging.getLogger(__name__)

BATCH_S = 0.1
STATE_PERIOD_S = 0.1
LIVE = "/live"


@dataclass(eq=False)
class Member:
    sid: str
    room: int
    socket: Any  # engineio AsyncSocket
    principal: Principal | None
    joining: bool = True
    held: list[tuple[Frame, int]] = field(default_factory=list)
    gone: bool = False

    @property
    def user_id(self) -> int | None:
        return self.principal.user_id if self.principal else None


def frames_for(events: list[Event], namespace: str = LIVE) -> list[tuple[Frame, int]]:
    """Consecutive comments become one `comments` frame; any other event is its own frame."""
    frames: list[tuple[Frame, int]] = []
    comments: list[dict[str, Any]] = []
    for event in events:
        if event["ev"] == "comment":
            comments.append(wire_comment(event))
            continue
        body = {k: v for k, v in event.items() if k != "ev"}
        if comments:
            frames.append((Frame(namespace, "comments", comments), 0))
            comments = []
        frames.append((Frame(namespace, event["ev"], body), 0))
    if comments:
        frames.append((Frame(namespace, "comments", comments), 0))
    return frames


class LocalRoom:
    def __init__(self, room_id: int, rooms: Rooms) -> None:
        self.id = room_id
        self.rooms = rooms
        self.members: dict[str, Member] = {}
        self.ready = asyncio.Event()
        self.epoch: str | None = None
        self.received = 0  # last seq accepted from the channel (or a gap fill)
        self.delivered = 0  # last seq turned into frames
        self._held_input: list[tuple[str, list[Event]]] = []
        self._filling = False
        self._pending: list[Event] = []
        self._last_flush = 0.0
        self._flush_handle: asyncio.Handle | None = None
        self.state: dict[str, Any] | None = None
        self._state_sent_at = 0.0
        self._state_handle: asyncio.Handle | None = None

    # --- sequencing ----------------------------------------------------------------------
    def start(self, epoch: str | None, seq: int) -> None:
        self.epoch, self.received, self.delivered = epoch, seq, seq
        self.ready.set()
        held, self._held_input = self._held_input, []
        for held_epoch, events in held:
            self.on_events(held_epoch, events)

    def on_events(self, epoch: str, events: list[Event]) -> None:
        if not self.ready.is_set() or self._filling:
            self._held_input.append((epoch, events))
            return
        if epoch != self.epoch:
            self._epoch_changed(epoch, events)
            return
        for index, event in enumerate(events):
            seq = int(event["seq"])
            if seq <= self.received:
                continue
            if seq > self.received + 1:
                self._held_input.append((epoch, events[index:]))
                self.fill_gap(seq - 1)
                return
            self.received = seq
            self._pending.append(event)
        self._schedule_flush()

    def fill_gap(self, upto: int) -> None:
        """Read (received, upto] from history, then continue with whatever arrived meanwhile."""
        if self._filling or upto <= self.received or not self.ready.is_set():
            return
        self._filling = True
        self.rooms.gap_fills += 1
        self.rooms.spawn(self._fill(upto))

    async def _fill(self, upto: int) -> None:
        try:
            events = await self.rooms.history.between(self.id, self.received, upto)
        except Exception:
            # Leave the hole open and what came after it held: going on past it would lose those
            # events for every member here, for good (bench/chaos.py saw it as Redis restarted).
            # The next event, or the watchdog's head check within a second, tries again.
            log.warning("history read failed while filling a gap; will retry", exc_info=True,
                        extra={"room": self.id})
            self._filling = False
            return
        for event in events:
            if int(event["seq"]) > self.received:
                self._pending.append(event)
        self.received = max(self.received, upto)
        self._filling = False
        self._schedule_flush()
        held, self._held_input = self._held_input, []
        for epoch, batch in held:
            self.on_events(epoch, batch)

    def _epoch_changed(self, epoch: str, events: list[Event]) -> None:
        # Redis lost the room's history: every client must reload; numbering starts again.
        log.warning("room epoch changed", extra={"room": self.id})
        self.flush()
        self.epoch = epoch
        self.received = self.delivered = int(events[0]["seq"]) - 1
        self.fanout(Frame(LIVE, "reload", {"reason": "epoch_changed", "epoch": epoch}))
        self.on_events(epoch, events)

    # --- batching ------------------------------------------------------------------------
    def _schedule_flush(self) -> None:
        if self._flush_handle is not None or not self._pending:
            return
        delay = max(0.0, self._last_flush + BATCH_S - time.monotonic())
        self._flush_handle = asyncio.get_running_loop().call_later(delay, self.flush)

    def flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._pending:
            return
        events, self._pending = self._pending, []
        self._last_flush = time.monotonic()
        self.delivered = int(events[-1]["seq"])
        for frame, _v in frames_for(events):
            self.fanout(frame)

    # --- state ---------------------------------------------------------------------------
    def on_state(self, state: dict[str, Any]) -> None:
        if self.state is not None and state["v"] <= self.state["v"]:
            return
        self.state = state
        if self._state_handle is None:
            delay = max(0.0, self._state_sent_at + STATE_PERIOD_S - time.monotonic())
            self._state_handle = asyncio.get_running_loop().call_later(delay, self._send_state)

    def _send_state(self) -> None:
        self._state_handle = None
        if self.state is None:
            return
        self._state_sent_at = time.monotonic()
        payload = stamped(self.state, int(time.time() * 1000))
        self.fanout(Frame(LIVE, "state", payload), int(self.state["v"]))

    # --- delivery ------------------------------------------------------------------------
    def fanout(self, frame: Frame, version: int = 0) -> None:
        sockets = self.rooms.sockets
        sent = 0
        for member in list(self.members.values()):
            if member.joining:
                member.held.append((frame, version))
            elif sockets.send(member.socket, frame):
                sent += 1
        self.rooms.frames_sent += sent
        if sockets.slow:
            self.rooms.spawn(sockets.drop_slow())

    def send_to(self, member: Member, frame: Frame) -> None:
        """One frame to one member, in order with everything else it receives."""
        if member.joining:
            member.held.append((frame, 0))
        elif self.rooms.sockets.send(member.socket, frame):
            self.rooms.frames_sent += 1

    def release(self, member: Member, backfill: list[Frame], state_version: int) -> None:
        """End of a join: backfill first, then what was held, minus state older than the backfill."""
        sockets = self.rooms.sockets
        for frame in backfill:
            sockets.send(member.socket, frame)
        for frame, version in member.held:
            if version and version <= state_version:
                continue
            sockets.send(member.socket, frame)
        self.rooms.frames_sent += len(backfill) + len(member.held)
        member.held = []
        member.joining = False


class Rooms:
    """Every local room of this process, keyed by live session id."""

    def __init__(self, history: RoomHistory, sockets: DirectSockets,
                 on_viewers: Callable[[int], None]) -> None:
        self.history = history
        self.sockets = sockets
        self.rooms: dict[int, LocalRoom] = {}
        self.members: dict[str, Member] = {}
        self._on_viewers = on_viewers
        self._tasks: set[asyncio.Task[Any]] = set()
        self.frames_sent = 0
        self.gap_fills = 0

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def room(self, room_id: int) -> LocalRoom:
        """The local room, started from the history head; callers `add` right after (no await)."""
        while True:
            room = self.rooms.get(room_id)
            if room is None:
                room = self.rooms[room_id] = LocalRoom(room_id, self)
                try:
                    position = await self.history.start_room(room_id)
                except BaseException:
                    self.rooms.pop(room_id, None)
                    # Joiners already waiting on this room would wait forever: wake them, they
                    # find it gone and start a new one (or fail on their own, and retry).
                    room.ready.set()
                    raise
                room.start(position.epoch, position.seq)
            await room.ready.wait()
            # The last member may have left (and the room been dropped) while we waited.
            if self.rooms.get(room_id) is room:
                return room

    def add(self, room: LocalRoom, member: Member) -> int:
        """Register a joining member; returns the seq its backfill must reach."""
        room.members[member.sid] = member
        self.members[member.sid] = member
        self._on_viewers(room.id)
        return room.delivered

    def remove(self, sid: str) -> Member | None:
        member = self.members.pop(sid, None)
        if member is None:
            return None
        member.gone = True
        room = self.rooms.get(member.room)
        if room is not None:
            room.members.pop(sid, None)
            self._on_viewers(room.id)
            if not room.members:
                room.flush()
                del self.rooms[room.id]
        return member

    def count(self, room_id: int) -> int:
        room = self.rooms.get(room_id)
        return len(room.members) if room else 0

    def on_events(self, room_id: int, epoch: str, events: list[Event]) -> None:
        room = self.rooms.get(room_id)
        if room is not None:
            room.on_events(epoch, events)

    def on_state(self, room_id: int, state: dict[str, Any]) -> None:
        room = self.rooms.get(room_id)
        if room is not None:
            room.on_state(state)

    def user_members(self, room_id: int, user_id: int) -> list[Member]:
        room = self.rooms.get(room_id)
        if room is None:
            return []
        return [m for m in room.members.values() if m.user_id == user_id]

    async def check_heads(self) -> None:
        """Compare each room with the history head: fills gaps a dead listener left behind."""
        ids = [rid for rid, room in self.rooms.items() if room.ready.is_set()]
        if not ids:
            return
        heads = await self.history.heads(ids)
        for rid, seq in zip(ids, heads, strict=True):
            room = self.rooms.get(rid)
            if room is not None and seq > room.received:
                room.fill_gap(seq)

    async def close(self) -> None:
        for task in list(self._tasks):
            await cancel_and_wait(task)
