"""Trace chain benchmark: prints figures, asserts nothing. Run by hand:

    python bench/trace_verify.py             # 1,000 events (the per-batch cap), 20 QC reports
    python bench/trace_verify.py --quick     # 100 events, proves it works
    DATABASE_URL=postgresql://... python bench/trace_verify.py   # against PostgreSQL

Figures: append cost per event (hash + Ed25519 signature + SQL), verify time for a whole batch
(recompute every hash, every QC commitment, check the head signature), and the public trace
read. Uses SQLite in a temp dir unless DATABASE_URL is set.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import os  # noqa: E402

from commerce import accounts, catalog  # noqa: E402
from infra.settings import Settings  # noqa: E402
from server.database import Database  # noqa: E402
from trust import qc, trace  # noqa: E402
from trust.trace_signing import TraceSigner  # noqa: E402
from trust.trace_verify import verify_batch  # noqa: E402


async def main(events: int, reports: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="linli-bench-trace-"))
    settings = Settings(data_dir=tmp, database_url=os.environ.get("DATABASE_URL"), demo=False)
    db = Database(settings.sqlalchemy_url)
    await db.migrate()
    signer = TraceSigner(settings.secret_key.get_secret_value())
    async with db.session() as s:
        user = await accounts.create_user(s, f"bench{time.time_ns()}", "x", accounts.Role.HOST)
        host = user.principal()
        batch = await catalog.create_batch(s, host, f"BENCH-{time.time_ns() % 10**9}", farm="bench")
    started = time.perf_counter()
    appended = 0
    for i in range(events - reports):
        async with db.session() as s:
            b = await catalog.get_batch(s, batch.id)
            await trace.append_event(s, signer, b, host, trace.EventKind.COLD_CHAIN,
                                     data={"temperature_c": 4.0 + (i % 10) / 10})
        appended += 1
        if reports and i % max(1, (events - reports) // reports) == 0 and appended <= events:
            async with db.session() as s:
                b = await catalog.get_batch(s, batch.id)
                await qc.create_report(
                    s, signer, b, host, "bench", datetime.now(UTC),
                    [qc.MeasurementIn(qc.MeasurementKind.BRIX, 12.0),
                     qc.MeasurementIn(qc.MeasurementKind.PESTICIDE_QUICK_TEST, 10.0)], [])
            appended += 1
    append_s = time.perf_counter() - started
    async with db.session() as s:
        b = await catalog.get_batch(s, batch.id)
        n = len(await trace.events_for(s, b.id))
        t0 = time.perf_counter()
        result = await verify_batch(s, signer, b)
        verify_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        await trace.events_for(s, b.id)
        for report in await qc.reports_for(s, b.id):
            await qc.report_dict(s, report)
        read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(1000):
        signer.sign(b.code, 1, "0" * 64)
    sign_us = (time.perf_counter() - t0) * 1000
    await db.close()
    backend = "PostgreSQL" if settings.database_url else "SQLite"
    print(f"backend: {backend}")
    print(f"events in chain: {n} (QC reports: {len(result.checked_qc_reports)}), verify ok={result.ok}")
    print(f"append: {append_s / n * 1000:.2f} ms/event (one transaction each, incl. head re-sign)")
    print(f"Ed25519 sign: {sign_us:.1f} µs/signature")
    print(f"verify whole batch: {verify_s * 1000:.1f} ms ({verify_s / n * 1e6:.0f} µs/event)")
    print(f"public trace read (events + QC reports): {read_s * 1000:.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(100 if args.quick else 1000, 5 if args.quick else 20))
