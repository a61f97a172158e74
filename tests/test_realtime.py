"""Live room over real Socket.IO: comments, recovery, late joiners, bad input. Real Redis, real app."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from server.realtime_component import hub_key
from tests.conftest import Api
from tests.realtime_support import connect, make_room, refused_reason


async def test_comment_round_trip(api: Api) -> None:
    room = await make_room(api)
    auth = {"session_id": room.session_id}
    watcher = await connect(room.url, "/live", auth)  # anonymous: receives only
    viewer = await connect(room.url, "/live", {**auth, "token": room.viewer})
    try:
        hello = (await viewer.wait(lambda: viewer.of("hello")))[0]
        assert hello["can_send"] is True and hello["user"]["id"] == room.viewer_id
        await viewer.wait(lambda: viewer.of("state"))
        ack = await viewer.call("comment", {"text": "这个苹果孩子能吃吗?"})
        assert ack["ok"] is True and ack["seq"] >= 1
        got = await watcher.wait(lambda: watcher.comments())
        assert got[0]["text"] == "这个苹果孩子能吃吗?"
        assert got[0]["id"] == ack["id"] and got[0]["seq"] == ack["seq"]
        assert got[0]["user"]["id"] == room.viewer_id
        assert set(got[0]) >= {"id", "seq", "user", "text", "ts"}
        await viewer.wait(lambda: viewer.comments())  # the sender sees its own comment too
        # anonymous watchers cannot send
        refused = await watcher.call("comment", {"text": "hi"})
        assert refused["ok"] is False and refused["error"]["code"] == "login_required"
        await watcher.wait(lambda: watcher.of("refused"))
    finally:
        await watcher.close()
        await viewer.close()


async def test_refused_connections_say_why(api: Api) -> None:
    room = await make_room(api)
    reason = await refused_reason(room.url, "/live", {"session_id": 999999})
    assert reason["code"] == "not_found"
    reason = await refused_reason(room.url, "/live", {})
    assert reason["code"] == "invalid_input"
    reason = await refused_reason(room.url, "/live", {"session_id": room.session_id, "token": "x.y.z"})
    assert reason["code"] == "unauthorized"
    reason = await refused_reason(room.url, "/moderation",
                                  {"session_id": room.session_id, "token": room.viewer})
    assert reason["code"] == "forbidden"
    reason = await refused_reason(room.url, "/moderation", {"session_id": room.session_id})
    assert reason["code"] == "unauthorized"


async def test_missed_events_are_replayed_exactly_on_reconnect(api: Api) -> None:
    room = await make_room(api)
    sender = await connect(room.url, "/live", {"session_id": room.session_id, "token": room.host})
    viewer = await connect(room.url, "/live", {"session_id": room.session_id, "token": room.viewer})
    try:
        await sender.call("comment", {"text": "before"})
        got = await viewer.wait(lambda: viewer.comments())
        epoch = viewer.of("hello")[0]["epoch"]
        last = got[-1]["seq"]
        await viewer.close()
        # 50 room events while it is away (straight into the history, like any process would:
        # the per-user comment rate limit is not what this test is about)
        sent = [await room_comment(api, room.session_id, i) for i in range(50)]
        back = await connect(room.url, "/live", {"session_id": room.session_id,
                                                 "token": room.viewer, "epoch": epoch,
                                                 "last_seq": last})
        try:
            await back.wait(lambda: len(back.comments()) >= 50)
            await asyncio.sleep(0.3)  # nothing more (no duplicates) arrives
            assert back.of("hello")[0]["resumed"] is True
            assert not back.of("reload")
            seqs = [c["seq"] for c in back.comments()]
            assert seqs == sent == list(range(last + 1, last + 51))
            assert [c["text"] for c in back.comments()] == [f"c{i}" for i in range(50)]
            # a position that was never handed out, or another epoch: reload
            other = await connect(room.url, "/live", {"session_id": room.session_id,
                                                      "epoch": "nope", "last_seq": 3})
            await other.wait(lambda: other.of("state"))
            assert other.of("reload")[0]["reason"] == "epoch_changed"
            assert len(other.comments()) == 50  # recent comments instead (capped)
            await other.close()
        finally:
            await back.close()
    finally:
        await sender.close()


async def room_comment(api: Api, session_id: int, i: int) -> int:
    hub = api.app[hub_key]
    appended = await hub.history.append(session_id, {
        "ev": "comment", "id": f"x{i}", "user": {"id": 1, "name": "t"}, "text": f"c{i}", "ts": 0})
    return appended.last_seq


async def test_late_joiner_gets_recent_comments_and_state(api: Api) -> None:
    room = await make_room(api)
    sender = await connect(room.url, "/live", {"session_id": room.session_id, "token": room.viewer})
    try:
        for text in ("一", "二", "三"):
            ack = await sender.call("comment", {"text": text})
            assert ack["ok"], ack
        late = await connect(room.url, "/live", {"session_id": room.session_id})
        await late.wait(lambda: late.of("state") and len(late.comments()) >= 3)
        assert [c["text"] for c in late.comments()] == ["一", "二", "三"]
        names = [e for e, _ in late.events]
        assert names.index("hello") < names.index("comments") < names.index("state")
        state = late.of("state")[0]
        assert state["session_id"] == room.session_id and "viewers" in state and "sales" in state
        await late.close()
    finally:
        await sender.close()


async def test_bad_input_gets_clear_errors_and_others_carry_on(api: Api) -> None:
    room = await make_room(api)
    auth = {"session_id": room.session_id}
    flooder = await connect(room.url, "/live", {**auth, "token": room.viewer})
    other = await connect(room.url, "/live", {**auth, "token": room.host})
    try:
        unknown = await flooder.call("shout", {"text": "x"})
        assert unknown["error"]["code"] == "unknown_event"
        fake_connect = await flooder.call("connect", {"token": "x"})
        assert fake_connect["error"]["code"] == "unknown_event"
        not_object = await flooder.call("comment", ["list"])
        assert not_object["error"]["code"] == "invalid_input"
        too_long = await flooder.call("comment", {"text": "长" * 201})
        assert too_long["error"]["code"] == "too_long" and too_long["error"]["limit"] == 200
        empty = await flooder.call("comment", {"text": "   "})
        assert empty["error"]["code"] == "empty"
        invisible = await flooder.call("comment", {"text": "\x00\x07 "})
        assert invisible["error"]["code"] == "empty"
        surrogate = await flooder.call("question", {"text": "能吃吗\ud800"})
        assert surrogate["error"]["code"] == "bad_text"
        # per-user comment rate limit (5 per 10 s)
        codes = [(await flooder.call("comment", {"text": f"m{i}"}))
                 .get("error", {}).get("code") for i in range(7)]
        assert codes[:5] == [None] * 5 and codes[5:] == ["rate_limited"] * 2
        # an event flood: the socket's budget runs out, the server answers rate_limited
        for _ in range(60):
            await flooder.client.emit("like", {}, namespace="/live")
        await flooder.wait(lambda: any(r.get("code") == "rate_limited" and r["event"] == "like"
                                       for r in flooder.of("refused")))
        # meanwhile another user is served normally
        ack = await other.call("comment", {"text": "还在吗"})
        assert ack["ok"] is True
        await other.wait(lambda: any(c["text"] == "还在吗" for c in other.comments()))
    finally:
        await flooder.close()
        await other.close()


async def test_oversized_packet_closes_only_that_connection(api: Api) -> None:
    room = await make_room(api)
    auth = {"session_id": room.session_id}
    big = await connect(room.url, "/live", {**auth, "token": room.viewer})
    other = await connect(room.url, "/live", {**auth, "token": room.host})
    try:
        await big.client.emit("comment", {"text": "x" * 40_000}, namespace="/live")
        for _ in range(50):
            if not big.client.connected:
                break
            await asyncio.sleep(0.1)
        assert not big.client.connected
        ack = await other.call("comment", {"text": "ok"})
        assert ack["ok"] is True
    finally:
        await other.close()
        await big.close()


def _offset_time(frame: dict[str, Any]) -> datetime:
    """`at` is ISO 8601 with an offset and names the same instant as `ts` (epoch ms)."""
    at = datetime.fromisoformat(frame["at"])
    assert at.tzinfo is not None and at.utcoffset() is not None, frame["at"]
    assert int(at.timestamp() * 1000) == frame["ts"], frame
    return at


async def test_comment_and_state_times_carry_their_offset(api: Api) -> None:
    """Socket frames keep `ts` (epoch ms, older clients read it) and add `at` in the API's time
    format: live comments, a late joiner's recent comments and both kinds of `state` frame."""
    room = await make_room(api)
    auth = {"session_id": room.session_id}
    viewer = await connect(room.url, "/live", {**auth, "token": room.viewer})
    try:
        joined = (await viewer.wait(lambda: viewer.of("state")))[0]  # the join snapshot
        _offset_time(joined)
        ack = await viewer.call("comment", {"text": "几点开始发货?"})
        assert ack["ok"], ack
        live = (await viewer.wait(lambda: viewer.comments()))[0]
        sent = _offset_time(live)
        assert abs((datetime.now(UTC) - sent).total_seconds()) < 30
        await viewer.call("like", {"count": 1})
        fanned = await viewer.wait(lambda: viewer.of("state")[1:])  # a coalesced room update
        _offset_time(fanned[0])
        late = await connect(room.url, "/live", auth)
        try:
            (recent,) = await late.wait(lambda: late.comments())
            assert recent["at"] == live["at"] and recent["ts"] == live["ts"]
        finally:
            await late.close()
        # Comments stored before `at` existed get one from their `ts`.
        await room_comment(api, room.session_id, 1)
        old = await viewer.wait(lambda: [c for c in viewer.comments() if c["id"] == "x1"])
        assert old[0]["at"] == "1970-01-01T00:00:00.000+00:00"
    finally:
        await viewer.close()
