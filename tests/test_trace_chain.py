"""Trace: QC reports and events form a signed hash chain; any edited row is found and named."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from typing import Any

import pytest
import segno

from infra.settings import Settings
from server.cli_commerce import verify_trace
from server.keys import settings_key
from tests.conftest import Api
from tests.trust_support import PDF, Farm, make_farm, sql, upload
from trust.trace_signing import TraceSigner

QC = {
    "tester": "小美", "lab": "农场快检室", "tested_at": "2026-05-01T16:00:00+08:00",
    "summary": "农残阴性",
    "measurements": [
        {"kind": "pesticide_quick_test", "value": 12.5},
        {"kind": "brix", "value": 13.2},
        {"kind": "acidity", "value": 0.42},
        {"kind": "custom", "name": "维生素C", "value": 8.1, "unit": "mg/100g"},
    ],
}


async def _evidence(api: Api) -> tuple[Farm, dict[str, Any]]:
    farm = await make_farm(api)
    h = api.auth(farm.host)
    code = farm.batch_code
    # Local times with an offset (as a phone in China sends them) must hash the same after storage.
    resp = await api.client.post(f"/api/batches/{code}/trace-events", json={
        "kind": "harvested", "location": "3号坡", "quantity": 60,
        "occurred_at": "2026-05-01T06:30:00.123456+08:00"}, headers=h)
    assert resp.status == 201, await resp.text()
    pdf = await (await upload(api, farm.host, PDF, "qc", "report.pdf", "application/pdf")).json()
    resp = await api.client.post(f"/api/batches/{code}/qc-reports",
                                 json={**QC, "attachments": [pdf["id"]]}, headers=h)
    assert resp.status == 201, await resp.text()
    report = await resp.json()
    for body in ({"kind": "packed", "quantity": 50},
                 {"kind": "cold_chain", "temperature_c": 4.5, "humidity_pct": 88},
                 {"kind": "arrived_at_pickup", "location": "阳光花园自提点"}):
        resp = await api.client.post(f"/api/batches/{code}/trace-events", json=body, headers=h)
        assert resp.status == 201, await resp.text()
    return farm, report


async def _verify(api: Api, code: str) -> dict[str, Any]:
    resp = await api.client.get(f"/api/trace/{code}/verify")
    assert resp.status == 200
    return dict(await resp.json())


async def test_public_trace_shows_journey_qc_and_products(any_db_api: Api) -> None:
    api = any_db_api
    farm, report = await _evidence(api)
    assert report["conclusion"] == "pass"
    pesticide = report["measurements"][0]
    assert pesticide["passed"] is True and pesticide["unit"] == "%"
    resp = await api.client.get(f"/api/trace/{farm.batch_code}")
    assert resp.status == 200
    body = await resp.json()
    assert [e["kind"] for e in body["journey"]] == [
        "harvested", "tested", "packed", "cold_chain", "arrived_at_pickup"]
    chain = body["journey"]
    assert all(chain[i]["prev_hash"] == chain[i - 1]["hash"] for i in range(1, len(chain)))
    assert body["head"]["hash"] == chain[-1]["hash"] and body["head"]["seq"] == 5
    assert body["qc_reports"][0]["measurements"][1]["value"] == 13.2
    assert body["qc_reports"][0]["attachments"][0]["content_type"] == "application/pdf"
    assert body["products"][0]["id"] == farm.product_id
    assert body["batch"]["farm"] == "老张合作农场"
    # Look-ups are counted (the dashboard's trace look-up rate reads them).
    assert body["lookups"] == 1
    again = await (await api.client.get(f"/api/trace/{farm.batch_code}")).json()
    assert again["lookups"] == 1  # a reload by the same visitor the same day is not another
    _, viewer = await api.user("viewer")
    signed_in = await (await api.client.get(f"/api/trace/{farm.batch_code}",
                                            headers=api.auth(viewer))).json()
    assert signed_in["lookups"] == 2
    verdict = await _verify(api, farm.batch_code)
    assert verdict["ok"] is True and verdict["events"] == 5 and verdict["first_problem"] is None
    # The head signature checks with nothing but the published public key.
    key = await (await api.client.get("/api/trace-signing-key")).json()
    signer = TraceSigner(api.app[settings_key].secret_key.get_secret_value())
    assert key["public_key"] == signer.public_key_b64
    assert signer.verify(farm.batch_code, 5, body["head"]["hash"], body["head"]["signature"])
    assert not signer.verify(farm.batch_code, 4, body["head"]["hash"], body["head"]["signature"])


@pytest.mark.parametrize(("statement", "record", "reason"), [
    ("UPDATE trace_events SET location = '别处' WHERE batch_id = :b AND seq = 3",
     "trace_event", "hash_mismatch"),
    ("UPDATE trace_events SET data = '{\"temperature_c\": 2.0, \"humidity_pct\": 88}' "
     "WHERE batch_id = :b AND kind = 'cold_chain'", "trace_event", "hash_mismatch"),
    ("UPDATE qc_measurements SET value = 3.0 WHERE kind = 'pesticide_quick_test' AND report_id IN "
     "(SELECT id FROM qc_reports WHERE batch_id = :b)", "qc_measurement", "hash_mismatch"),
    ("UPDATE qc_reports SET tester = '别人' WHERE batch_id = :b", "qc_report", "hash_mismatch"),
    ("UPDATE trust_uploads SET sha256 = 'ab' WHERE id IN (SELECT id FROM trust_uploads)",
     "upload", "hash_mismatch"),
    ("UPDATE batches SET farm = '别的农场' WHERE id = :b", "batch", "origin_changed"),
    ("DELETE FROM trace_events WHERE batch_id = :b AND seq = 5", "trace_head", "head_mismatch"),
    ("DELETE FROM qc_measurements WHERE kind = 'brix' AND report_id IN "
     "(SELECT id FROM qc_reports WHERE batch_id = :b)", "qc_measurement", "missing"),
])
async def test_editing_any_stored_row_is_named(
    any_db_api: Api, statement: str, record: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    api = any_db_api
    farm, _report = await _evidence(api)
    assert (await _verify(api, farm.batch_code))["ok"] is True
    await sql(api, statement, b=farm.batch_id)
    verdict = await _verify(api, farm.batch_code)
    assert verdict["ok"] is False
    problem = verdict["first_problem"]
    assert (problem["record"], problem["reason"]) == (record, reason), problem
    assert problem["id"] is not None
    # The CLI says the same and exits non-zero.
    capsys.readouterr()
    assert await verify_trace(api.app, farm.batch_code) == 4
    out, err = capsys.readouterr()
    assert json.loads(out.splitlines()[0])["first_problem"]["record"] == record
    assert f"TAMPERED {record} {problem['id']}" in err


async def test_rewriting_the_whole_chain_is_caught_by_the_signature(api: Api) -> None:
    """An attacker who recomputes every hash after an edit still cannot sign the new head."""
    farm, _ = await _evidence(api)
    from server.keys import database_key
    from trust.trace import events_for
    from trust.trace_signing import sha256_hex

    async with api.app[database_key].session() as db:
        from commerce.catalog import get_batch

        batch = await get_batch(db, farm.batch_id)
        events = await events_for(db, batch.id)
        prev = events[0].prev_hash
        for event in events:
            if event.kind == "cold_chain":
                event.data = {"temperature_c": 1.0}
            event.prev_hash = prev
            event.hash = sha256_hex(event.content())
            prev = event.hash
        from trust.trace import head_for

        head = await head_for(db, batch.id)
        assert head is not None
        head.hash = prev
    verdict = await _verify(api, farm.batch_code)
    assert verdict["ok"] is False
    assert verdict["first_problem"]["reason"] == "bad_signature"


async def test_forged_codes_and_wrong_owner(api: Api) -> None:
    farm, _ = await _evidence(api)
    for code in ("NOPE-123", "B-" + "x" * 60, "%3Cscript%3E", "a..b"):
        resp = await api.client.get(f"/api/trace/{code}")
        assert resp.status == 404, code
        assert (await resp.json())["error"]["code"] == "batch_not_found"
    assert (await api.client.get("/api/trace/NOPE/verify")).status == 404
    assert (await api.client.get("/api/batches/NOPE/qr.svg")).status == 404
    _, other_host = await api.user("host")
    resp = await api.client.post(f"/api/batches/{farm.batch_code}/trace-events",
                                 json={"kind": "packed"}, headers=api.auth(other_host))
    assert resp.status == 403
    _, viewer = await api.user("viewer")
    resp = await api.client.post(f"/api/batches/{farm.batch_code}/qc-reports", json=QC,
                                 headers=api.auth(viewer))
    assert resp.status == 403
    # 'tested' only comes from a QC report; a cold-chain reading needs a temperature.
    h = api.auth(farm.host)
    for body in ({"kind": "tested"}, {"kind": "cold_chain"},
                 {"kind": "cold_chain", "temperature_c": 500}):
        resp = await api.client.post(f"/api/batches/{farm.batch_code}/trace-events", json=body,
                                     headers=h)
        assert resp.status == 400, body
    bad_qc = {**QC, "measurements": [{"kind": "custom", "value": 1}]}
    resp = await api.client.post(f"/api/batches/{farm.batch_code}/qc-reports", json=bad_qc, headers=h)
    assert resp.status == 400
    # A failing pesticide test makes the report fail.
    failing = {**QC, "measurements": [{"kind": "pesticide_quick_test", "value": 61}]}
    resp = await api.client.post(f"/api/batches/{farm.batch_code}/qc-reports", json=failing,
                                 headers=h)
    assert (await resp.json())["conclusion"] == "fail"


async def test_qr_code_opens_the_trace_page(api: Api) -> None:
    farm, _ = await _evidence(api)
    url = f"{api.app[settings_key].base_url}/trace/{farm.batch_code}"
    resp = await api.client.get(f"/api/batches/{farm.batch_code}/qr.svg")
    assert resp.status == 200 and resp.content_type == "image/svg+xml"
    assert resp.headers["X-Trace-Url"] == url
    expected = io.BytesIO()
    segno.make(url, error="m").save(expected, kind="svg", scale=8, border=4,
                                    title=f"溯源 Trace {farm.batch_code}", xmldecl=False)
    assert await resp.read() == expected.getvalue()
    png = await api.client.get(f"/api/batches/{farm.batch_code}/qr.png?scale=4")
    assert png.status == 200 and (await png.read()).startswith(b"\x89PNG")
    assert (await api.client.get(f"/api/batches/{farm.batch_code}/qr.png?scale=999")).status == 400
    page = await api.client.get(f"/trace/{farm.batch_code}")
    assert page.status == 200 and page.content_type == "text/html"


async def test_batch_summary_travels_with_a_pin(api: Api) -> None:
    from server.keys import database_key
    from trust.qc import batch_summary

    farm, report = await _evidence(api)
    async with api.app[database_key].session() as db:
        summary = await batch_summary(db, farm.batch_id)
    assert summary["batch"]["code"] == farm.batch_code
    assert summary["qc"]["report_id"] == report["id"] and summary["qc"]["conclusion"] == "pass"
    assert summary["qc"]["measurements"][1]["name"].startswith("糖度")
    assert summary["trace_url"] == f"/trace/{farm.batch_code}"
    assert len(json.dumps(summary, ensure_ascii=False)) < 2000
    resp = await api.client.get(f"/api/batches/{farm.batch_code}/summary")
    assert (await resp.json())["qc"]["report_id"] == report["id"]


async def test_verify_trace_cli_process(settings: Settings, api: Api) -> None:
    """`python -m server verify-trace CODE` against the same database, as an operator runs it."""
    farm, _ = await _evidence(api)
    env = {**os.environ, "LINLI_DATA_DIR": str(settings.data_dir),
           "LINLI_SECRET_KEY": settings.secret_key.get_secret_value(), "LINLI_DEMO": "0",
           "LINLI_LOG_LEVEL": "WARNING"}
    # Same SQL database; its own embedded Redis, so the CLI's app never shares pub/sub channels
    # with the test's app (verify-trace reads SQL only).
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)

    async def run(*args: str) -> subprocess.CompletedProcess[str]:
        # In a thread: the test's app keeps its event loop (heartbeats, listeners) meanwhile.
        return await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "server", "verify-trace", *args], env=env,
            capture_output=True, text=True, timeout=120, check=False)

    ok = await run(farm.batch_code)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.splitlines()[0])["ok"] is True
    await sql(api, "UPDATE trace_events SET note = 'x' WHERE batch_id = :b AND seq = 2",
              b=farm.batch_id)
    bad = await run()
    assert bad.returncode == 4
    assert "TAMPERED trace_event" in bad.stderr and "(seq 2)" in bad.stderr
    assert (await run("NO-SUCH")).returncode == 2
