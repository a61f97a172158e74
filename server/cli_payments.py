"""`python -m server reconcile-payments DATE [--provider NAME]`: the money ledger against the
provider's bill of one day (Asia/Shanghai); each difference printed as one JSON line with its
stable code, the run stored for the dashboard; exit 1 when anything differs."""

from __future__ import annotations

import json
import sys
from datetime import date

from aiohttp import web

from commerce import money_ledger
from server.commerce_keys import checkout_key
from server.keys import database_key


async def reconcile_payments(app: web.Application, day: date, provider_name: str | None) -> int:
    provider = app[checkout_key].provider
    if provider_name is not None and provider_name != provider.name:
        print(f"provider {provider_name!r} is not configured (this one is {provider.name!r})",
              file=sys.stderr)
        return 2
    try:
        run = await money_ledger.reconcile_day(app[database_key].session, provider, day)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    for issue in json.loads(run.issues_json):
        print(json.dumps(issue, ensure_ascii=False))
    print(json.dumps({"provider": run.provider, "day": day.isoformat(),
                      "ledger_lines": run.ledger_lines, "bill_lines": run.bill_lines,
                      "issues": run.issue_count}), file=sys.stderr)
    return 1 if run.issue_count else 0
