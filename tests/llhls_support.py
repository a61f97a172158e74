"""Reading LL-HLS playlists in tests and benches: segments, parts, hints and server control."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

_ATTR = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


def attributes(text: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in _ATTR.findall(text)}


@dataclass
class Part:
    msn: int
    uri: str
    duration: float
    independent: bool


@dataclass
class LowLatencyPlaylist:
    target_duration: int = 0
    part_target: float = 0.0
    server_control: dict[str, str] = field(default_factory=dict)
    media_sequence: int = 0
    discontinuity_sequence: int = 0
    segments: list[tuple[int, str, float]] = field(default_factory=list)  # (msn, uri, duration)
    parts: list[Part] = field(default_factory=list)
    preload_hint: str | None = None
    ended: bool = False
    dated: int = 0  # EXT-X-PROGRAM-DATE-TIME tags
    dates: dict[int, float] = field(default_factory=dict)  # msn -> its date (unix s)

    @property
    def last_part(self) -> Part | None:
        return self.parts[-1] if self.parts else None

    def part_index(self, part: Part) -> int:
        return [p for p in self.parts if p.msn == part.msn].index(part)


def parse(text: str) -> LowLatencyPlaylist:
    """Parts belong to the segment that follows them (the open one after the last EXTINF)."""
    out = LowLatencyPlaylist()
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U", text
    msn: int | None = None
    duration: float | None = None
    for line in lines[1:]:
        if line.startswith("#EXT-X-TARGETDURATION:"):
            out.target_duration = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-PART-INF:"):
            out.part_target = float(attributes(line.split(":", 1)[1])["PART-TARGET"])
        elif line.startswith("#EXT-X-SERVER-CONTROL:"):
            out.server_control = attributes(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            out.media_sequence = int(line.split(":", 1)[1])
            msn = out.media_sequence
        elif line.startswith("#EXT-X-DISCONTINUITY-SEQUENCE:"):
            out.discontinuity_sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            out.dated += 1
            stamp = line.split(":", 1)[1].replace("Z", "+00:00")
            if msn is not None:
                out.dates[msn] = datetime.fromisoformat(stamp).timestamp()
        elif line.startswith("#EXT-X-PART:"):
            attrs = attributes(line.split(":", 1)[1])
            assert msn is not None
            out.parts.append(Part(msn, attrs["URI"], float(attrs["DURATION"]),
                                  attrs.get("INDEPENDENT") == "YES"))
        elif line.startswith("#EXT-X-PRELOAD-HINT:"):
            attrs = attributes(line.split(":", 1)[1])
            assert attrs["TYPE"] == "PART"
            out.preload_hint = attrs["URI"]
        elif line.startswith("#EXTINF:"):
            duration = float(line[len("#EXTINF:"):].split(",", 1)[0])
        elif line == "#EXT-X-ENDLIST":
            out.ended = True
        elif line and not line.startswith("#"):
            assert msn is not None and duration is not None, text
            out.segments.append((msn, line, duration))
            msn, duration = msn + 1, None
    return out


def check(text: str) -> LowLatencyPlaylist:
    """What RFC 8216bis asks of an LL-HLS media playlist, as far as ours uses it."""
    pl = parse(text)
    assert pl.part_target > 0, text
    control = pl.server_control
    assert control.get("CAN-BLOCK-RELOAD") == "YES", text
    assert float(control["PART-HOLD-BACK"]) >= 3 * pl.part_target - 1e-9, text
    for part in pl.parts:
        assert 0 < part.duration <= pl.part_target, (part, text)
    # Parts are named by their segment's number and their place in it, numbered from 0.
    for part in pl.parts:
        assert part.uri == f"part_{part.msn:06d}_{pl.part_index(part):02d}.ts", (part, text)
        assert part.independent == (pl.part_index(part) == 0), (part, text)
    # A complete segment's listed parts add up to it (every part but the last >= 85% of target).
    for msn, _uri, duration in pl.segments:
        parts = [p for p in pl.parts if p.msn == msn]
        if parts:
            assert abs(sum(p.duration for p in parts) - duration) < 0.01, (msn, text)
            assert all(p.duration >= 0.85 * pl.part_target for p in parts[:-1]), (msn, text)
    for _msn, _uri, duration in pl.segments:
        assert round(duration) <= pl.target_duration, text
    if not pl.ended:
        assert pl.preload_hint is not None, text
        open_msn = pl.segments[-1][0] + 1 if pl.segments else pl.media_sequence
        open_parts = [p for p in pl.parts if p.msn == open_msn]
        assert pl.preload_hint == f"part_{open_msn:06d}_{len(open_parts):02d}.ts", text
    return pl
