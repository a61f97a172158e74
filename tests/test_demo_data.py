"""The demo shop tells the truth about its goods: each product its own batch, QC and journey."""

from __future__ import annotations

import warnings

from sqlalchemy import select

from commerce import catalog
from server.demo import DEMO_PRODUCTS, seed_demo
from server.keys import database_key
from tests.conftest import Api


async def _seed(api: Api) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        await seed_demo(api.app)


async def test_every_demo_product_traces_to_its_own_batch(any_db_api: Api) -> None:
    api = any_db_api
    await _seed(api)
    assert len({spec.batch_code for spec in DEMO_PRODUCTS}) == len(DEMO_PRODUCTS)
    for spec in DEMO_PRODUCTS:
        async with api.app[database_key].session() as db:
            product = (await db.execute(select(catalog.Product).where(
                catalog.Product.name == spec.name))).scalar_one()
            batch = await catalog.find_batch(db, spec.batch_code)
        assert batch is not None and product.batch_id == batch.id, spec.name
        assert spec.keyword in product.name and spec.keyword in batch.description, spec.name
        trace = await (await api.client.get(f"/api/trace/{spec.batch_code}")).json()
        assert (trace["batch"]["farm"], trace["batch"]["plot"]) == (spec.farm, spec.plot)
        # Only this product is sold from this batch (the olive oil is not on the loquats' page).
        assert [p["name"] for p in trace["products"]] == [spec.name]
        kinds = [e["kind"] for e in trace["journey"]]
        assert kinds[0] == "harvested" and "tested" in kinds, (spec.name, kinds)
        assert trace["journey"][0]["location"] == spec.plot
        reports = trace["qc_reports"]
        assert len(reports) == 1 and reports[0]["conclusion"] == "pass", spec.name
        assert reports[0]["tester"] == spec.tester
        assert len(reports[0]["measurements"]) == len(spec.measurements)
        verdict = await (await api.client.get(f"/api/trace/{spec.batch_code}/verify")).json()
        assert verdict["ok"] is True, spec.name


async def test_old_demo_data_gets_the_olive_oil_its_own_batch(api: Api) -> None:
    """A database seeded before had the olive oil on the loquats' batch: seeding again fixes it."""
    await _seed(api)
    loquat, oil = DEMO_PRODUCTS[0], DEMO_PRODUCTS[1]
    async with api.app[database_key].session() as db:
        wrong = await catalog.find_batch(db, loquat.batch_code)
        product = (await db.execute(select(catalog.Product).where(
            catalog.Product.name == oil.name))).scalar_one()
        assert wrong is not None
        product.batch_id = wrong.id
    await _seed(api)
    trace = await (await api.client.get(f"/api/trace/{oil.batch_code}")).json()
    assert [p["name"] for p in trace["products"]] == [oil.name]
    loquat_page = await (await api.client.get(f"/api/trace/{loquat.batch_code}")).json()
    assert [p["name"] for p in loquat_page["products"]] == [loquat.name]
    # Seeding twice added no second report or journey.
    assert len(trace["qc_reports"]) == 1
    assert len(trace["journey"]) == len(oil.journey) + 1  # + the report's "tested" link


def test_demo_catalogue_is_consistent() -> None:
    for spec in DEMO_PRODUCTS:
        assert spec.journey[0].kind == "harvested" and spec.journey[0].location == spec.plot
        assert spec.measurements and spec.tester and spec.lab
