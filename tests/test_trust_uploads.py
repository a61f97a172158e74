"""Uploads: type decided by content, size limited, random names, served back with nosniff; claim
photos only to the parties of their claim."""

from __future__ import annotations

import hashlib

from aiohttp import ClientResponse
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection

from infra.settings import Settings
from server.database import MIGRATIONS_DIR
from server.keys import database_key
from tests.conftest import Api, AppFactory
from tests.trust_support import (
    HTML,
    JPEG,
    PDF,
    PNG,
    bought_and_picked_up,
    buy,
    make_farm,
    pick_up,
    upload,
)


async def test_images_and_pdf_round_trip(api: Api) -> None:
    _, host = await api.user("host")
    for data, name, ctype in ((JPEG, "zzphoto.jpg", "image/jpeg"), (PNG, "zzpic.png", "image/png"),
                              (PDF, "zzreport.pdf", "application/pdf")):
        resp = await upload(api, host, data, "qc", name, ctype)
        assert resp.status == 201, await resp.text()
        body = await resp.json()
        assert body["content_type"] == ctype and body["size"] == len(data)
        assert body["sha256"] == hashlib.sha256(data).hexdigest()
        stored = body["url"].rsplit("/", 1)[1]
        assert "zz" not in stored and len(stored.split(".")[0]) == 64
        back = await api.client.get(body["url"], headers=api.auth(host))
        assert back.status == 200 and await back.read() == data
        assert back.headers["X-Content-Type-Options"] == "nosniff"
        assert back.content_type == ctype
    # Raw body (no multipart) works too; the client's Content-Type is not trusted.
    resp = await api.client.post("/api/uploads?purpose=review", data=PNG,
                                 headers={**api.auth(host), "Content-Type": "image/jpeg"})
    assert resp.status == 201 and (await resp.json())["content_type"] == "image/png"


async def test_wrong_type_oversized_and_empty_are_refused(make_api: AppFactory, settings: Settings) -> None:
    api = await make_api(settings.with_(max_upload_bytes=4096))
    _, viewer = await api.user("viewer")
    resp = await upload(api, viewer, HTML, "claim", "photo.jpg", "image/jpeg")
    assert resp.status == 415
    assert (await resp.json())["error"]["code"] == "unsupported_upload_type"
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    assert (await upload(api, viewer, svg, "claim", "x.png", "image/png")).status == 415
    big = JPEG + b"\x00" * 5000
    resp = await upload(api, viewer, big, "claim")
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "upload_too_large"
    resp = await api.client.post("/api/uploads?purpose=claim", data=big,
                                 headers={**api.auth(viewer), "Content-Type": "image/jpeg"})
    assert resp.status == 413
    resp = await api.client.post("/api/uploads?purpose=claim", data=b"",
                                 headers={**api.auth(viewer), "Content-Type": "image/jpeg"})
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "empty_upload"
    assert (await upload(api, viewer, JPEG, "../../etc")).status == 415
    resp = await api.client.post("/api/uploads?purpose=claim", data=JPEG,
                                 headers={"Content-Type": "image/jpeg"})
    assert resp.status == 401


async def test_private_claim_photos_and_foreign_upload_ids(api: Api) -> None:
    _, owner = await api.user("viewer")
    _, stranger = await api.user("viewer")
    _, assistant = await api.user("assistant")
    photo = await (await upload(api, owner, JPEG, "claim")).json()
    # Not attached to any claim yet: its uploader's (and admins'), nobody else's.
    assert (await api.client.get(photo["url"])).status == 401
    assert (await api.client.get(photo["url"], headers=api.auth(stranger))).status == 403
    assert (await api.client.get(photo["url"], headers=api.auth(assistant))).status == 403
    assert (await api.client.get(photo["url"], headers=api.auth(owner))).status == 200
    assert (await api.client.get(photo["url"], headers=api.auth(api.admin_token))).status == 200
    for bad in ("nope.jpg", "0" * 64 + ".html", "../secret_key"):
        assert (await api.client.get(f"/api/uploads/{bad}")).status in (403, 404)
    # A host cannot attach someone else's upload to a QC report.
    from tests.trust_support import make_farm

    farm = await make_farm(api)
    resp = await api.client.post(f"/api/batches/{farm.batch_code}/qc-reports", json={
        "tester": "x", "tested_at": "2026-05-01T08:00:00+00:00", "attachments": [photo["id"]],
        "measurements": [{"kind": "brix", "value": 12}]}, headers=api.auth(farm.host))
    assert resp.status == 403


async def test_uploads_per_user_are_rate_limited(api: Api) -> None:
    from server.routes.trust import UPLOADS_PER_HOUR

    _, viewer = await api.user("viewer")
    for _ in range(UPLOADS_PER_HOUR):
        resp = await api.client.post("/api/uploads?purpose=review", data=PNG,
                                     headers={**api.auth(viewer), "Content-Type": "image/png"})
        assert resp.status == 201
    resp = await api.client.post("/api/uploads?purpose=review", data=PNG,
                                 headers={**api.auth(viewer), "Content-Type": "image/png"})
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
    _, other = await api.user("viewer")
    resp = await api.client.post("/api/uploads?purpose=review", data=PNG,
                                 headers={**api.auth(other), "Content-Type": "image/png"})
    assert resp.status == 201


async def _claim_with_photo(api: Api, buyer: str, order_id: int) -> tuple[str, int]:
    photo = await (await upload(api, buyer, JPEG, "claim")).json()
    resp = await api.client.post("/api/claims", json={
        "order_id": order_id, "reason": "spoiled", "photos": [photo["id"]]}, headers=api.auth(buyer))
    assert resp.status == 201, await resp.text()
    return str(photo["url"]), int(photo["id"])


async def _fetch(api: Api, url: str, token: str | None) -> ClientResponse:
    return await api.client.get(url, headers=api.auth(token) if token else {})


async def test_claim_photos_are_for_the_claims_parties(any_db_api: Api) -> None:
    """The buyer, the host of the order's session, assistants and admins see a claim photo;
    another host, another neighbour and an anonymous caller holding the link do not."""
    api = any_db_api
    farm = await make_farm(api)
    _, buyer, order_id = await bought_and_picked_up(farm)
    url, photo_id = await _claim_with_photo(api, buyer, order_id)
    _, other_host = await api.user("host")
    _, neighbour = await api.user("viewer")
    _, assistant = await api.user("assistant")
    for who in (buyer, farm.host, assistant, api.admin_token):
        resp = await _fetch(api, url, who)
        assert resp.status == 200 and await resp.read() == JPEG
        assert resp.headers["Cache-Control"] == "private, no-store"
    for who, status, code in ((other_host, 403, "forbidden"), (neighbour, 403, "forbidden"),
                              (None, 401, "unauthorized")):
        resp = await _fetch(api, url, who)
        assert resp.status == status, (who, await resp.text())
        assert (await resp.json())["error"]["code"] == code
    # A photo belongs to one claim: reusing it on another would show it to that claim's parties.
    second = await buy(farm, buyer)
    await pick_up(farm, buyer, second)
    resp = await api.client.post("/api/claims", json={
        "order_id": second, "reason": "spoiled", "photos": [photo_id]}, headers=api.auth(buyer))
    assert resp.status == 409 and (await resp.json())["error"]["reason"] == "photo_in_use"
    # Public evidence stays public: a review photo, once the review is filed.
    review_photo = await (await upload(api, buyer, PNG, "review", "r.png", "image/png")).json()
    resp = await api.client.post("/api/reviews", json={
        "order_id": order_id, "stars": 4, "photos": [review_photo["id"]]}, headers=api.auth(buyer))
    assert resp.status == 201, await resp.text()
    for who in (None, other_host, neighbour):
        assert (await _fetch(api, review_photo["url"], who)).status == 200


def _alembic(connection: Connection, action: str, target: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    getattr(command, action)(cfg, target)


async def test_migration_links_photos_of_existing_claims(api: Api) -> None:
    """Claims filed before uploads recorded their claim keep their photos visible to their host."""
    farm = await make_farm(api)
    _, buyer, order_id = await bought_and_picked_up(farm)
    url, _ = await _claim_with_photo(api, buyer, order_id)
    engine = api.app[database_key].engine
    async with engine.begin() as conn:
        await conn.run_sync(_alembic, "downgrade", "0400")
        columns = [row[1] for row in await conn.execute(text("PRAGMA table_info(trust_uploads)"))]
        assert "claim_id" not in columns
        await conn.run_sync(_alembic, "upgrade", "heads")
    assert (await _fetch(api, url, farm.host)).status == 200
