"""`/moderation`: the console of the session's host, assistants and admins.

Connect with `auth = {"token", "session_id"}`; anyone else is refused with a reason. On connect
the console gets `mod_state` (slow mode, banned words, mutes, bans) and `questions` (all of
them, newest first); then `question` for every new or changed question and `mod_log` for every
action, from whichever process it happened on (python-socketio's Redis-shared rooms: a handful
of staff sockets do not need the viewers' fast path).
"""

from __future__ import annotations

from typing import Any

from commerce import live_sessions
from commerce.accounts import Principal
from commerce.errors import DomainError, Forbidden, NotFound
from infra.database import Database
from realtime import questions
from realtime.access import TokenVerifier
from realtime.actions import RoomActions, int_field, mod_room
from realtime.guard import GuardedNamespace, Handler
from realtime.hub import Hub
from realtime.live_namespace import principal_from, refuse, session_id_from

MOD = "/moderation"


class ModerationNamespace(GuardedNamespace):
    client_events = frozenset({
        "delete_comment", "mute", "unmute", "ban", "unban", "slow_mode", "banned_words",
        "approve", "reject", "merge", "answer", "pin_question", "unpin_question",
        "pin_product", "unpin_product",
    })

    def __init__(self, hub: Hub, database: Database, tokens: TokenVerifier,
                 actions: RoomActions) -> None:
        super().__init__(MOD, hub)
        self.db = database
        self.tokens = tokens
        self.actions = actions
        self._staff: dict[str, tuple[int, Principal]] = {}

    def handlers(self) -> dict[str, Handler]:
        a = self.actions

        def staff(fn: Any) -> Handler:
            async def handle(sid: str, data: dict[str, Any]) -> dict[str, Any]:
                room, who = self._who(sid)
                result: dict[str, Any] = await fn(room, who, data)
                return result
            return handle

        return {
            "delete_comment": staff(a.delete_comment),
            "mute": staff(lambda r, w, d: a.sanction(r, w, "mute", d)),
            "unmute": staff(lambda r, w, d: a.lift(r, w, "mute", d)),
            "ban": staff(lambda r, w, d: a.sanction(r, w, "ban", d)),
            "unban": staff(lambda r, w, d: a.lift(r, w, "ban", d)),
            "slow_mode": staff(a.slow_mode),
            "banned_words": staff(a.banned_words),
            "approve": staff(lambda r, w, d: a.review_question(r, w, "approve", d)),
            "reject": staff(lambda r, w, d: a.review_question(r, w, "reject", d)),
            "merge": staff(lambda r, w, d: a.review_question(r, w, "merge", d)),
            "answer": staff(lambda r, w, d: a.review_question(r, w, "answer", d)),
            "pin_question": staff(lambda r, w, d: a.review_question(r, w, "pin", d)),
            "unpin_question": staff(lambda r, w, d: a.review_question(r, w, "unpin", d)),
            "pin_product": staff(lambda r, w, d: a.pin_product(r, w, int_field(d, "product_id"))),
            "unpin_product": staff(lambda r, w, d: a.pin_product(r, w, None)),
        }

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        auth = auth if isinstance(auth, dict) else {}
        room = session_id_from(auth)
        principal = principal_from(self.tokens, auth, required=True)
        assert principal is not None
        try:
            async with self.db.session() as db:
                session = await live_sessions.get_session(db, room)
                live_sessions.ensure_staff_of(session, principal)
        except NotFound:
            raise refuse("not_found", "直播不存在 / No such live session") from None
        except Forbidden as exc:
            raise refuse("forbidden", "只有本场主播、助理和管理员可以进入 / "
                         "Only this session's host, assistants and admins may moderate",
                         **exc.details) from None
        self._staff[sid] = (room, principal)
        self.hub.connected[MOD] += 1
        await self.enter_room(sid, mod_room(room))
        self.hub.rooms.spawn(self._welcome(sid, room))

    async def _welcome(self, sid: str, room: int) -> None:
        status = await self.hub.moderation.status(room)
        async with self.db.session() as db:
            listed = [q.public_dict() for q in await questions.for_session(db, room, public=False)]
        await self.emit_local(sid, "mod_state", status)
        await self.emit_local(sid, "questions", listed)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        if self._staff.pop(sid, None) is not None:
            self.hub.connected[MOD] -= 1

    def sids_of(self, user_id: int) -> list[str]:
        return [sid for sid, (_room, who) in self._staff.items() if who.user_id == user_id]

    def _who(self, sid: str) -> tuple[int, Principal]:
        found = self._staff.get(sid)
        if found is None:
            raise DomainError("未连接 / Not connected")
        return found
