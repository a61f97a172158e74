"""Wires commerce into the app: the checkout service, its background workers, routes, demo data."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from aiohttp import web
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from sqlalchemy import select

from cluster.leader import ClusterLeader
from commerce import catalog, group_buys, orders, refunds
from commerce.accounts import Principal, Role
from commerce.base import utcnow
from commerce.events import DomainEvent
from commerce.flash_sale import lifecycle, sales
from commerce.flash_sale.checkout import Checkout
from commerce.flash_sale.holds import HoldSweeper
from commerce.flash_sale.order_log import OrderLogConsumer
from commerce.flash_sale.stock import SaleStock
from commerce.live_sessions import get_session
from commerce.orders import UnitOfWork
from commerce.payments import PaymentProvider, PaymentProviders, SimulatedProvider
from infra.background import PeriodicTask
from infra.redis_pools import blocking_pool
from infra.settings import Settings
from payments.alipay import AlipayProvider, load_config
from payments.wechatpay import WechatPayProvider, sweep_started
from server.api import Api
from server.cluster_keys import cluster_key
from server.commerce_keys import checkout_key
from server.demo import DEMO_PRODUCTS, DemoInfo, demo_seeders_key
from server.keys import database_key, events_key, redis_url_key, settings_key
from server.routes import catalog as catalog_routes
from server.routes import orders as orders_routes
from server.routes import payments as payments_routes
from server.routes import sales as sales_routes

log = logging.getLogger(__name__)
REDIS_CONNECTIONS = 64


def setup(app: web.Application, api: Api) -> None:
    for table in (catalog_routes.api, sales_routes.api, orders_routes.api, payments_routes.api):
        api.operations.extend(table.operations)
    app.cleanup_ctx.append(commerce_ctx)
    app[demo_seeders_key].append(seed_demo_sales)


async def commerce_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    # Our own client with a blocking pool: a burst of thousands of buyers waits for one of a
    # bounded set of connections instead of failing with "Too many connections".
    redis: Redis = Redis(connection_pool=blocking_pool(
        app[redis_url_key], max_connections=REDIS_CONNECTIONS, timeout=10))
    # Every configured provider (the buyer chooses; refunds go back through the one that took
    # the money); the simulated one of `make run` when none is.
    payments = await payment_providers(settings, redis, app[database_key].session)
    wechatpay = payments.find("wechatpay")
    # The sales' stock on a Redis Cluster when one is given (each bucket of a sale in its own
    # slot, so on its own node), else on the app's Redis.
    sale_redis: Redis | RedisCluster = redis
    if settings.sale_redis_url is not None:
        sale_redis = RedisCluster.from_url(settings.sale_redis_url.get_secret_value())
    checkout = Checkout(SaleStock(sale_redis), app[database_key].session, app[events_key],
                        payments)
    app[checkout_key] = checkout
    await restore_sales(checkout, settings.hold_ttl_s)
    sweeper: PeriodicTask = HoldSweeper(checkout)
    deadlines = PeriodicTask("group-deadlines", lambda: _decide(checkout), idle_s=1.0)
    leader: ClusterLeader | None = None
    if cluster_key in app:
        # Each step is atomic, so several processes sweeping would be correct, only N times
        # the load: one process at a time sweeps. The order log is a consumer group (shared).
        leader = ClusterLeader(redis, app[cluster_key].me.process_id, "commerce-sweepers")
        sweeps = HoldSweeper(checkout)
        sweeper = PeriodicTask(sweeps.name, leader.guard(sweeps.sweep_once), idle_s=0.5)
        deadlines = PeriodicTask(deadlines.name, leader.guard(lambda: _decide(checkout)),
                                 idle_s=1.0)
    workers: list[PeriodicTask] = [
        sweeper, OrderLogConsumer(checkout), deadlines,
        # Refunds whose process died between recording and paying them (commerce/refunds.py);
        # each is finished by a conditional update, so every process may run this.
        PeriodicTask("refund-retry", lambda: refunds.settle_pending(checkout.uow, checkout.payments),
                     idle_s=5.0),
    ]
    if isinstance(wechatpay, WechatPayProvider):
        # Late or lost notifications, and closing WeChat's order of a lapsed hold; each step
        # is idempotent (confirm, refund key, close), so every process may run it.
        provider_ = wechatpay
        workers.append(PeriodicTask("wechatpay-sweep",
                                    lambda: sweep_started(checkout, provider_), idle_s=5.0))
    for worker in workers:
        worker.start()

    async def on_session_ended(event: DomainEvent) -> None:
        # A session ended by media (the publisher left and did not come back) closes its sales
        # here; one ended through the API closed them before announcing it (nothing left).
        if event.session_id is not None:
            await lifecycle.close_session_sales(checkout, event.session_id)

    unsubscribe = app[events_key].subscribe(on_session_ended, kinds=("session_ended",))
    try:
        yield
    finally:
        unsubscribe()
        for worker in reversed(workers):
            await worker.stop()
        if leader is not None:
            await leader.resign()
        if sale_redis is not redis:
            await sale_redis.aclose()
        await redis.aclose()


async def payment_providers(settings: Settings, redis: Redis,
                            uow: UnitOfWork) -> PaymentProviders:
    """WeChat Pay and Alipay, each when configured (both at once is the usual shop: neighbours
    pay in WeChat, some with Alipay); the simulated provider when neither is (`make run`)."""
    secret = settings.secret_key.get_secret_value()
    found: list[PaymentProvider] = []
    if settings.wechatpay_enabled:
        wechatpay = WechatPayProvider.from_settings(settings, redis, uow)
        await wechatpay.open()
        log.info("payments through wechatpay", extra={"mchid": wechatpay.mchid})
        found.append(wechatpay)
    alipay = load_config(settings, secret)
    if alipay is not None:
        log.info("payments through alipay", extra={"app_id": alipay.app_id,
                                                   "gateway": alipay.gateway_url})
        found.append(AlipayProvider(alipay, redis))
    return PaymentProviders(found or [SimulatedProvider(secret, redis)])


async def _decide(checkout: Checkout) -> int:
    await group_buys.decide_due(checkout)
    return 0  # pace by idle_s either way


async def restore_sales(checkout: Checkout, hold_ttl_s: int) -> None:
    """Make sure every open sale's stock is in Redis (open.lua never resets an existing one)."""
    async with checkout.uow() as db:
        unclosed = await sales.unclosed_sales(db)
    for sale in unclosed:
        if await checkout.store.counts(sale.id) is None:
            async with checkout.uow() as db:
                sold, _count = await orders.sold_units(db, sale.id)
            if sold:
                # Redis lost a sale that already sold: re-opening would oversell. Leave it to an
                # operator (reconcile shows it as in_redis=false).
                log.error("sale missing from redis after sales; not reopening",
                          extra={"sale_id": sale.id})
                continue
            await lifecycle.open_sale(checkout, sale, hold_ttl_s)
        else:
            await checkout.store.mark_active(sale.id)
    await group_buys.restore(checkout)


DEMO_GIFT = "前30名下单再送一盒桑葚"


async def seed_demo_sales(app: web.Application, info: DemoInfo) -> None:
    """Each demo product from its own batch (DEMO_PRODUCTS), a sale of each and a group-buy."""
    checkout = app[checkout_key]
    host = Principal(info.users["laozhang"], "laozhang", Role.HOST)
    async with app[database_key].session() as db:
        products = {}
        for spec in DEMO_PRODUCTS:
            batch = await catalog.find_batch(db, spec.batch_code)
            if batch is None:
                batch = await catalog.create_batch(
                    db, host, spec.batch_code, farm=spec.farm, plot=spec.plot,
                    harvested_at=utcnow() - timedelta(hours=spec.harvest_hours_ago),
                    description=spec.batch_description,
                )
            found = (await db.execute(select(catalog.Product).where(
                catalog.Product.name == spec.name,
                catalog.Product.owner_id == host.user_id))).scalars().first()
            if found is None:
                found = await catalog.create_product(db, host, spec.name, spec.price_fen, spec.unit,
                                                     batch_id=batch.id)
            elif found.batch_id != batch.id:
                # Demo data seeded before each product had its own batch linked the olive oil to
                # the loquats' batch: put it right, so its trace shows where it comes from.
                found.batch_id = batch.id
            products[spec.name] = found
        session = await get_session(db, info.session_id)
        existing = await sales.sales_of_session(db, session.id)
    if existing:
        info.lines.append(f"  抢购 Flash sale:        {len(existing)} sale(s) already open")
        return
    async with app[database_key].session() as db:
        pipa = await sales.insert_sale(
            db, host, session.id, products["白沙枇杷"].id, stock=50, price_fen=6800,
            per_buyer_limit=2, community_ids=list(info.communities.values()),
            community_price_fen=5800, gift_first_n=30, gift_text=DEMO_GIFT,
            pickup_by=utcnow() + timedelta(days=1),
        )
        oil = await sales.insert_sale(
            db, host, session.id, products["初榨橄榄油 500ml"].id, stock=500, price_fen=12800,
            per_buyer_limit=5, pickup_by=utcnow() + timedelta(days=2),
        )
    ttl = app[settings_key].hold_ttl_s
    await lifecycle.open_sale(checkout, pipa, ttl)
    await lifecycle.open_sale(checkout, oil, ttl)
    await group_buys.create_group_buy(
        checkout, host, pipa.id, info.communities["阳光花园"], threshold=40, unit="people",
        deadline=utcnow() + timedelta(hours=2), group_price_fen=4800, on_failure="refund",
        hold_ttl_s=ttl,
    )
    info.lines.append(f"  抢购 Flash sale:        枇杷 sale {pipa.id} ({DEMO_GIFT}), 橄榄油 sale {oil.id}")
