"""Low-Latency HLS (RFC 8216bis): a live stream's edge in memory, and blocking playlist reloads.

The recorder's thread cuts each segment into partial segments while writing it
(media/segment_writer.py); `LiveEdge` holds those of the last few segments, renders the live
playlist with EXT-X-PART / EXT-X-PRELOAD-HINT / EXT-X-SERVER-CONTROL, and lets a request wait
until the segment or part it names exists. It lives on the event loop of the process that owns
the stream (docs/LLHLS.md); every other process forwards to it (docs/CLUSTER.md).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from commerce.errors import DomainError, InvalidInput
from media.hls_playlist import date_time, target_duration
from media.segment_index import SegmentEntry
from media.segment_writer import PartReady

PART_FILES = re.compile(r"^part_(\d{6})_(\d{2})\.ts$")
# Parts are listed for the last complete segments this many (~3 target durations, as the spec
# asks) and kept one segment longer, for a player that read the playlist just before.
PARTS_LISTED_SEGMENTS = 3
PARTS_KEPT_SEGMENTS = PARTS_LISTED_SEGMENTS + 1
# A blocking request waits at most this many target durations (RFC 8216bis 6.2.5.2).
BLOCK_TARGETS = 3
# A segment has at most ~100 parts (MAX 2.5 s over a 0.1 s part target): two digits in names.
MAX_PART_INDEX = 99


def part_name(msn: int, index: int) -> str:
    return f"part_{msn:06d}_{index:02d}.ts"


class TooManyWaiters(DomainError):
    code = "hls_busy"
    status = 503
    default_message = "观看人数过多,请稍后重试 / Too many players waiting on this stream, retry shortly"


class NotYet(DomainError):
    code = "hls_not_yet"
    status = 503
    default_message = "该片段尚未生成,请稍后重试 / That segment or part is not ready yet, retry shortly"


@dataclass(frozen=True)
class Directive:
    """The delivery directives of a playlist request (`_HLS_msn`, `_HLS_part`)."""

    msn: int
    part: int | None


def parse_directive(query: Mapping[str, str]) -> Directive | None:
    """None for a plain request; InvalidInput (400) for malformed directives."""
    msn_raw, part_raw = query.get("_HLS_msn"), query.get("_HLS_part")
    if msn_raw is None:
        if part_raw is not None:
            raise InvalidInput("_HLS_part 需要 _HLS_msn / _HLS_part needs _HLS_msn", field="_HLS_part")
        return None
    msn = _directive_int(msn_raw, "_HLS_msn", 10**9)
    part = None if part_raw is None else _directive_int(part_raw, "_HLS_part", MAX_PART_INDEX)
    return Directive(msn, part)


def _directive_int(raw: str, name: str, hi: int) -> int:
    if not (raw.isascii() and raw.isdigit()) or int(raw) > hi:
        raise InvalidInput(f"{name} 必须是 0 到 {hi} 的整数 / {name} must be 0..{hi}", field=name)
    return int(raw)


class LiveEdge:
    """The live end of one stream: complete segments of the window, recent parts, waiters."""

    def __init__(self, part_target_s: float, window: int, max_waiters: int,
                 entries: Sequence[SegmentEntry] = ()) -> None:
        self.part_target_s = part_target_s
        self.window = window
        self.max_waiters = max_waiters
        self.entries: list[SegmentEntry] = list(entries[-window:])
        self.next_msn = entries[-1].seq + 1 if entries else 1
        self.parts: dict[int, list[PartReady]] = {}
        self.ended = False
        self.waiters = 0
        self._released = False
        self._changed = asyncio.Event()
        self._text: str | None = None
        self._bytes: bytes | None = None

    # --- fed by the recorder (on the loop) ----------------------------------------------------

    def add_part(self, part: PartReady) -> None:
        parts = self.parts.setdefault(part.msn, [])
        if part.index == 0 or part.index != len(parts):
            # A segment that was dropped (closing it failed) left parts under a number its
            # successor now takes: those parts are of no segment.
            parts.clear()
            if part.index != 0:
                return
        parts.append(part)
        self.ended = False
        self._touch()

    def add_segment(self, entry: SegmentEntry) -> None:
        self.entries.append(entry)
        del self.entries[:-self.window]
        self.next_msn = entry.seq + 1
        for msn in [m for m in self.parts if m <= entry.seq - PARTS_KEPT_SEGMENTS]:
            del self.parts[msn]
        self._touch()

    def end(self) -> None:
        """The stream is over: the playlist gets EXT-X-ENDLIST; every waiter is answered."""
        self.ended = True
        self.parts.pop(self.next_msn, None)
        self._touch()

    def release_waiters(self) -> None:
        """The server is stopping: every held request is answered now, and any later one at
        once, with 503 and Retry-After (as at the hold's timeout). What it waits for would come
        from a process going away, and the server's stop waits for every request in flight."""
        self._released = True
        self._touch()

    def _touch(self) -> None:
        self._text = self._bytes = None
        self._changed.set()
        self._changed = asyncio.Event()

    # --- positions ----------------------------------------------------------------------------

    @property
    def last_msn(self) -> int:
        """The media sequence number of the last complete segment (0: none yet)."""
        return self.next_msn - 1

    def position(self) -> tuple[int, int]:
        """(msn, part index) of the newest part; a complete segment whose parts are not known
        (written before this process started) counts as having all of them."""
        open_parts = self.parts.get(self.next_msn)
        if open_parts:
            return self.next_msn, len(open_parts) - 1
        known = self.parts.get(self.last_msn)
        return self.last_msn, (len(known) - 1 if known else MAX_PART_INDEX)

    def advance_part_limit(self) -> int:
        # RFC 8216bis 6.2.5.2: 3 / PART-TARGET parts when the target is under 1 s, else 3.
        return int(3 / self.part_target_s) if self.part_target_s < 1 else 3

    def check_directive(self, directive: Directive) -> None:
        """400 for a request too far ahead of the live edge (it would only hold a connection)."""
        if directive.msn > self.last_msn + 2:
            raise InvalidInput("_HLS_msn 超前太多 / _HLS_msn is too far ahead of the live edge",
                               field="_HLS_msn", last_msn=self.last_msn)
        msn, part = self.position()
        if (directive.part is not None and directive.msn == msn
                and directive.part > part + self.advance_part_limit()):
            raise InvalidInput("_HLS_part 超前太多 / _HLS_part is too far ahead of the live edge",
                               field="_HLS_part")

    def satisfies(self, directive: Directive) -> bool:
        if self.ended:
            return True
        if directive.part is None:
            return self.last_msn >= directive.msn
        return self.position() >= (directive.msn, directive.part)

    def part(self, msn: int, index: int) -> PartReady | None:
        parts = self.parts.get(msn)
        return parts[index] if parts is not None and index < len(parts) else None

    def is_next_part(self, msn: int, index: int) -> bool:
        """The part the playlist's preload hint names (a player may ask for it early)."""
        return not self.ended and (msn, index) == (self.next_msn, len(self.parts.get(msn, [])))

    @property
    def block_timeout_s(self) -> float:
        return BLOCK_TARGETS * self._target_duration()

    def _target_duration(self) -> int:
        return target_duration([e.duration for e in self.entries])

    # --- waiting ------------------------------------------------------------------------------

    async def wait_playlist(self, directive: Directive) -> str:
        """The playlist once it holds what `directive` names; NotYet (503) after the timeout."""
        return (await self.wait_playlist_bytes(directive)).decode()

    async def wait_playlist_bytes(self, directive: Directive | None) -> bytes:
        """`wait_playlist` as the bytes served (encoded once per change); None: no waiting."""
        if directive is not None:
            self.check_directive(directive)
            await self._wait(lambda: self.satisfies(directive))
        self.render()
        assert self._bytes is not None
        return self._bytes

    async def wait_part(self, msn: int, index: int) -> PartReady | None:
        """The part, waiting for it when it is the next one; None when it is not (any more)."""
        found = self.part(msn, index)
        if found is not None or not self.is_next_part(msn, index):
            return found
        # Until it exists, or its segment completed without it (the part was not needed).
        await self._wait(lambda: self.part(msn, index) is not None or self.ended
                         or msn < self.next_msn)
        return self.part(msn, index)

    async def _wait(self, ready: Callable[[], bool]) -> None:
        if ready():
            return
        if self.waiters >= self.max_waiters:
            raise TooManyWaiters(retry_after=1)
        self.waiters += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.block_timeout_s
        try:
            while not ready():
                remaining = deadline - loop.time()
                if remaining <= 0 or self._released:
                    raise NotYet(retry_after=1)
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    raise NotYet(retry_after=1) from None
        finally:
            self.waiters -= 1

    # --- the playlist -------------------------------------------------------------------------

    def render(self) -> str:
        """Rendered once per change, whatever the number of players asking."""
        if self._text is None:
            self._text = self._render()
            self._bytes = self._text.encode()
        return self._text

    def _render(self) -> str:
        shown = self.entries
        first_seq = shown[0].seq if shown else self.next_msn
        disc_seq = shown[0].disc_seq - shown[0].disc if shown else 0
        pt = self.part_target_s
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:6",
            f"#EXT-X-TARGETDURATION:{self._target_duration()}",
            # Players start this far behind the newest part (the spec asks for >= 3 parts).
            f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={3 * pt:.3f}",
            f"#EXT-X-PART-INF:PART-TARGET={pt:.3f}",
            f"#EXT-X-MEDIA-SEQUENCE:{first_seq}",
            f"#EXT-X-DISCONTINUITY-SEQUENCE:{disc_seq}",
            "#EXT-X-INDEPENDENT-SEGMENTS",
        ]
        listed_from = self.last_msn - PARTS_LISTED_SEGMENTS + 1
        for entry in shown:
            if entry.disc:
                lines.append("#EXT-X-DISCONTINUITY")
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{date_time(entry.wall)}")
            if entry.seq >= listed_from:
                lines.extend(self._part_lines(self.parts.get(entry.seq, [])))
            lines.append(f"#EXTINF:{entry.duration:.3f},")
            lines.append(entry.file)
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
            return "\n".join(lines) + "\n"
        open_parts = self.parts.get(self.next_msn, [])
        if open_parts:
            if open_parts[0].disc:
                lines.append("#EXT-X-DISCONTINUITY")
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{date_time(open_parts[0].wall)}")
            lines.extend(self._part_lines(open_parts))
        hint = part_name(self.next_msn, len(open_parts))
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{hint}"')
        return "\n".join(lines) + "\n"

    @staticmethod
    def _part_lines(parts: Sequence[PartReady]) -> list[str]:
        return [f'#EXT-X-PART:DURATION={p.duration:.3f},URI="{part_name(p.msn, p.index)}"'
                + (",INDEPENDENT=YES" if p.independent else "") for p in parts]
