"""CLI commands over commerce: reconcile sales, verify batch traces, back up and restore."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from aiohttp import web

from infra.settings import Settings


async def reconcile(app: web.Application, sale_id: int | None, repair: bool) -> int:
    """Print one JSON line per sale; exit 0 when every sale balances, 3 when one drifts."""
    from commerce.flash_sale.reconcile import reconcile_all
    from server.commerce_keys import checkout_key

    reports = await reconcile_all(app[checkout_key], sale_id, repair)
    for report in reports:
        print(json.dumps(report.as_dict(), ensure_ascii=False))
    ok = all(report.ok for report in reports)
    print(f"reconcile: {len(reports)} sale(s), {'ok' if ok else 'DRIFT'}", file=sys.stderr)
    return 0 if ok else 3


async def verify_trace(app: web.Application, batch_code: str | None) -> int:
    """One JSON line per batch; exit 0 when every chain verifies, 4 when one fails, 2 if unknown."""
    from sqlalchemy import select

    from commerce.catalog import Batch
    from commerce.errors import DomainError
    from server.keys import database_key
    from server.trust_keys import trace_signer_key, upload_storage_key
    from trust.trace import batch_by_code
    from trust.trace_verify import verify_batch

    signer, storage = app[trace_signer_key], app[upload_storage_key]
    results = []
    async with app[database_key].session() as db:
        if batch_code is not None:
            try:
                batches = [await batch_by_code(db, batch_code)]
            except DomainError as exc:
                print(f"verify-trace: {exc.code}: {batch_code}", file=sys.stderr)
                return 2
        else:
            batches = list((await db.execute(select(Batch).order_by(Batch.id))).scalars())
        for batch in batches:
            result = await verify_batch(db, signer, batch, storage)
            results.append(result)
            print(json.dumps(result.as_dict(), ensure_ascii=False))
    for result in results:
        if result.problem is not None:
            p = result.problem
            print(f"verify-trace: {result.batch_code}: TAMPERED {p.record} {p.id} "
                  f"(seq {p.seq}): {p.reason}: {p.message}", file=sys.stderr)
    ok = all(r.ok for r in results)
    print(f"verify-trace: {len(results)} batch(es), {'ok' if ok else 'FAILED'}", file=sys.stderr)
    return 0 if ok else 4


async def backup(settings: Settings, folder: Path) -> int:
    """Print the manifest; exit 0, or 2 when the backup could not be taken."""
    from server.backup import BackupError
    from server.backup import backup as take

    try:
        manifest = await take(settings, folder)
    except BackupError as exc:
        print(f"backup: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(manifest, ensure_ascii=False))
    print(f"backup: {manifest['redis']['keys']} Redis keys and the {manifest['sql']['kind']} "
          f"database in {folder}", file=sys.stderr)
    return 0


async def restore(settings: Settings, folder: Path, force: bool) -> int:
    """Exit 0 when SQL and Redis are back (reconcile follows), 2 when they could not be."""
    from server.backup import BackupError
    from server.backup import restore as put_back

    try:
        done = await put_back(settings, folder, force)
    except BackupError as exc:
        print(f"restore: {exc}", file=sys.stderr)
        return 2
    print(f"restore: {done}", file=sys.stderr)
    return 0
