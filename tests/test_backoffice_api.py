"""The API the back-office pages stand on: a host's own sessions, a session's title changed with
its preview, products changed after listing (price, batch, photos uploaded and made public)."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api
from tests.trust_support import JPEG, PDF, upload


async def _json(resp: Any, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def test_sessions_listed_by_host(any_db_api: Api) -> None:
    api = any_db_api
    host_id, host = await api.user("host")
    _, other = await api.user("host")
    mine = [await _json(await api.client.post("/api/sessions", json={"title": f"我的{i}"},
                                              headers=api.auth(host)), 201) for i in range(2)]
    await _json(await api.client.post("/api/sessions", json={"title": "别人的"},
                                      headers=api.auth(other)), 201)
    listed = await _json(await api.client.get(f"/api/sessions?host_id={host_id}"))
    assert sorted(s["id"] for s in listed) == sorted(s["id"] for s in mine)
    assert all(s["host_id"] == host_id for s in listed)
    everyone = await _json(await api.client.get("/api/sessions"))
    assert len(everyone) == 3
    for bad in ("abc", "-1", "²", "99999999999"):
        resp = await api.client.get("/api/sessions", params={"host_id": bad})
        assert resp.status == 400, bad
        assert (await resp.json())["error"]["code"] == "invalid_input"


async def test_preview_changes_title(any_db_api: Api) -> None:
    api = any_db_api
    _, host = await api.user("host")
    _, other = await api.user("host")
    session = await _json(await api.client.post("/api/sessions", json={"title": "旧标题"},
                                                headers=api.auth(host)), 201)
    path = f"/api/sessions/{session['id']}/preview"
    resp = await api.client.put(path, json={"title": "别人改的"}, headers=api.auth(other))
    assert resp.status == 403
    data = await _json(await api.client.put(path, json={"title": "枇杷专场", "preview_text": "八点见"},
                                            headers=api.auth(host)))
    assert data["title"] == "枇杷专场" and data["preview_text"] == "八点见"
    assert (await _json(await api.client.get(f"/api/sessions/{session['id']}")))["title"] == "枇杷专场"
    # Leaving the title out keeps it; an empty one is refused.
    await _json(await api.client.put(path, json={"preview_text": "九点见"}, headers=api.auth(host)))
    assert (await _json(await api.client.get(path)))["title"] == "枇杷专场"
    resp = await api.client.put(path, json={"title": ""}, headers=api.auth(host))
    assert resp.status == 400


async def test_product_listed_with_uploaded_photos_made_public(any_db_api: Api) -> None:
    api = any_db_api
    _, host = await api.user("host")
    _, other = await api.user("host")
    photo = await _json(await upload(api, host, JPEG, "product"), 201)
    # Not public until a product shows it.
    assert (await api.client.get(photo["url"])).status == 401
    foreign = await _json(await upload(api, other, JPEG, "product"), 201)
    resp = await api.client.post("/api/products", json={
        "name": "枇杷", "price_fen": 3990, "photo_upload_ids": [foreign["id"]]}, headers=api.auth(host))
    assert resp.status == 403
    pdf = await _json(await upload(api, host, PDF, "product", "r.pdf", "application/pdf"), 201)
    resp = await api.client.post("/api/products", json={
        "name": "枇杷", "price_fen": 3990, "photo_upload_ids": [pdf["id"]]}, headers=api.auth(host))
    assert resp.status == 415
    product = await _json(await api.client.post("/api/products", json={
        "name": "枇杷", "price_fen": 3990, "photo_upload_ids": [photo["id"]]},
        headers=api.auth(host)), 201)
    assert product["photos"] == [photo["url"]]
    got = await api.client.get(photo["url"])
    assert got.status == 200 and await got.read() == JPEG


async def test_product_changed_by_its_host_only(any_db_api: Api) -> None:
    api = any_db_api
    _, host = await api.user("host")
    _, other = await api.user("host")
    _, admin = await api.user("admin")
    batch = await _json(await api.client.post("/api/batches", json={"code": "PIPA-01"},
                                              headers=api.auth(host)), 201)
    foreign_batch = await _json(await api.client.post("/api/batches", json={"code": "OIL-01"},
                                                      headers=api.auth(other)), 201)
    product = await _json(await api.client.post("/api/products", json={
        "name": "枇杷", "price_fen": 3990, "photos": ["/static/a.jpg"]}, headers=api.auth(host)), 201)
    path = f"/api/products/{product['id']}"
    assert (await api.client.patch(path, json={"price_fen": 1}, headers=api.auth(other))).status == 403
    resp = await api.client.patch(path, json={"batch_id": foreign_batch["id"]}, headers=api.auth(host))
    assert resp.status == 403
    assert (await api.client.patch(path, json={"price_fen": -1}, headers=api.auth(host))).status == 400
    assert (await api.client.patch(path, json={"price_fen": "39"}, headers=api.auth(host))).status == 400
    photo = await _json(await upload(api, host, JPEG, "product"), 201)
    changed = await _json(await api.client.patch(path, json={
        "name": "白沙枇杷", "price_fen": 4590, "batch_id": batch["id"],
        "photo_upload_ids": [photo["id"]]}, headers=api.auth(host)))
    assert (changed["name"], changed["price_fen"], changed["unit"], changed["batch_id"]) == (
        "白沙枇杷", 4590, "份", batch["id"])
    assert changed["photos"] == [photo["url"]]
    assert (await api.client.get(photo["url"])).status == 200
    # Leaving fields out keeps them; batch_id null unlinks; an admin may change any product.
    kept = await _json(await api.client.patch(path, json={"unit": "箱"}, headers=api.auth(host)))
    assert (kept["name"], kept["batch_id"], kept["photos"]) == ("白沙枇杷", batch["id"], [photo["url"]])
    unlinked = await _json(await api.client.patch(path, json={"batch_id": None}, headers=api.auth(admin)))
    assert unlinked["batch_id"] is None
    fetched = await _json(await api.client.get(path))
    assert (fetched["unit"], fetched["batch_id"], fetched["price_fen"]) == ("箱", None, 4590)
    missing = await api.client.patch("/api/products/999999999", json={"unit": "x"}, headers=api.auth(host))
    assert missing.status == 404
