"""Wires trust into the app: signer, upload storage, refunds, event listeners, routes, demo data."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from commerce import audience
from commerce.accounts import Principal, Role
from commerce.base import utcnow
from commerce.catalog import Batch, Product, ProductPin, find_batch
from commerce.event_payloads import OrderPaid, OrderRefunded, ProductPinned, SessionEnded
from commerce.events import DomainEvent
from commerce.orders import Order
from commerce.payments import SimulatedProvider
from server.api import Api
from server.commerce_keys import checkout_key
from server.demo import DEMO_PRODUCTS, DemoInfo, DemoProduct, demo_seeders_key
from server.keys import database_key, events_key, redis_key, settings_key
from server.routes import dashboard as dashboard_routes
from server.routes import koc as koc_routes
from server.routes import trust as trust_routes
from server.routes import trust_after_sales
from server.routes import ugc as ugc_routes
from server.trust_keys import refunder_key, trace_signer_key, upload_storage_key
from trust import claims, points, qc, trace
from trust.claims_refunds import ProviderRefunder
from trust.evidence import evidence_for
from trust.trace_signing import TraceSigner
from trust.uploads import LocalDiskStorage

log = logging.getLogger(__name__)
DEMO_BATCH = DEMO_PRODUCTS[0].batch_code


def setup(app: web.Application, api: Api) -> None:
    settings = app[settings_key]
    app[trace_signer_key] = TraceSigner(settings.secret_key.get_secret_value())
    app[upload_storage_key] = LocalDiskStorage(settings.data_dir / "uploads")
    for table in (trust_routes.api, trust_after_sales.api, dashboard_routes.api, koc_routes.api,
                  ugc_routes.api):
        api.operations.extend(table.operations)
    app.cleanup_ctx.append(trust_ctx)
    app[demo_seeders_key].append(seed_demo_trust)


async def trust_ctx(app: web.Application) -> AsyncIterator[None]:
    # Refunds go through the commerce checkout's providers when they are wired (they are in the
    # app), each to the provider that took the order's money.
    providers = (app[checkout_key].payments if checkout_key in app
                 else SimulatedProvider(app[settings_key].secret_key.get_secret_value(), app[redis_key]))
    app[refunder_key] = ProviderRefunder(providers)

    async def on_event(event: DomainEvent) -> None:
        payload = event.payload
        if isinstance(payload, OrderPaid):
            # Freeze the order's batch and stream moment now: the product's batch may change later.
            async with app[database_key].session() as db:
                order = await db.get(Order, payload.order_id)
                if order is not None:
                    await evidence_for(db, order)
        elif isinstance(payload, ProductPinned):
            await attach_pin_evidence(app, payload.id)
        elif isinstance(payload, SessionEnded) and event.session_id is not None:
            async with app[database_key].session() as db:
                await audience.freeze(db, app[redis_key], event.session_id)
        elif isinstance(payload, OrderRefunded):
            # Points that stood on the order go back (once: `reverse:<fact>` is unique).
            async with app[database_key].session() as db:
                await points.reverse_for_order(db, payload.order_id, "订单退款 / order refunded")

    unsubscribe = app[events_key].subscribe(on_event, kinds=(
        "order_paid", "product_pinned", "session_ended", "order_refunded"))
    try:
        yield
    finally:
        unsubscribe()


async def attach_pin_evidence(app: web.Application, pin_id: int) -> None:
    """Store the batch + QC summary in the pin's snapshot (replay chapters and claims read it).

    The live broadcast of the pin is realtime's; it can include the same summary by calling
    `trust.qc.batch_summary` when it pins. Here the stored evidence is made complete either way.
    """
    async with app[database_key].session() as db:
        pin = await db.get(ProductPin, pin_id)
        if pin is None or pin.batch_id is None or "evidence" in (pin.snapshot or {}):
            return
        summary = await qc.batch_summary(db, pin.batch_id)
        pin.snapshot = {**dict(pin.snapshot or {}), "evidence": summary}


async def seed_demo_trust(app: web.Application, info: DemoInfo) -> None:
    """Each demo product's own batch gets its QC report and journey (once: the chain is
    append-only), and the loquats their 坏一赔十 claim policy."""
    host = Principal(info.users["laozhang"], "laozhang", Role.HOST)
    signer = app[trace_signer_key]
    now = utcnow()
    base = app[settings_key].base_url
    for spec in DEMO_PRODUCTS:
        async with app[database_key].session() as db:
            batch = await find_batch(db, spec.batch_code)
            if batch is None:
                log.info("demo batch missing; its trust demo skipped", extra={"batch": spec.batch_code})
                continue
            product = (await db.execute(select(Product).where(Product.batch_id == batch.id)
                                        .order_by(Product.id).limit(1))).scalar_one_or_none()
            if (spec.batch_code == DEMO_BATCH and product is not None
                    and await claims.get_policy(db, product.id) is None):
                # 坏一赔十 for fresh loquats: auto-refund within 2 days of pickup, answer within 2 h.
                await claims.set_policy(db, host, product.id, full_refund_without_return=True,
                                        multiplier=10, max_days_after_pickup=2,
                                        auto_approve_max_fen=20_000, require_photo=True,
                                        response_hours=2)
            if await trace.events_for(db, batch.id):
                continue
            steps = sorted(spec.journey, key=lambda step: -step.hours_ago)
            tested_at = now - timedelta(hours=spec.harvest_hours_ago) + timedelta(hours=1)
            reported = False
            for step in steps:
                occurred = now - timedelta(hours=step.hours_ago)
                if not reported and occurred > tested_at:
                    await _demo_report(db, signer, batch, host, spec, tested_at)
                    reported = True
                await trace.append_event(db, signer, batch, host, trace.EventKind(step.kind),
                                         occurred_at=occurred, location=step.location,
                                         note=step.note, data=dict(step.data))
            if not reported:
                await _demo_report(db, signer, batch, host, spec, tested_at)
        info.lines.append(f"  溯源 Trace ({spec.keyword}): {base}/trace/{spec.batch_code}")


async def _demo_report(db: AsyncSession, signer: TraceSigner, batch: Batch, host: Principal,
                       spec: DemoProduct, tested_at: datetime) -> None:
    await qc.create_report(
        db, signer, batch, host, tester=spec.tester, lab=spec.lab, tested_at=tested_at,
        measurements=[qc.MeasurementIn(qc.MeasurementKind(kind), value=value, passed=passed,
                                       name=name, unit=unit)
                      for kind, value, name, unit, passed in spec.measurements],
        attachment_ids=[], summary=spec.qc_summary,
    )
