"""CLI commands over commerce: reconcile sales, verify batch traces."""

from __future__ import annotations

import json
import sys

from aiohttp import web


async def reconcile(app: web.Application, sale_id: int | None, repair: bool) -> int:
    """Print one JSON line per sale; exit 0 when every sale balances, 3 when one drifts."""
    from commerce.reconcile import reconcile_all
    from server.commerce_keys import checkout_key

    reports = await reconcile_all(app[checkout_key], sale_id, repair)
    for report in reports:
        print(json.dumps(report.as_dict(), ensure_ascii=False))
    ok = all(report.ok for report in reports)
    print(f"reconcile: {len(reports)} sale(s), {'ok' if ok else 'DRIFT'}", file=sys.stderr)
    return 0 if ok else 3


async def verify_trace(app: web.Application, batch_code: str | None) -> int:
    print("verify-trace: batches are not built yet", file=sys.stderr)
    return 1
