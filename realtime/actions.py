"""What people do in a live room, shared by the socket namespaces and the REST routes.

Validate and authorise, then act (Zulip's check_*/do_*): every action takes the acting principal
and checks its rights on THAT session (host of it, assistants, admins); viewers may only comment,
ask, upvote and like. Room events are numbered and broadcast through the history; the moderation
console hears staff-side news through python-socketio's emit to its room (shared via Redis).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from commerce import accounts, audience, catalog, live_sessions
from commerce.accounts import Principal, Role
from commerce.errors import InvalidInput, InvalidState, Unauthorized
from commerce.event_payloads import ProductPinned, ProductUnpinned
from commerce.events import DomainEvent, EventBus
from commerce.text import mask
from infra.database import Database
from realtime import questions
from realtime.hub import Hub
from realtime.moderation import (
    MAX_ANSWER_CHARS,
    MAX_BANNED_WORDS,
    MAX_COMMENT_CHARS,
    MAX_QUESTION_CHARS,
    MAX_SANCTION_S,
    MAX_SLOW_MODE_S,
    MAX_WORD_CHARS,
    clean_text,
    ensure_may_sanction,
    on_the_wire,
)
from realtime.state import now_ms, stamped
from trust.programmes import badges_for

MOD = "/moderation"
log = logging.getLogger(__name__)


class LoginRequired(Unauthorized):
    code = "login_required"
    default_message = "登录后才能发言 / Log in to take part"


def mod_room(room: int) -> str:
    return f"mod:{room}"


def int_field(data: dict[str, Any], name: str, lo: int = 1, hi: int = 2**53,
              optional: bool = False) -> int | None:
    value = data.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidInput(f"{name} 必须是 {lo}–{hi} 的整数 / {name} must be an integer in {lo}–{hi}",
                           field=name)
    return value


def reason_field(data: dict[str, Any]) -> str:
    reason = data.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 200:
        raise InvalidInput("reason 最多 200 字 / reason: at most 200 characters", field="reason")
    return reason


@dataclass
class Actor:
    principal: Principal | None
    name: str
    # The 品鉴官 badge of the room host's programme, read when the socket joined.
    badge: str | None = None

    def author(self, who: Principal) -> dict[str, Any]:
        """The author info every comment and question carries; `badge` only for members, so
        everyone else's stays exactly {id, name, role}."""
        info: dict[str, Any] = {"id": who.user_id, "name": self.name, "role": who.role.value}
        if self.badge:
            info["badge"] = self.badge
        return info

    def user(self) -> Principal:
        if self.principal is None:
            raise LoginRequired()
        return self.principal


class RoomActions:
    def __init__(self, hub: Hub, database: Database, events: EventBus) -> None:
        self.hub = hub
        self.db = database
        self.events = events

    async def _staff(self, room: int, who: Principal, owner_only: bool = False) -> int:
        """Check `who` is staff of this session (its owner with `owner_only`); its host's id."""
        async with self.db.session() as db:
            session = await live_sessions.get_session(db, room)
        (live_sessions.ensure_owner if owner_only else live_sessions.ensure_staff_of)(session, who)
        return session.host_id

    async def _mod_emit(self, room: int, event: str, data: Any) -> None:
        await self.hub.sio.emit(event, data, room=mod_room(room), namespace=MOD)

    async def _mod_log(self, room: int, who: Principal, action: str, **details: Any) -> None:
        await self._mod_emit(room, "mod_log", stamped({"action": action, "by": who.user_id,
                                                       **details}, now_ms()))

    async def _count(self, room: int, who: Principal, kind: audience.Interaction,
                     amount: int = 1) -> None:
        """Feed the dashboard's audience figures; staff talking in their own room are not
        audience. The action itself already happened: a counter Redis refuses is logged, not
        turned into an error the client would retry (and so post twice)."""
        if who.is_staff:
            return
        try:
            await audience.note_interaction(self.hub.redis, room, audience.user_viewer(who.user_id),
                                            kind, amount)
        except RedisError:
            log.warning("audience counter not written", extra={"room": room}, exc_info=True)

    # --- viewers -------------------------------------------------------------------------
    async def comment(self, room: int, actor: Actor, data: dict[str, Any]) -> dict[str, Any]:
        who = actor.user()
        text = clean_text(data.get("text"), MAX_COMMENT_CHARS)
        words = await self.hub.moderation.gate(room, who.user_id, "comment",
                                               slow_mode=not who.is_staff)
        text, filtered = mask(text, words)
        comment_id = secrets.token_hex(6)
        appended = await self.hub.history.append(room, {
            "ev": "comment", "id": comment_id,
            "user": actor.author(who),
            "text": text, "ts": now_ms(),
        })
        await self._count(room, who, audience.Interaction.COMMENT)
        return {"id": comment_id, "seq": appended.last_seq, "filtered": filtered}

    async def question(self, room: int, actor: Actor, data: dict[str, Any]) -> dict[str, Any]:
        who = actor.user()
        text = clean_text(data.get("text"), MAX_QUESTION_CHARS)
        words = await self.hub.moderation.gate(room, who.user_id, "question")
        text, filtered = mask(text, words)
        async with self.db.session() as db:
            question = await questions.ask(db, room, who.user_id, actor.name, text)
            public = question.public_dict()
        if actor.badge:
            public["user"]["badge"] = actor.badge
        await self._mod_emit(room, "question", public)
        await self._count(room, who, audience.Interaction.QUESTION)
        return {"question_id": public["id"], "status": public["status"], "filtered": filtered}

    async def upvote(self, room: int, actor: Actor, data: dict[str, Any]) -> dict[str, Any]:
        who = actor.user()
        question_id = int_field(data, "question_id")
        assert question_id is not None
        async with self.db.session() as db:
            question = await questions.upvote(db, room, question_id, who.user_id)
            votes = question.votes
        self.hub.state.set_field(room, f"qv:{question_id}", votes)
        await self._count(room, who, audience.Interaction.UPVOTE)
        return {"question_id": question_id, "votes": votes}

    async def like(self, room: int, actor: Actor, data: dict[str, Any]) -> dict[str, Any]:
        who = actor.user()
        count = int_field(data, "count", 1, 10, optional=True) or 1
        self.hub.state.add_likes(room, count)
        await self._count(room, who, audience.Interaction.LIKE, count)
        return {"count": count}

    # --- host ----------------------------------------------------------------------------
    async def pin_product(self, room: int, who: Principal, product_id: int | None) -> dict[str, Any]:
        """Pin (讲解中) or, with None, unpin; the pin rows are what replay chapters are cut from."""
        async with self.db.session() as db:
            session = await live_sessions.get_session(db, room)
            live_sessions.ensure_owner(session, who)
            if session.status == live_sessions.SessionStatus.ENDED:
                # Nothing is presented after the end: the room shows no 讲解中 any more.
                raise InvalidState("直播已结束 / The session has ended")
            if product_id is None:
                await catalog.unpin(db, room)
                pin_data: dict[str, Any] | None = None
            else:
                product = await catalog.get_product(db, product_id)
                catalog.ensure_product_owner(product, who)
                pin = await catalog.pin_product(db, room, product_id, who)
                pin_data = {**pin.public_dict(), **dict(pin.snapshot or {})}
        if pin_data is None:
            await self.events.publish(DomainEvent("product_unpinned", room, ProductUnpinned()))
            return {"pinned": None}
        await self.events.publish(DomainEvent("product_pinned", room, ProductPinned(**pin_data)))
        return {"pinned": pin_data}

    # --- staff ---------------------------------------------------------------------------
    async def delete_comment(self, room: int, who: Principal, data: dict[str, Any]) -> dict[str, Any]:
        host_id = await self._staff(room, who)
        seq = int_field(data, "seq")
        assert seq is not None
        stored = await self.hub.history.get(room, seq)
        if stored is None or stored.get("ev") != "comment" or (
                "id" in data and data["id"] != stored.get("id")):
            raise InvalidInput("评论不存在或已删除 / No such comment (or already deleted)", field="seq")
        author = stored.get("user") or {}
        if author.get("id") != who.user_id:
            # The same ranks as a mute: an assistant cannot take the host's or an admin's words
            # off the screen. The role is the one the author had when writing.
            ensure_may_sanction(who, int(author.get("id", 0)), Role(author.get("role", "viewer")),
                                host_id)
        await self.hub.history.remove(room, seq)
        appended = await self.hub.history.append(
            room, {"ev": "comment_deleted", "id": stored["id"], "comment_seq": seq})
        await self._mod_log(room, who, "delete_comment", comment=stored)
        return {"deleted": stored["id"], "seq": appended.last_seq}

    async def sanction(self, room: int, who: Principal, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        """Mute or ban a user, timed (`duration_s`) or permanent (no duration); only someone
        below the actor's rank, never the session's host or an admin (`ensure_may_sanction`)."""
        host_id = await self._staff(room, who)
        user_id = int_field(data, "user_id")
        duration = int_field(data, "duration_s", 1, MAX_SANCTION_S, optional=True)
        reason = reason_field(data)
        assert user_id is not None
        async with self.db.session() as db:
            target = await accounts.get_user(db, user_id)
        ensure_may_sanction(who, user_id, Role(target.role), host_id)
        info = on_the_wire(await self.hub.moderation.sanction(
            room, kind, user_id, duration, reason, who.user_id,
            name=target.display_name or target.username))
        event = "muted" if kind == "mute" else "banned"
        await self.hub.tell_user(room, user_id, event, info, kick=kind == "ban")
        await self._mod_log(room, who, kind, user_id=user_id, name=info["name"],
                            until=info["until"], reason=reason)
        return info

    async def lift(self, room: int, who: Principal, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        await self._staff(room, who)
        user_id = int_field(data, "user_id")
        assert user_id is not None
        removed = await self.hub.moderation.lift(room, kind, user_id)
        if kind == "mute":
            await self.hub.tell_user(room, user_id, "unmuted", {"user_id": user_id})
        await self._mod_log(room, who, "un" + kind, user_id=user_id)
        return {"user_id": user_id, "lifted": removed}

    async def slow_mode(self, room: int, who: Principal, data: dict[str, Any]) -> dict[str, Any]:
        await self._staff(room, who)
        seconds = int_field(data, "seconds", 0, MAX_SLOW_MODE_S)
        assert seconds is not None
        await self.hub.moderation.set_slow_mode(room, seconds)
        self.hub.state.set_field(room, "slow_mode_s", seconds)
        await self._mod_log(room, who, "slow_mode", seconds=seconds)
        return {"slow_mode_s": seconds}

    async def banned_words(self, room: int, who: Principal, data: dict[str, Any]) -> dict[str, Any]:
        await self._staff(room, who)
        words = data.get("words")
        if (not isinstance(words, list) or len(words) > MAX_BANNED_WORDS
                or not all(isinstance(w, str) and 0 < len(w.strip()) <= MAX_WORD_CHARS for w in words)):
            raise InvalidInput(
                f"words: 最多 {MAX_BANNED_WORDS} 个词,每个 1–{MAX_WORD_CHARS} 字 / "
                f"words: at most {MAX_BANNED_WORDS} words of 1–{MAX_WORD_CHARS} characters",
                field="words")
        cleaned = await self.hub.moderation.set_banned_words(room, words)
        await self._mod_log(room, who, "banned_words", words=cleaned)
        return {"words": cleaned}

    async def review_question(self, room: int, who: Principal, action: str,
                              data: dict[str, Any]) -> dict[str, Any]:
        """approve | reject | answer | merge | pin | unpin, then tell the room and the console."""
        await self._staff(room, who)
        changed: list[questions.Question] = []
        async with self.db.session() as db:
            if action == "unpin":
                await questions.pin(db, room, None)
                public: list[dict[str, Any]] = []
            else:
                question_id = int_field(data, "question_id")
                assert question_id is not None
                if action in ("approve", "reject"):
                    changed = [await questions.review(db, room, question_id, action == "approve",
                                                      who.user_id)]
                elif action == "answer":
                    text = clean_text(data.get("text"), MAX_ANSWER_CHARS)
                    changed = [await questions.answer(db, room, question_id, text, who.user_id)]
                elif action == "merge":
                    into = int_field(data, "into_id")
                    assert into is not None
                    changed = list(await questions.merge(db, room, question_id, into, who.user_id))
                elif action == "pin":
                    pinned = await questions.pin(db, room, question_id)
                    changed = [pinned] if pinned else []
            public = [q.public_dict() for q in changed]
            host_id = (await live_sessions.get_session(db, room)).host_id
            badges = await badges_for(db, [q.user_id for q in changed], host_id)
            for item in public:
                if item["user"]["id"] in badges:
                    item["user"]["badge"] = badges[item["user"]["id"]]
        for item in public:
            await self._mod_emit(room, "question", item)
            # Viewers see approved questions in full; of a rejected or merged one only that it
            # left the list (a question never approved must not leak through history).
            if item["status"] == "approved":
                await self.hub.history.append(room, {"ev": "question", **item})
                self.hub.state.set_field(room, f"qv:{item['id']}", item["votes"])
            elif item["status"] in ("rejected", "merged"):
                await self.hub.history.append(room, {
                    "ev": "question", "id": item["id"], "status": item["status"],
                    "merged_into_id": item["merged_into_id"]})
                if item["status"] == "rejected":
                    # The asker alone hears why her question never showed: only her sockets in
                    # this room (never the room, never history).
                    await self.hub.tell_user(room, int(item["user"]["id"]), "question_rejected",
                                             {"id": item["id"], "text": item["text"]})
        if action in ("pin", "unpin"):
            self.hub.state.set_field(room, "pinned_question", public[0]["id"] if public else None)
        await self._mod_log(room, who, f"question_{action}",
                            question_ids=[item["id"] for item in public])
        return {"questions": public}
