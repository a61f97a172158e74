"""Replay state in SQL: survives restarts, so an interrupted build resumes and the list stays."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from commerce.base import Base, as_utc, utcnow


class ReplayStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"
    EMPTY = "empty"  # the session ended without any recorded media


class Replay(Base):
    __tablename__ = "replays"

    session_id: Mapped[int] = mapped_column(ForeignKey("live_sessions.id"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default=ReplayStatus.PENDING.value, index=True)
    percent: Mapped[int] = mapped_column(Integer, default=0)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    # Recording segments the last successful build used: a later build with more is a rebuild.
    segments_used: Mapped[int] = mapped_column(Integer, default=0)
    builds: Mapped[int] = mapped_column(Integer, default=0)
    chapters: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    thumbnails: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    has_poster: Mapped[bool] = mapped_column(default=False)
    error: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    def public_dict(self) -> dict[str, Any]:
        base = f"/replays/{self.session_id}"
        ready = self.status == ReplayStatus.READY.value
        return {
            "session_id": self.session_id,
            "status": self.status,
            "percent": self.percent,
            "duration_s": round(self.duration_s, 3),
            "hls": f"{base}/index.m3u8" if ready else None,
            "poster": f"{base}/poster.jpg" if ready and self.has_poster else None,
            "thumbnails": [dict(t, url=f"{base}/{t['file']}") for t in self.thumbnails or []]
            if ready else [],
            "chapters": [dict(c, clip_url=f"{base}/{c['clip']}") for c in self.chapters or []]
            if ready else [],
            "error": self.error or None,
            "updated_at": as_utc(self.updated_at).isoformat(),
        }
