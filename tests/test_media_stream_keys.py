"""Stream keys end with their host's right to stream, and rotate.

Guards against: a disabled or demoted host's key still publishing (WHIP and RTMP) or still
being shown to them; a rotated key still publishing; racing rotations leaving more than one
working key; a live publisher outliving its host's revocation or a rotation that asks for it.
"""

from __future__ import annotations

import asyncio

import pytest

from infra.settings import Settings
from media.keys import media_hub_key
from tests.conftest import Api
from tests.media_flow import publish as rtmp_publish
from tests.media_flow import rtmp_url
from tests.test_media_webrtc import new_session, no_leaked_peers  # noqa: F401 - autouse fixture
from tests.test_media_webrtc_errors import offer_sdp
from tests.webrtc_clients import publish, wait_for

pytestmark = pytest.mark.timeout(120)


async def whip_status(api: Api, session_id: int, key: str) -> int:
    pub = await publish(api.client, session_id, key, audio=False)
    await pub.pc.close()
    return pub.status


async def host_id_of(api: Api, session_id: int) -> int:
    return int((await (await api.client.get(f"/api/sessions/{session_id}")).json())["host_id"])


async def patch_user(api: Api, user_id: int, body: dict[str, object]) -> None:
    resp = await api.client.patch(f"/api/users/{user_id}", json=body, headers=api.auth(api.admin_token))
    assert resp.status == 200, await resp.text()


async def test_disabled_or_demoted_host_key_publishes_nothing(make_api, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    api = await make_api(settings.with_(publisher_grace_s=30))
    session_id, key, _ = await new_session(api)
    host_id = await host_id_of(api, session_id)
    hub = api.app[media_hub_key]

    pub = await publish(api.client, session_id, key, audio=False)
    try:
        assert pub.status == 201, pub.body
        assert await wait_for(lambda: hub.streams[session_id].fanouts["video"].forwarded > 0, 20)
        # Disabling the host stops their live publisher at once (not only new publishes).
        await patch_user(api, host_id, {"disabled": True})
        assert await wait_for(lambda: hub.publisher_resource(session_id) is None, 5)
        assert await whip_status(api, session_id, key) == 403
    finally:
        await pub.pc.close()

    await patch_user(api, host_id, {"disabled": False})
    assert await whip_status(api, session_id, key) == 201

    await patch_user(api, host_id, {"role": "viewer"})
    assert await wait_for(lambda: hub.publisher_resource(session_id) is None, 5)
    assert await whip_status(api, session_id, key) == 403
    resp = await api.client.post(f"/whip/{session_id}", data=await offer_sdp(), headers={
        "Content-Type": "application/sdp", "Authorization": f"Bearer {key}"})
    assert resp.status == 403 and (await resp.json())["error"]["reason"] == "host_revoked"


async def test_demoted_host_token_does_not_read_key(make_api, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    api = await make_api(settings)
    host_id, host_token = await api.user("host", "loquat_host")
    resp = await api.client.post("/api/sessions", json={"title": "枇杷"}, headers=api.auth(host_token))
    session_id = (await resp.json())["id"]
    resp = await api.client.get(f"/api/sessions/{session_id}", headers=api.auth(host_token))
    body = await resp.json()
    assert "stream_key" in body and body["publisher"] is None
    await patch_user(api, host_id, {"role": "viewer"})
    token = await api.login("loquat_host", "password-loquat_host")
    resp = await api.client.get(f"/api/sessions/{session_id}", headers=api.auth(token))
    assert "stream_key" not in await resp.json()
    # Nor may they rotate it.
    resp = await api.client.post(f"/api/sessions/{session_id}/stream-key", headers=api.auth(token))
    assert resp.status == 403


async def test_rotation_races_leave_one_key_and_cut_the_old_one(make_api, any_db_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    api = await make_api(any_db_settings)
    session_id, old_key, host_token = await new_session(api)
    _, other_host = await api.user("host")
    resp = await api.client.post(f"/api/sessions/{session_id}/stream-key", headers=api.auth(other_host))
    assert resp.status == 403

    responses = await asyncio.gather(*(
        api.client.post(f"/api/sessions/{session_id}/stream-key", headers=api.auth(host_token))
        for _ in range(20)))
    assert [r.status for r in responses] == [200] * 20
    keys = [(await r.json())["stream_key"] for r in responses]
    assert len(set(keys)) == 20 and old_key not in keys
    current = (await (await api.client.get(f"/api/sessions/{session_id}",
                                           headers=api.auth(host_token))).json())["stream_key"]
    assert current in keys
    statuses = await asyncio.gather(*(whip_status(api, session_id, k) for k in [old_key, *keys]))
    assert sorted(statuses) == [201] + [403] * 20
    assert statuses[1 + keys.index(current)] == 201


async def test_rotation_with_disconnect_stops_the_live_whip_publisher(make_api, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    api = await make_api(settings.with_(publisher_grace_s=30))
    session_id, key, host_token = await new_session(api)
    hub = api.app[media_hub_key]
    pub = await publish(api.client, session_id, key, audio=False)
    new = None
    try:
        assert pub.status == 201
        assert await wait_for(lambda: hub.streams[session_id].fanouts["video"].forwarded > 0, 20)
        resp = await api.client.post(f"/api/sessions/{session_id}/stream-key", headers=api.auth(host_token))
        body = await resp.json()
        assert body["disconnected"] is False
        assert hub.publisher_resource(session_id) is not None  # still live: not asked to stop
        resp = await api.client.post(f"/api/sessions/{session_id}/stream-key", json={"disconnect": True},
                                     headers=api.auth(host_token))
        body = await resp.json()
        assert resp.status == 200 and body["disconnected"] is True
        assert hub.publisher_resource(session_id) is None
        assert await whip_status(api, session_id, key) == 403
        new = await publish(api.client, session_id, body["stream_key"], audio=False)
        assert new.status == 201
    finally:
        await pub.pc.close()
        if new is not None:
            await new.pc.close()


async def test_rtmp_refuses_revoked_and_rotated_keys_and_stops_live_one(make_api, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    api = await make_api(settings.with_(rtmp_port=0, publisher_grace_s=30))
    session_id, key, _ = await new_session(api)
    host_id = await host_id_of(api, session_id)
    hub = api.app[media_hub_key]

    await patch_user(api, host_id, {"disabled": True})
    refused = await rtmp_publish(rtmp_url(api, key), 2)
    assert await asyncio.wait_for(refused.wait(), 15) != 0
    await patch_user(api, host_id, {"disabled": False})

    live = await rtmp_publish(rtmp_url(api, key), 30)
    try:
        assert await wait_for(lambda: (hub.publisher_info(session_id) or {}).get("kind") == "rtmp", 15)
        # (The host's own tokens ended with the disabling: an admin rotates here.)
        resp = await api.client.post(f"/api/sessions/{session_id}/stream-key", json={"disconnect": True},
                                     headers=api.auth(api.admin_token))
        assert (await resp.json())["disconnected"] is True
        # The live RTMP client is cut off long before its 30 s are over.
        assert await asyncio.wait_for(live.wait(), 10) != 0
        old = await rtmp_publish(rtmp_url(api, key), 2)
        assert await asyncio.wait_for(old.wait(), 15) != 0
    finally:
        if live.returncode is None:
            live.kill()
            await live.wait()

    # A live RTMP publisher also stops when its host is demoted.
    new_key = (await resp.json())["stream_key"]
    again = await rtmp_publish(rtmp_url(api, new_key), 30)
    try:
        assert await wait_for(lambda: (hub.publisher_info(session_id) or {}).get("kind") == "rtmp", 15)
        await patch_user(api, host_id, {"role": "assistant"})
        assert await asyncio.wait_for(again.wait(), 10) != 0
    finally:
        if again.returncode is None:
            again.kill()
            await again.wait()
