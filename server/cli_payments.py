"""`python -m server reconcile-payments DATE [--provider NAME]`: the money ledger against the
bill of one day (Asia/Shanghai) of each configured provider, one run per provider; each
difference printed as one JSON line with its provider and stable code, each run stored for the
dashboard; exit 1 when anything differs."""

from __future__ import annotations

import json
import sys
from datetime import date

from aiohttp import web

from commerce import money_ledger
from commerce.payments import bill_of
from server.commerce_keys import checkout_key
from server.keys import database_key


async def reconcile_payments(app: web.Application, day: date, provider_name: str | None) -> int:
    """Each configured provider that offers a bill (or only `provider_name`), one run each."""
    payments = app[checkout_key].payments
    if provider_name is not None and payments.find(provider_name) is None:
        print(f"provider {provider_name!r} is not configured (these are: "
              f"{', '.join(payments.names)})", file=sys.stderr)
        return 2
    chosen = [payments.get(provider_name)] if provider_name else list(payments)
    billing = [p for p in chosen if bill_of(p) is not None]
    if not billing:
        print(f"no bill from {', '.join(p.name for p in chosen)}", file=sys.stderr)
        return 2
    differs = False
    for provider in billing:
        run = await money_ledger.reconcile_day(app[database_key].session, provider, day)
        for issue in json.loads(run.issues_json):
            print(json.dumps({"provider": run.provider, **issue}, ensure_ascii=False))
        print(json.dumps({"provider": run.provider, "day": day.isoformat(),
                          "ledger_lines": run.ledger_lines, "bill_lines": run.bill_lines,
                          "issues": run.issue_count}), file=sys.stderr)
        differs = differs or run.issue_count > 0
    return 1 if differs else 0
