"""Moderation and Q&A end to end over real sockets: mute, ban, slow mode, banned words, delete,
held questions, merge, answer, pin, upvote, product pin (socket and REST)."""

from __future__ import annotations

import asyncio
from datetime import datetime

from commerce.accounts import Principal, Role
from realtime.moderation import CannotSanction, ensure_may_sanction
from tests.conftest import Api
from tests.realtime_support import Recorder, connect, make_room, refused_reason


async def _staff(api: Api, url: str, session_id: int, token: str) -> Recorder:
    mod = await connect(url, "/moderation", {"session_id": session_id, "token": token})
    await mod.wait(lambda: mod.of("mod_state") and mod.of("questions") is not None)
    return mod


async def test_moderation_flow_end_to_end(api: Api) -> None:
    room = await make_room(api)
    _, assistant = await api.user("assistant")
    troll_id, troll = await api.user("viewer")
    live = {"session_id": room.session_id}
    mod = await _staff(api, room.url, room.session_id, assistant)
    viewer = await connect(room.url, "/live", {**live, "token": room.viewer})
    bad = await connect(room.url, "/live", {**live, "token": troll})
    try:
        # banned words are masked for everyone
        ack = await mod.call("banned_words", {"words": ["假货", "SPAM"]})
        assert ack["ok"] and ack["words"] == ["spam", "假货"]
        ack = await bad.call("comment", {"text": "这是假货 spam!"})
        assert ack["ok"] and ack["filtered"] is True
        seen = await viewer.wait(lambda: viewer.comments())
        assert seen[-1]["text"] == "这是** ****!"

        # delete removes it from every screen and from history
        ack = await mod.call("delete_comment", {"seq": seen[-1]["seq"]})
        assert ack["ok"], ack
        deleted = await viewer.wait(lambda: viewer.of("comment_deleted"))
        assert deleted[0]["comment_seq"] == seen[-1]["seq"] and deleted[0]["id"] == seen[-1]["id"]
        await bad.wait(lambda: bad.of("comment_deleted"))
        late = await connect(room.url, "/live", live)
        await late.wait(lambda: late.of("state"))
        assert late.comments() == []
        await late.close()
        again = await mod.call("delete_comment", {"seq": seen[-1]["seq"]})
        assert again["error"]["code"] == "invalid_input"
        log = await mod.wait(lambda: [e for e in mod.of("mod_log") if e["action"] == "delete_comment"])
        assert log[0]["comment"]["text"] == "这是** ****!"
        assert datetime.fromisoformat(log[0]["at"]).utcoffset() is not None  # beside ts (ms)

        # a muted user is refused with a reason (and told)
        ack = await mod.call("mute", {"user_id": troll_id, "duration_s": 60, "reason": "刷屏"})
        assert ack["ok"] and ack["until"] is not None
        await bad.wait(lambda: bad.of("muted"))
        refused = await bad.call("comment", {"text": "我还能说话吗"})
        assert refused["error"]["code"] == "muted" and refused["error"]["reason"] == "刷屏"
        assert 0 < refused["error"]["retry_after_ms"] <= 60_000
        question = await bad.call("question", {"text": "为什么禁言我"})
        assert question["error"]["code"] == "muted"
        ack = await mod.call("unmute", {"user_id": troll_id})
        assert ack["ok"] and ack["lifted"] is True
        assert (await bad.call("comment", {"text": "谢谢"}))["ok"] is True

        # slow mode: one comment per N seconds per user
        assert (await mod.call("slow_mode", {"seconds": 30}))["ok"]
        assert (await viewer.call("comment", {"text": "第一条"}))["ok"]
        slow = await viewer.call("comment", {"text": "第二条"})
        assert slow["error"]["code"] == "slow_mode" and slow["error"]["retry_after_ms"] > 0
        host = await connect(room.url, "/live", {**live, "token": room.host})
        assert (await host.call("comment", {"text": "主播一"}))["ok"]
        assert (await host.call("comment", {"text": "主播二"}))["ok"]  # staff are not slowed
        await host.close()
        await viewer.wait(lambda: [s for s in viewer.of("state") if s["slow_mode_s"] == 30])
        assert (await mod.call("slow_mode", {"seconds": 0}))["ok"]

        # a permanent ban: kicked with a reason, and refused when coming back
        ack = await mod.call("ban", {"user_id": troll_id, "reason": "广告"})
        assert ack["ok"] and ack["until"] is None
        banned = await bad.wait(lambda: bad.of("banned"))
        assert banned[0]["reason"] == "广告"
        for _ in range(50):
            if not bad.client.connected:
                break
            await asyncio.sleep(0.1)
        assert not bad.client.connected
        reason = await refused_reason(room.url, "/live", {**live, "token": troll})
        assert reason["code"] == "banned" and reason["reason"] == "广告"
        status = (await api.client.get(f"/api/sessions/{room.session_id}/moderation",
                                       headers=api.auth(assistant)))
        assert [b["user_id"] for b in (await status.json())["bans"]] == [troll_id]
        resp = await api.client.delete(f"/api/sessions/{room.session_id}/bans/{troll_id}",
                                       headers=api.auth(assistant))
        assert resp.status == 200
        back = await connect(room.url, "/live", {**live, "token": troll})
        await back.close()

        # viewers cannot moderate; bad input gets a field error
        nope = await viewer.call("delete_comment", {"seq": 1})
        assert nope["error"]["code"] == "unknown_event"
        bad_input = await mod.call("mute", {"user_id": "abc"})
        assert bad_input["error"]["code"] == "invalid_input" and bad_input["error"]["field"] == "user_id"
        resp = await api.client.post(f"/api/sessions/{room.session_id}/mutes",
                                     json={"user_id": troll_id}, headers=api.auth(room.viewer))
        assert resp.status == 403
    finally:
        await mod.close()
        await viewer.close()
        await bad.close()


async def test_another_hosts_staff_cannot_moderate_this_session(api: Api) -> None:
    room = await make_room(api)
    _, other_host = await api.user("host")
    reason = await refused_reason(room.url, "/moderation",
                                  {"session_id": room.session_id, "token": other_host})
    assert reason["code"] == "forbidden"
    resp = await api.client.post(f"/api/sessions/{room.session_id}/pin", json={"product_id": 1},
                                 headers=api.auth(other_host))
    assert resp.status in (403, 404)


async def test_questions_and_product_pin(any_db_api: Api) -> None:
    """Over SQLite and PostgreSQL: votes rely on a unique constraint inside a savepoint."""
    api = any_db_api
    room = await make_room(api)
    _, assistant = await api.user("assistant")
    voter_id, voter = await api.user("viewer")
    resp = await api.client.post("/api/products", json={"name": "红富士苹果", "price_fen": 2990},
                                 headers=api.auth(room.host))
    assert resp.status == 201, await resp.text()
    product_id = (await resp.json())["id"]
    live = {"session_id": room.session_id}
    host = await connect(room.url, "/live", {**live, "token": room.host})
    mod = await _staff(api, room.url, room.session_id, assistant)
    viewer = await connect(room.url, "/live", {**live, "token": room.viewer})
    other = await connect(room.url, "/live", {**live, "token": voter})
    try:
        # the host pins over the socket: everyone gets the pin event and the state
        assert (await viewer.call("pin_product", {"product_id": product_id}))["error"]["code"] == "forbidden"
        ack = await host.call("pin_product", {"product_id": product_id})
        assert ack["ok"], ack
        pinned = await viewer.wait(lambda: viewer.of("pinned"))
        assert pinned[0]["pin"]["product_id"] == product_id and pinned[0]["pin"]["name"] == "红富士苹果"
        await viewer.wait(lambda: [s for s in viewer.of("state")
                                   if (s["pinned"] or {}).get("product_id") == product_id])

        # questions are held for review and carry the pinned product
        ask = await viewer.call("question", {"text": "这个苹果孩子能吃吗?"})
        assert ask["ok"] and ask["status"] == "pending"
        dup = await other.call("question", {"text": "小孩可以吃吗"})
        held = await mod.wait(lambda: [q for q in mod.of("question") if q["id"] == ask["question_id"]])
        assert held[0]["status"] == "pending" and held[0]["product_id"] == product_id
        await asyncio.sleep(0.2)
        assert viewer.of("question") == []  # not public yet
        upvote_pending = await other.call("upvote", {"question_id": ask["question_id"]})
        assert upvote_pending["error"]["code"] == "invalid_state"

        assert (await mod.call("approve", {"question_id": ask["question_id"]}))["ok"]
        public = await viewer.wait(lambda: [q for q in viewer.of("question")
                                            if q["id"] == ask["question_id"]])
        assert public[0]["status"] == "approved" and public[0]["text"] == "这个苹果孩子能吃吗?"

        # merge the duplicate: its asker's vote moves over; the duplicate leaves the list
        merged = await mod.call("merge", {"question_id": dup["question_id"], "into_id": ask["question_id"]})
        assert merged["ok"], merged
        target = next(q for q in merged["questions"] if q["id"] == ask["question_id"])
        assert target["votes"] == 1
        gone = await viewer.wait(lambda: [q for q in viewer.of("question")
                                          if q["id"] == dup["question_id"]])
        assert gone[0]["status"] == "merged" and "text" not in gone[0]

        # upvote once per user; counts reach everyone through coalesced state
        first = await viewer.call("upvote", {"question_id": ask["question_id"]})
        assert first["ok"] and first["votes"] == 2
        twice = await viewer.call("upvote", {"question_id": ask["question_id"]})
        assert twice["error"]["code"] == "conflict"
        await other.wait(lambda: [s for s in other.of("state")
                                  if s["question_votes"].get(str(ask["question_id"])) == 2])

        # answer and pin
        answered = await mod.call("answer", {"question_id": ask["question_id"],
                                             "text": "可以,洗干净就行"})
        assert answered["ok"]
        assert (await mod.call("pin_question", {"question_id": ask["question_id"]}))["ok"]
        final = await viewer.wait(lambda: [q for q in viewer.of("question")
                                           if q["id"] == ask["question_id"] and q["pinned"]])
        assert final[-1]["answer"] == "可以,洗干净就行"
        await viewer.wait(lambda: [s for s in viewer.of("state")
                                   if s["pinned_question"] == ask["question_id"]])
        rejected = await viewer.call("question", {"text": "广告广告"})
        assert (await mod.call("reject", {"question_id": rejected["question_id"]}))["ok"]

        # the REST list: approved for anyone, everything for staff
        resp = await api.client.get(f"/api/sessions/{room.session_id}/questions")
        public_list = await resp.json()
        assert [q["id"] for q in public_list] == [ask["question_id"]]
        assert public_list[0]["product_id"] == product_id
        resp = await api.client.get(f"/api/sessions/{room.session_id}/questions",
                                    headers=api.auth(assistant))
        assert len(await resp.json()) == 3

        # REST unpin: the pin row is closed (replay chapters read these) and everyone hears it
        resp = await api.client.delete(f"/api/sessions/{room.session_id}/pin",
                                       headers=api.auth(room.host))
        assert resp.status == 200
        await viewer.wait(lambda: viewer.of("unpinned"))
        resp = await api.client.post(f"/api/sessions/{room.session_id}/pin",
                                     json={"product_id": product_id}, headers=api.auth(room.host))
        assert resp.status == 200
        await viewer.wait(lambda: len(viewer.of("pinned")) == 2)
        from commerce import catalog
        from server.keys import database_key

        async with api.app[database_key].session() as db:
            pins = await catalog.pins_for_session(db, room.session_id)
        assert [p.product_id for p in pins] == [product_id, product_id]
        assert pins[0].unpinned_at is not None and pins[1].unpinned_at is None
        del voter_id
    finally:
        for client in (host, mod, viewer, other):
            await client.close()


# Who may sanction whom: (actor role, target) -> allowed. "host" is the session's host; "a host"
# another one. Ranks: viewer < assistant < host < admin; never the session's host, never an admin.
SANCTION_RULES = (
    ("assistant", "viewer", True), ("assistant", "assistant", False), ("assistant", "host", False),
    ("assistant", "a host", False), ("assistant", "admin", False),
    ("host", "viewer", True), ("host", "assistant", True), ("host", "a host", False),
    ("host", "admin", False), ("host", "self", False),
    ("admin", "viewer", True), ("admin", "assistant", True), ("admin", "a host", True),
    ("admin", "host", False), ("admin", "admin", False), ("admin", "self", False),
)


def test_sanctions_reach_only_lower_ranks() -> None:
    session_host = 10
    ids = {"viewer": 1, "assistant": 2, "a host": 3, "admin": 4, "host": session_host}
    roles = {"viewer": Role.VIEWER, "assistant": Role.ASSISTANT, "a host": Role.HOST,
             "admin": Role.ADMIN, "host": Role.HOST}
    for actor_role, target, allowed in SANCTION_RULES:
        actor = Principal(session_host if actor_role == "host" else 99, actor_role,
                          Role(actor_role))
        target_id = actor.user_id if target == "self" else ids[target]
        target_role = actor.role if target == "self" else roles[target]
        try:
            ensure_may_sanction(actor, target_id, target_role, session_host)
            got = True
        except CannotSanction:
            got = False
        assert got is allowed, (actor_role, target)


async def test_an_assistant_cannot_ban_the_host_or_mute_an_admin(api: Api) -> None:
    """Over the socket and over REST, with the reason; an unknown user is a 404."""
    room = await make_room(api)
    _, assistant = await api.user("assistant")
    admin_id, _ = await api.user("admin")
    host_id = room.host_id
    mod = await _staff(api, room.url, room.session_id, assistant)
    try:
        for event, target, reason in (("ban", host_id, "session_host"),
                                      ("mute", admin_id, "admin")):
            ack = await mod.call(event, {"user_id": target, "duration_s": 60})
            assert ack["error"]["code"] == "cannot_sanction", ack
            assert ack["error"]["reason"] == reason
        ack = await mod.call("mute", {"user_id": 999_999_999})
        assert ack["error"]["code"] == "not_found"
    finally:
        await mod.close()
    resp = await api.client.post(f"/api/sessions/{room.session_id}/bans",
                                 json={"user_id": host_id}, headers=api.auth(assistant))
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "cannot_sanction"
    status = await (await api.client.get(f"/api/sessions/{room.session_id}/moderation",
                                         headers=api.auth(room.host))).json()
    assert status["bans"] == [] and status["mutes"] == []


async def test_an_assistant_cannot_delete_the_hosts_comment(api: Api) -> None:
    """Deleting a comment follows the sanction ranks: the host's words stay; a viewer's go, and
    the host may delete an assistant's."""
    room = await make_room(api)
    _, assistant = await api.user("assistant")
    live = {"session_id": room.session_id}
    host_live = await connect(room.url, "/live", {**live, "token": room.host})
    helper_live = await connect(room.url, "/live", {**live, "token": assistant})
    mod = await _staff(api, room.url, room.session_id, assistant)
    host_mod = await _staff(api, room.url, room.session_id, room.host)
    try:
        assert (await host_live.call("comment", {"text": "今天的枇杷很甜"}))["ok"]
        assert (await helper_live.call("comment", {"text": "欢迎大家"}))["ok"]
        seen = await host_live.wait(lambda: len(host_live.comments()) >= 2 and host_live.comments())
        by_text = {c["text"]: c["seq"] for c in seen}
        ack = await mod.call("delete_comment", {"seq": by_text["今天的枇杷很甜"]})
        assert ack["error"]["code"] == "cannot_sanction" and ack["error"]["reason"] == "session_host"
        ack = await host_mod.call("delete_comment", {"seq": by_text["欢迎大家"]})
        assert ack["ok"], ack
    finally:
        for client in (host_live, helper_live, mod, host_mod):
            await client.close()
    resp = await api.client.delete(
        f"/api/sessions/{room.session_id}/comments/{by_text['今天的枇杷很甜']}",
        headers=api.auth(assistant))
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "cannot_sanction"


async def test_a_rejected_asker_alone_is_told(api: Api) -> None:
    """Rejecting a question tells its asker (her sockets only, with her text); another viewer
    and an anonymous watcher hear only that it left the list, never whose it was or what."""
    room = await make_room(api)
    _, assistant = await api.user("assistant")
    _, other = await api.user("viewer")
    live = {"session_id": room.session_id}
    mod = await _staff(api, room.url, room.session_id, assistant)
    asker = await connect(room.url, "/live", {**live, "token": room.viewer})
    neighbour = await connect(room.url, "/live", {**live, "token": other})
    anonymous = await connect(room.url, "/live", live)
    try:
        for rec in (asker, neighbour, anonymous):
            await rec.wait(lambda rec=rec: rec.of("state"))
        ack = await asker.call("question", {"text": "能便宜点吗"})
        assert ack["ok"] and ack["status"] == "pending"
        assert (await mod.call("reject", {"question_id": ack["question_id"]}))["ok"]
        told = await asker.wait(lambda: asker.of("question_rejected"))
        assert told == [{"id": ack["question_id"], "text": "能便宜点吗"}]
        for rec in (neighbour, anonymous):
            await rec.wait(lambda rec=rec: [q for q in rec.of("question") if q.get("status") == "rejected"])
        await asyncio.sleep(0.3)
        assert neighbour.of("question_rejected") == [] and anonymous.of("question_rejected") == []
    finally:
        for rec in (mod, asker, neighbour, anonymous):
            await rec.close()
