"""Disabling a user or changing their role ends their tokens and sockets, in every process."""

from __future__ import annotations

import asyncio

from commerce.event_payloads import TokenRevoked
from commerce.events import DomainEvent
from infra.settings import Settings
from server.cluster_component import cluster_key
from tests.conftest import Api, AppFactory
from tests.realtime_support import connect, make_room, refused_reason


async def _me(api: Api, token: str) -> tuple[int, dict[str, object]]:
    resp = await api.client.get("/api/me", headers=api.auth(token))
    return resp.status, await resp.json()


async def _patch(api: Api, user_id: int, body: dict[str, object], token: str | None = None) -> int:
    resp = await api.client.patch(f"/api/users/{user_id}", json=body,
                                  headers=api.auth(token or api.admin_token))
    return resp.status


async def test_disabled_users_token_is_refused_at_once(api: Api) -> None:
    user_id, token = await api.user("viewer", "disabled_li")
    assert (await _me(api, token))[0] == 200
    assert await _patch(api, user_id, {"disabled": True}) == 200
    status, body = await _me(api, token)
    assert status == 401
    error = body["error"]
    assert isinstance(error, dict)
    assert error["code"] == "unauthorized" and error["reason"] == "token_revoked"
    resp = await api.client.post("/api/auth/token",
                                 json={"username": "disabled_li", "password": "password-disabled_li"})
    assert resp.status == 401
    # Enabled again: a fresh login works, the old token stays dead.
    assert await _patch(api, user_id, {"disabled": False}) == 200
    fresh = await api.login("disabled_li", "password-disabled_li")
    assert (await _me(api, fresh))[0] == 200
    assert (await _me(api, token))[0] == 401


async def test_role_change_ends_tokens_of_the_old_role(api: Api) -> None:
    user_id, token = await api.user("host", "demoted_wang")
    resp = await api.client.post("/api/sessions", json={"title": "t"}, headers=api.auth(token))
    assert resp.status == 201
    assert await _patch(api, user_id, {"role": "viewer"}) == 200
    resp = await api.client.post("/api/sessions", json={"title": "t"}, headers=api.auth(token))
    assert resp.status == 401
    # Signing in again within the same second gives a working token with the new role.
    viewer = await api.login("demoted_wang", "password-demoted_wang")
    status, me = await _me(api, viewer)
    assert status == 200 and me["role"] == "viewer"
    # A new display name alone ends nothing.
    assert await _patch(api, user_id, {"display_name": "王叔"}) == 200
    status, me = await _me(api, viewer)
    assert status == 200 and me["display_name"] == "王叔"


async def test_admin_cannot_lock_themselves_out_and_others_cannot_patch(api: Api) -> None:
    _, me = await _me(api, api.admin_token)
    admin_id = int(str(me["id"]))
    resp = await api.client.patch(f"/api/users/{admin_id}", json={"disabled": True},
                                  headers=api.auth(api.admin_token))
    assert resp.status == 409 and (await resp.json())["error"]["reason"] == "self_lockout"
    assert await _patch(api, admin_id, {"role": "viewer"}) == 409
    assert (await _me(api, api.admin_token))[0] == 200
    target, _ = await api.user("viewer")
    _, host = await api.user("host")
    assert await _patch(api, target, {"disabled": True}, token=host) == 403
    assert await _patch(api, 424242, {"disabled": True}) == 404
    assert await _patch(api, target, {"role": "owner"}) == 400


async def test_revocation_reaches_another_process(make_api: AppFactory, settings: Settings) -> None:
    first = await make_api(settings)
    second = await make_api(settings)  # same Redis and database: another process of one deployment
    user_id, token = await first.user("viewer")
    assert (await _me(second, token))[0] == 200
    heard: list[DomainEvent] = []

    async def on(event: DomainEvent) -> None:
        heard.append(event)

    second.app[cluster_key].bus.subscribe(on, ["token_revoked"])
    assert await _patch(first, user_id, {"disabled": True}) == 200
    # Carried by the cluster bus, not waiting for the backstop read of the cut-offs.
    for _ in range(50):
        if (status := (await _me(second, token))[0]) != 200:
            break
        await asyncio.sleep(0.1)
    assert status == 401
    assert [(e.origin, e.payload) for e in heard if isinstance(e.payload, TokenRevoked)] == [
        (first.app[cluster_key].me.process_id, heard[0].payload)]
    assert isinstance(heard[0].payload, TokenRevoked) and heard[0].payload.user_id == user_id


async def test_revoked_users_sockets_close_and_cannot_rejoin(api: Api) -> None:
    room = await make_room(api)
    auth = {"session_id": room.session_id, "token": room.viewer}
    viewer = await connect(room.url, "/live", auth)
    watcher = await connect(room.url, "/live", {"session_id": room.session_id})
    try:
        await viewer.wait(lambda: viewer.of("hello"))
        assert await _patch(api, room.viewer_id, {"disabled": True}) == 200
        for _ in range(100):
            if not viewer.client.connected:
                break
            await asyncio.sleep(0.05)
        assert not viewer.client.connected
        assert watcher.client.connected  # only that user's sockets go
        reason = await refused_reason(room.url, "/live", auth)
        assert reason["code"] == "unauthorized" and reason["reason"] == "token_revoked"
    finally:
        await viewer.close()
        await watcher.close()
