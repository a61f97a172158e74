"""`/live`: viewers and the host of one live session.

Connect with `auth = {"session_id", "token"?, "viewer"?, "epoch"?, "last_seq"?}` (`viewer`: the
page's random anonymous id, so a viewer who is not signed in is counted once, see
commerce/audience.py). Without a token one may
watch (receive) but not send. On connect the server sends, in this order: `hello`, then either
the events missed since `last_seq` (same frames as live) or `reload` + the recent `comments`
and approved `questions`, then `state`; after that, live frames.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio
from redis.exceptions import RedisError

from commerce import accounts, audience, live_sessions
from commerce.accounts import Principal
from commerce.errors import DomainError, NotFound, Unauthorized
from infra.database import Database
from realtime import questions
from realtime.access import AddressLimits, TokenVerifier
from realtime.actions import Actor, RoomActions, int_field
from realtime.broadcast import Member, frames_for
from realtime.guard import GuardedNamespace, Handler
from realtime.history import RECENT_COMMENTS
from realtime.hub import Hub
from realtime.moderation import MAX_COMMENT_CHARS, MAX_QUESTION_CHARS, wire_time
from realtime.state import now_ms, read_snapshot, stamped, wire_comment
from realtime.transport import Frame
from trust.programmes import badge_for

log = logging.getLogger(__name__)

LIVE = "/live"


def refuse(code: str, message: str, **details: Any) -> socketio.exceptions.ConnectionRefusedError:
    """The client's `connect_error` gets {"message", "data": {"code", "message", ...details}}."""
    return socketio.exceptions.ConnectionRefusedError(
        message, {"code": code, "message": message, **details})


def user_room(user_id: int) -> str:
    """The room of one signed-in user's sockets, in each namespace they connect to."""
    return f"user:{user_id}"


def session_id_from(auth: dict[str, Any]) -> int:
    raw = auth.get("session_id")
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) < 18:
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0:
        raise refuse("invalid_input", "缺少直播编号 / auth.session_id is required")
    return raw


def principal_from(tokens: TokenVerifier, auth: dict[str, Any], required: bool) -> Principal | None:
    token = auth.get("token")
    if token is None or token == "":
        if required:
            raise refuse("unauthorized", "请先登录 / Authentication required")
        return None
    if not isinstance(token, str) or len(token) > 4096:
        raise refuse("unauthorized", "无效的令牌 / Invalid token")
    try:
        return tokens.verify(token)
    except Unauthorized as exc:
        raise refuse(exc.code, exc.message, **exc.details) from None


class LiveNamespace(GuardedNamespace):
    client_events = frozenset({"comment", "question", "upvote", "like", "pin_product", "unpin_product"})

    def __init__(self, hub: Hub, database: Database, tokens: TokenVerifier,
                 actions: RoomActions, limiter: AddressLimits[Any]) -> None:
        super().__init__(LIVE, hub)
        self.db = database
        self.tokens = tokens
        self.actions = actions
        self.limiter = limiter
        self._actors: dict[str, tuple[int, Actor]] = {}
        self._ips: dict[str, str] = {}

    def handlers(self) -> dict[str, Handler]:
        return {"comment": self._comment, "question": self._question, "upvote": self._upvote,
                "like": self._like, "pin_product": self._pin, "unpin_product": self._unpin}

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        auth = auth if isinstance(auth, dict) else {}
        ip = self.limiter.environ_ip(environ)
        try:
            # Each join reads SQL and history: an address gets so many joins per minute.
            self.limiter.hit([(self.limiter.connects_ip, ip)])
        except DomainError as exc:
            raise refuse(exc.code, exc.message, **exc.details) from None
        room = session_id_from(auth)
        principal = principal_from(self.tokens, auth, required=False)
        name = ""
        badge = None
        try:
            async with self.db.session() as db:
                session = await live_sessions.get_session(db, room)
                if principal is not None:
                    user = await accounts.get_user(db, principal.user_id)
                    if user.disabled:
                        raise refuse("unauthorized", "账号已停用 / Account disabled")
                    name = user.display_name or user.username
                    badge = await badge_for(db, principal.user_id, session.host_id)
        except NotFound:
            raise refuse("not_found", "直播不存在 / No such live session") from None
        if principal is not None:
            ban = await self.hub.moderation.active(room, "ban", principal.user_id)
            if ban is not None:
                raise refuse("banned", "你已被移出直播间 / You are banned from this room",
                              until=wire_time(ban.get("until")), reason=ban.get("reason", ""))
        resume = _resume_from(auth)
        socket = self.hub.sio.eio.sockets.get(self.hub.sio.manager.eio_sid_from_sid(sid, LIVE))
        if socket is None:
            raise refuse("gone", "连接已断开 / Connection closed")
        member = Member(sid, room, socket, principal)
        self._actors[sid] = (room, Actor(principal, name, badge))
        self._ips[sid] = ip
        self.hub.connected[LIVE] += 1
        if principal is not None:
            # Notifications reach every socket of their user (realtime/me_namespace.py).
            await self.enter_room(sid, user_room(principal.user_id))
        await self._count_viewer(room, principal, auth.get("viewer"), sid)
        self.hub.rooms.spawn(self._join(member, name, resume))

    async def _count_viewer(self, room: int, principal: Principal | None, claimed: object,
                            sid: str) -> None:
        """The dashboard's distinct viewers: once per person per session (SADD), staff aside."""
        if principal is not None and principal.is_staff:
            return
        viewer = (audience.user_viewer(principal.user_id) if principal is not None
                  else audience.anonymous_viewer(claimed, sid))
        try:
            await audience.note_viewer(self.hub.redis, room, viewer)
        except RedisError:
            # Watching matters more than being counted: the join goes on.
            log.warning("viewer not counted", extra={"room": room}, exc_info=True)

    async def _join(self, member: Member, name: str, resume: tuple[str, int] | None) -> None:
        """Backfill then go live (see broadcast.py for why nothing is lost or doubled)."""
        rooms, history = self.hub.rooms, self.hub.history
        try:
            local = await rooms.room(member.room)
        except Exception:
            log.exception("room start failed", extra={"room": member.room})
            # A dependency failed (Redis restarting, its pool full): the client should come
            # back and resume, not be left connected to nothing (bench/chaos.py found that).
            await self.close_transport(member.sid)
            return
        if member.sid not in self._actors:
            return  # disconnected before the room was ready
        upto = rooms.add(local, member)
        try:
            position = await history.position(member.room)
            backfill: list[Frame] = []
            reload_reason: str | None = None
            events: list[dict[str, Any]] = []
            if resume is not None:
                answer = await history.resume(member.room, resume[0], resume[1], upto, position)
                reload_reason, events = answer.reload_reason, answer.events
            resumed = resume is not None and reload_reason is None
            who = member.principal
            backfill.append(Frame(LIVE, "hello", {
                "session_id": member.room, "epoch": local.epoch, "seq": upto, "resumed": resumed,
                "user": {"id": who.user_id, "name": name, "role": who.role.value} if who else None,
                "can_send": who is not None,
                "limits": {"comment_chars": MAX_COMMENT_CHARS, "question_chars": MAX_QUESTION_CHARS,
                           "batch_ms": 100, "recent_comments": RECENT_COMMENTS},
            }))
            if resumed:
                backfill += [frame for frame, _v in frames_for(events)]
            else:
                if reload_reason is not None:
                    backfill.append(Frame(LIVE, "reload", {"reason": reload_reason,
                                                           "epoch": local.epoch}))
                recent = await history.recent_comments(member.room, upto)
                backfill.append(Frame(LIVE, "comments",
                                      [wire_comment(c) for c in recent]))
                async with self.db.session() as db:
                    approved = await questions.for_session(db, member.room, public=True)
                    listed = [q.public_dict() for q in approved]
                backfill.append(Frame(LIVE, "questions", listed))
            state = await read_snapshot(self.hub.redis, member.room)
            if local.state is not None and local.state["v"] > state["v"]:
                state = local.state
            backfill.append(Frame(LIVE, "state", stamped(state, now_ms())))
        except Exception:
            log.exception("join failed", extra={"room": member.room})
            rooms.remove(member.sid)
            await self.close_transport(member.sid)
            return
        if member.gone:
            return
        local.release(member, backfill, int(state["v"]))

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self._ips.pop(sid, None)
        if self._actors.pop(sid, None) is not None:
            self.hub.connected[LIVE] -= 1
        self.hub.rooms.remove(sid)

    def sids_of(self, user_id: int) -> list[str]:
        return [sid for sid, (_room, actor) in self._actors.items()
                if actor.principal is not None and actor.principal.user_id == user_id]

    def _actor(self, sid: str) -> tuple[int, Actor]:
        found = self._actors.get(sid)
        if found is None:
            raise DomainError("未加入直播间 / Not in a room")
        return found

    def _per_ip(self, sid: str) -> None:
        """Comments and questions per address (per user they are limited in comment_gate.lua)."""
        self.limiter.hit([(self.limiter.comments_ip, self._ips.get(sid, "unknown"))])

    async def _comment(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        room, actor = self._actor(sid)
        actor.user()
        self._per_ip(sid)
        return await self.actions.comment(room, actor, data)

    async def _question(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        room, actor = self._actor(sid)
        actor.user()
        self._per_ip(sid)
        return await self.actions.question(room, actor, data)

    async def _upvote(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        room, actor = self._actor(sid)
        return await self.actions.upvote(room, actor, data)

    async def _like(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        room, actor = self._actor(sid)
        return await self.actions.like(room, actor, data)

    async def _pin(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        room, actor = self._actor(sid)
        return await self.actions.pin_product(room, actor.user(), int_field(data, "product_id"))

    async def _unpin(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        room, actor = self._actor(sid)
        return await self.actions.pin_product(room, actor.user(), None)


def _resume_from(auth: dict[str, Any]) -> tuple[str, int] | None:
    epoch, last = auth.get("epoch"), auth.get("last_seq")
    if isinstance(epoch, str) and len(epoch) <= 64 and isinstance(last, int) and not isinstance(
            last, bool) and last >= 0:
        return epoch, last
    return None
