"""Uploads: type decided by content, size limited, random names, served back with nosniff."""

from __future__ import annotations

import hashlib

from server.settings import Settings
from tests.conftest import Api, AppFactory
from tests.trust_support import HTML, JPEG, PDF, PNG, upload


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
    assert (await api.client.get(photo["url"])).status == 403
    assert (await api.client.get(photo["url"], headers=api.auth(stranger))).status == 403
    assert (await api.client.get(photo["url"], headers=api.auth(owner))).status == 200
    assert (await api.client.get(photo["url"], headers=api.auth(assistant))).status == 200
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
