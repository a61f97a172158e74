"""Demo data for `make run`: a farm, two communities, a host, an assistant, viewers, a session.

Seeding is idempotent (it finds what exists by name), so restarting `make run` keeps the data.
Subsystems add their own demo content (products, sales, the synthetic stream) through
`demo_seeders_key`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from sqlalchemy import select

from commerce import accounts, live_sessions
from commerce.accounts import Principal, Role
from infra.settings import Settings
from server.keys import database_key, settings_key
from server.passwords import passwords_key

log = logging.getLogger(__name__)

DEMO_PASSWORD = "linli-demo-2026"  # noqa: S105 - printed for the demo, on purpose
DEMO_USERS: tuple[tuple[str, Role, str], ...] = (
    ("laozhang", Role.HOST, "老张(合作农场)"),
    ("xiaomei", Role.ASSISTANT, "小美(助理)"),
    ("liayi", Role.VIEWER, "李阿姨"),
    ("wangshu", Role.VIEWER, "王叔"),
    ("chenjie", Role.VIEWER, "陈姐"),
)
DEMO_COMMUNITIES = ("阳光花园", "翠湖小区")
DEMO_SESSION_TITLE = "老张的枇杷园:现摘现发,农残快检现场看"


@dataclass(frozen=True)
class DemoStep:
    """One trace event of a demo batch: kind (commerce.trace.EventKind value), hours before the
    seeding, where, a note, and the readings it holds."""

    kind: str
    hours_ago: float
    location: str
    note: str = ""
    data: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DemoProduct:
    """A demo product with the batch it comes from, that batch's QC report and its journey.

    Each product has its own batch: the trace page of a bottle of olive oil must show the olive
    grove it was pressed from, never the loquat orchard of the other product. `keyword` names
    what the product is; the batch's description says the same (the demo's own check).
    """

    name: str
    price_fen: int
    unit: str
    keyword: str
    batch_code: str
    farm: str
    plot: str
    harvest_hours_ago: float
    batch_description: str
    tester: str
    lab: str
    qc_summary: str
    # (commerce.qc.MeasurementKind value, value, custom name, custom unit, passed or None to
    # let the kind decide)
    measurements: tuple[tuple[str, float, str, str, bool | None], ...]
    journey: tuple[DemoStep, ...]


DEMO_PRODUCTS: tuple[DemoProduct, ...] = (
    DemoProduct(
        name="白沙枇杷", price_fen=6800, unit="份", keyword="枇杷", batch_code="PIPA-2026-TQ01",
        farm="老张合作农场", plot="浙江塘栖 3号坡", harvest_hours_ago=6,
        batch_description="白沙枇杷,清晨采摘", tester="小美", lab="农场快检室",
        qc_summary="农残快检阴性,糖度 13.2",
        measurements=(("pesticide_quick_test", 12.5, "", "", None), ("brix", 13.2, "", "", None),
                      ("acidity", 0.42, "", "", None)),
        journey=(
            DemoStep("harvested", 6, "浙江塘栖 3号坡", "清晨采摘,当天发", {"quantity": 60}),
            DemoStep("packed", 4, "老张合作农场 包装间", "", {"quantity": 50}),
            DemoStep("cold_chain", 3, "冷藏车 浙A·12345", "",
                     {"temperature_c": 4.5, "humidity_pct": 88}),
        ),
    ),
    DemoProduct(
        name="初榨橄榄油 500ml", price_fen=12800, unit="瓶", keyword="橄榄",
        batch_code="OLIVE-2026-LN03", farm="陇南橄榄合作社", plot="甘肃陇南武都 橄榄园 2号地",
        harvest_hours_ago=24 * 40, batch_description="冷榨特级初榨橄榄油,采摘后 6 小时内压榨",
        tester="李工", lab="陇南市农产品质检站",
        qc_summary="酸度 0.3%、过氧化值 6.1,达到特级初榨标准",
        # Extra virgin: free acidity ≤ 0.8 %, peroxide value ≤ 10 mmol/kg (GB/T 23347).
        measurements=(("acidity", 0.3, "", "", True),
                      ("custom", 6.1, "过氧化值", "mmol/kg", True)),
        journey=(
            DemoStep("harvested", 24 * 40, "甘肃陇南武都 橄榄园 2号地", "手工采摘", {"quantity": 800}),
            DemoStep("packed", 24 * 38, "陇南橄榄合作社 压榨车间", "冷榨后灌装 500ml",
                     {"quantity": 600}),
            DemoStep("shipped", 24 * 3, "陇南橄榄合作社", "常温物流发往杭州", {"quantity": 120}),
            DemoStep("arrived_at_pickup", 20, "阳光花园 自提点", "", {"quantity": 120}),
        ),
    ),
)


@dataclass
class DemoInfo:
    session_id: int
    users: dict[str, int] = field(default_factory=dict)
    communities: dict[str, int] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


DemoSeeder = Callable[[web.Application, DemoInfo], Awaitable[None]]
demo_seeders_key = web.AppKey("demo_seeders", list[DemoSeeder])
demo_info_key = web.AppKey("demo_info", DemoInfo)


async def seed_demo(app: web.Application) -> DemoInfo:
    passwords = app[passwords_key]
    hashed = await passwords.hash_async(DEMO_PASSWORD)
    async with app[database_key].session() as db:
        users: dict[str, int] = {}
        for username, role, display in DEMO_USERS:
            user = await accounts.find_user(db, username)
            if user is None:
                user = await accounts.create_user(db, username, hashed, role, display)
            users[username] = user.id
        communities: dict[str, int] = {}
        for name in DEMO_COMMUNITIES:
            found = (
                await db.execute(select(accounts.Community).where(accounts.Community.name == name))
            ).scalar_one_or_none()
            if found is None:
                found = await accounts.create_community(db, name, users["laozhang"])
            communities[name] = found.id
        await accounts.add_member(db, communities["阳光花园"], users["liayi"], users["laozhang"])
        await accounts.add_member(db, communities["阳光花园"], users["chenjie"], users["laozhang"])
        await accounts.add_member(db, communities["翠湖小区"], users["wangshu"], users["laozhang"])
        existing = (
            await db.execute(
                select(live_sessions.LiveSession).where(
                    live_sessions.LiveSession.title == DEMO_SESSION_TITLE,
                    live_sessions.LiveSession.status != live_sessions.SessionStatus.ENDED.value,
                )
            )
        ).scalar_one_or_none()
        if existing is None:
            host = Principal(users["laozhang"], "laozhang", Role.HOST)
            existing = await live_sessions.create_session(
                db, host, DEMO_SESSION_TITLE, farm="老张合作农场", origin="浙江 · 塘栖",
                preview_text="今天现场摘枇杷,快检报告现场给大家看。前30名下单再送一盒桑葚!",
            )
        info = DemoInfo(session_id=existing.id, users=users, communities=communities)
    for seeder in app.get(demo_seeders_key, []):
        await seeder(app, info)
    app[demo_info_key] = info
    return info


def print_welcome(info: DemoInfo, settings: Settings) -> None:
    base = settings.base_url
    lines = [
        "",
        "邻里 Linli is running / 已启动",
        f"  直播间 Live room:      {base}/live/{info.session_id}",
        f"  主播台 Host console:   {base}/host/{info.session_id}   (laozhang)",
        f"  审核台 Moderation:     {base}/moderate/{info.session_id}   (xiaomei)",
        f"  回放 Replays:          {base}/replays",
        f"  API docs:              {base}/api/docs",
        f"  Logins (password {DEMO_PASSWORD}): "
        + ", ".join(name for name, _role, _display in DEMO_USERS),
        *info.lines,
        "",
    ]
    print("\n".join(lines), flush=True)


async def demo_ctx(app: web.Application) -> AsyncIterator[None]:
    """Seed on start when LINLI_DEMO is on (the default for `make run`)."""
    settings = app[settings_key]
    if settings.demo:
        info = await seed_demo(app)
        print_welcome(info, settings)
    yield
