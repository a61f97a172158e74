"""Evidence in the stream: pins carry the batch + QC summary, orders record batch and pin moment."""

from __future__ import annotations

import warnings

from commerce.catalog import ProductPin
from commerce.events import DomainEvent
from server.demo import seed_demo
from server.keys import database_key, events_key
from tests.conftest import Api
from tests.trust_support import buy, make_farm, pin
from trust.evidence import OrderEvidence


async def test_pin_snapshot_and_order_evidence(api: Api) -> None:
    farm = await make_farm(api)
    resp = await api.client.post(f"/api/batches/{farm.batch_code}/qc-reports", json={
        "tester": "小美", "tested_at": "2026-05-01T08:00:00+00:00",
        "measurements": [{"kind": "brix", "value": 14.0}]}, headers=api.auth(farm.host))
    assert resp.status == 201
    pin_id = await pin(farm)
    # realtime publishes this after pinning; trust completes the stored snapshot.
    async with api.app[database_key].session() as db:
        row = await db.get(ProductPin, pin_id)
        assert row is not None
        data = row.public_dict()
    await api.app[events_key].publish(DomainEvent("product_pinned", farm.session_id, data))
    async with api.app[database_key].session() as db:
        row = await db.get(ProductPin, pin_id)
        assert row is not None
        evidence = row.snapshot["evidence"]
    assert evidence["batch"]["code"] == farm.batch_code
    assert evidence["qc"]["measurements"][0]["value"] == 14.0
    assert row.snapshot["name"] == "白沙枇杷"  # the original card fields are kept

    _, buyer = await api.user("viewer")
    order_id = await buy(farm, buyer)
    async with api.app[database_key].session() as db:
        stored = await db.get(OrderEvidence, order_id)
    assert stored is not None, "order_paid should record the order's evidence"
    assert (stored.batch_id, stored.pin_id, stored.session_id) == (
        farm.batch_id, pin_id, farm.session_id)


async def _seed(api: Api) -> None:
    # seed_demo records its info on the app (normally before start-up); harmless here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        await seed_demo(api.app)


async def test_demo_seeder_is_idempotent_and_verifies(api: Api) -> None:
    await _seed(api)
    trace = await (await api.client.get("/api/trace/PIPA-2026-TQ01")).json()
    kinds = [e["kind"] for e in trace["journey"]]
    assert kinds == ["harvested", "tested", "packed", "cold_chain"]
    assert trace["qc_reports"][0]["conclusion"] == "pass"
    await _seed(api)
    again = await (await api.client.get("/api/trace/PIPA-2026-TQ01")).json()
    assert len(again["journey"]) == 4 and len(again["qc_reports"]) == 1
    verdict = await (await api.client.get("/api/trace/PIPA-2026-TQ01/verify")).json()
    assert verdict["ok"] is True
    product_id = trace["products"][0]["id"]
    policy = await (await api.client.get(f"/api/products/{product_id}/claim-policy")).json()
    assert policy["multiplier"] == 10
