"""Moderation state of a live room, in Redis so every app process agrees.

Bans and mutes are keys with a TTL (timed) or without (permanent), indexed in a hash for the
console; slow mode and banned words live in the room's config. `comment_gate.lua` answers "may
this user send now?" in one round trip. Banned words are masked, not refused: the neighbour's
question still gets through, the word does not.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from commerce.accounts import Principal, Role
from commerce.errors import DomainError, RateLimited
from commerce.text import is_storable
from realtime.history import dumps, load_script, room_key

MAX_COMMENT_CHARS = 200
MAX_QUESTION_CHARS = 300
MAX_ANSWER_CHARS = 1000
MAX_BANNED_WORDS = 200
MAX_WORD_CHARS = 20
MAX_SLOW_MODE_S = 3600
MAX_SANCTION_S = 30 * 24 * 3600
# Per user per room: comments and questions allowed per window (slow mode comes on top).
COMMENT_RATE = (5, 10_000)
QUESTION_RATE = (3, 60_000)
MOD_TTL_S = 30 * 24 * 3600


class Muted(DomainError):
    code = "muted"
    status = 403
    default_message = "你已被禁言 / You are muted in this room"


class Banned(DomainError):
    code = "banned"
    status = 403
    default_message = "你已被移出直播间 / You are banned from this room"


class SlowMode(DomainError):
    code = "slow_mode"
    status = 429
    default_message = "慢速模式:请稍后再发 / Slow mode is on, wait a moment"


class TooLong(DomainError):
    code = "too_long"
    status = 400
    default_message = "内容太长 / Text is too long"


class EmptyText(DomainError):
    code = "empty"
    status = 400
    default_message = "内容不能为空 / Text is empty"


class BadText(DomainError):
    code = "bad_text"
    status = 400
    default_message = "内容含有无效字符 / Text contains invalid characters"


class CannotSanction(DomainError):
    code = "cannot_sanction"
    status = 403
    default_message = "不能禁言或移出此用户 / You cannot mute or ban this user"


# Who outranks whom in a room. A sanction reaches only someone of lower rank than the one
# acting, and never the session's host or an admin: otherwise an assistant could silence or
# kick the host of the stream they were brought in to help, or the admins who appointed them.
RANK = {Role.VIEWER: 0, Role.ASSISTANT: 1, Role.HOST: 2, Role.ADMIN: 3}


def ensure_may_sanction(actor: Principal, target_id: int, target_role: Role,
                        session_host_id: int) -> None:
    """`CannotSanction` (403, with a reason) unless `actor` may mute or ban this user here."""
    if target_id == actor.user_id:
        raise CannotSanction("不能处理自己 / You cannot sanction yourself", reason="self")
    if target_id == session_host_id:
        raise CannotSanction("不能处理本场主播 / The session's host cannot be muted or banned",
                             reason="session_host")
    if target_role is Role.ADMIN:
        raise CannotSanction("不能处理管理员 / Admins cannot be muted or banned", reason="admin")
    if RANK[target_role] >= RANK[actor.role]:
        raise CannotSanction("只能处理级别低于你的用户 / You can only sanction users below your role",
                             reason="rank")


# Control characters other than newline and tab (NUL among them) are invisible on screen, so
# they are dropped; what is left must still be storable (no lone surrogate), else it is refused.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


_REFUSALS: dict[str, type[DomainError]] = {
    "banned": Banned, "muted": Muted, "slow_mode": SlowMode, "rate_limited": RateLimited,
}


def clean_text(raw: Any, limit: int) -> str:
    """Strip, refuse empty or over-long text (length in characters, as people count them)."""
    if not isinstance(raw, str):
        raise EmptyText()
    text = _CONTROL.sub("", raw).strip()
    if not is_storable(text):
        raise BadText()
    if not text:
        raise EmptyText()
    if len(text) > limit:
        raise TooLong(f"内容太长(最多 {limit} 字)/ Text is too long (max {limit} characters)",
                      limit=limit)
    return text


class Moderation:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._gate = load_script(redis, "comment_gate.lua")

    async def gate(self, room: int, user_id: int, kind: str, slow_mode: bool = True) -> list[str]:
        """Raise the reason this user may not send `kind` now; else return the banned words.

        Slow mode applies to comments of viewers (`slow_mode`); staff answering are not slowed.
        """
        limit, window_ms = COMMENT_RATE if kind == "comment" else QUESTION_RATE
        keys = [room_key(room, f"ban:{user_id}"), room_key(room, f"mute:{user_id}"),
                room_key(room, f"slow:{user_id}"), room_key(room, f"rate:{kind}:{user_id}"),
                room_key(room, "cfg"), room_key(room, "words")]
        slow = "1" if kind == "comment" and slow_mode else "0"
        result = await self._gate(keys=keys, args=[limit, window_ms, slow])
        head = _text(result[0])
        if head == "ok":
            return [_text(w) for w in result[1:]]
        retry_ms = int(result[1])
        detail = _text(result[2])
        error = _REFUSALS[head]
        details: dict[str, Any] = {"retry_after_ms": retry_ms if retry_ms >= 0 else None}
        if head in ("muted", "banned"):
            info = json.loads(detail)
            details.update(until=wire_time(info.get("until")), reason=info.get("reason", ""))
        raise error(None, **details)

    async def sanction(self, room: int, kind: str, user_id: int, duration_s: int | None,
                       reason: str, by: int, name: str = "") -> dict[str, Any]:
        """Mute or ban (`kind`) for `duration_s` seconds, or permanently when None. `name` is
        the user's display name as it was then, so the console shows a person, not an id."""
        until = time.time() + duration_s if duration_s else None
        info = {"user_id": user_id, "until": until, "reason": reason, "by": by, "name": name}
        key = room_key(room, f"{kind}:{user_id}")
        async with self._redis.pipeline(transaction=True) as pipe:
            if duration_s:
                pipe.set(key, dumps(info), ex=duration_s)
            else:
                pipe.set(key, dumps(info))
            pipe.hset(room_key(room, f"{kind}s"), str(user_id), dumps(info))
            pipe.expire(room_key(room, f"{kind}s"), MOD_TTL_S)
            await pipe.execute()
        return info

    async def lift(self, room: int, kind: str, user_id: int) -> bool:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(room_key(room, f"{kind}:{user_id}"))
            pipe.hdel(room_key(room, f"{kind}s"), str(user_id))
            removed, _ = await pipe.execute()
        return bool(removed)

    async def active(self, room: int, kind: str, user_id: int) -> dict[str, Any] | None:
        raw = await self._redis.get(room_key(room, f"{kind}:{user_id}"))
        return json.loads(raw) if raw else None

    async def set_slow_mode(self, room: int, seconds: int) -> None:
        await self._redis.hset(room_key(room, "cfg"), "slow_mode_s", seconds)
        await self._redis.expire(room_key(room, "cfg"), MOD_TTL_S)

    async def set_banned_words(self, room: int, words: list[str]) -> list[str]:
        cleaned = sorted({w.strip().lower() for w in words if w.strip()})
        key = room_key(room, "words")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if cleaned:
                pipe.sadd(key, *cleaned)
                pipe.expire(key, MOD_TTL_S)
            await pipe.execute()
        return cleaned

    async def status(self, room: int) -> dict[str, Any]:
        """What the moderation console shows: slow mode, words, current mutes and bans."""
        now = time.time()
        cfg = await self._redis.hgetall(room_key(room, "cfg"))
        words = await self._redis.smembers(room_key(room, "words"))
        out: dict[str, Any] = {
            "slow_mode_s": int(cfg.get(b"slow_mode_s", 0)),
            "banned_words": sorted(_text(w) for w in words),
        }
        for kind in ("mute", "ban"):
            entries = await self._redis.hgetall(room_key(room, f"{kind}s"))
            live = [json.loads(v) for v in entries.values()]
            out[f"{kind}s"] = sorted(
                (on_the_wire(e) for e in live if e.get("until") is None or e["until"] > now),
                key=lambda e: (e.get("name") or "", e["user_id"]))
        return out


def wire_time(epoch: float | None) -> str | None:
    """Sanction ends are kept as epoch seconds (Redis TTL arithmetic) and sent as ISO 8601."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def on_the_wire(info: dict[str, Any]) -> dict[str, Any]:
    """A sanction as clients see it: `until` in ISO 8601 with its offset (None: permanent)."""
    return {**info, "until": wire_time(info.get("until")), "name": info.get("name") or ""}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
