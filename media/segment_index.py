"""A recording's index (`index.jsonl`): its complete segments, numbered once and for good.

Each line is one complete segment. Its media sequence number (`seq`) and its discontinuity
sequence number (`disc_seq`, RFC 8216 6.2.1) are fixed when it is appended and never change:
a publisher reconnect, a restart of the process or a segment sliding out of the live window
renumbers nothing, so every live playlist agrees with every earlier one. A discontinuity marks
a segment that follows a break in its input (a reconnect, a restart); the first segment of a
recording follows nothing and is never one.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

INDEX_NAME = "index.jsonl"


@dataclass(frozen=True)
class SegmentEntry:
    """One complete segment. `start` is recording time (s): where it sits in the replay.
    `wall` is when its first picture was live (unix s): product pins map through it.
    `disc_seq` counts the discontinuities of the recording up to and including this one."""

    seq: int
    file: str
    duration: float
    start: float
    wall: float
    disc: bool = False
    disc_seq: int = 0


def read_index(directory: Path) -> list[SegmentEntry]:
    """Every complete line in order, whether or not its file is still there; a torn last line
    (SIGKILL mid-append) is ignored. Discontinuity numbers are counted over every line, so
    they come out the same on every read (indexes written before `disc_seq` existed too)."""
    path = directory / INDEX_NAME
    entries: list[SegmentEntry] = []
    if not path.exists():
        return entries
    disc_seq = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = SegmentEntry(**json.loads(line))
        except (ValueError, TypeError):
            continue
        disc = entry.disc and bool(entries)
        disc_seq += disc
        entries.append(replace(entry, disc=disc, disc_seq=disc_seq))
    return entries


def load_index(directory: Path) -> list[SegmentEntry]:
    """The complete segments whose files exist, in order."""
    return [e for e in read_index(directory) if (directory / e.file).exists()]


class SegmentIndex:
    """Appends segments to the index durably (fsynced) and numbers them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        lines = read_index(directory)
        self.entries = [e for e in lines if (directory / e.file).exists()]
        last = lines[-1] if lines else None
        self.next_seq = last.seq + 1 if last is not None else 1
        self._disc_seq = last.disc_seq if last is not None else 0
        self._empty = last is None

    @property
    def empty(self) -> bool:
        """Nothing recorded yet: the next segment starts the recording."""
        return self._empty

    def append(self, file: str, duration: float, start: float, wall: float,
               disc: bool) -> SegmentEntry:
        """Record a complete segment (its file already in place under `file`)."""
        disc = disc and not self._empty
        self._disc_seq += disc
        entry = SegmentEntry(seq=self.next_seq, file=file, duration=round(duration, 6),
                             start=round(start, 6), wall=round(wall, 6), disc=disc,
                             disc_seq=self._disc_seq)
        with open(self.directory / INDEX_NAME, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(asdict(entry)) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.entries.append(entry)
        self.next_seq += 1
        self._empty = False
        return entry
