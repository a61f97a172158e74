"""Every time the API sends carries its offset: a zone-less "20:00" is read by a browser as its
own local time, so a preview at 20:00 in Shanghai showed 12:00 (or 04:00).

The walk reads every JSON GET route of the authorization matrix (which names every route of
the app) over a furnished world on SQLite, whose driver hands times back without a zone, and
checks each `*_at` field (and the other time fields) parses as ISO 8601 with an offset.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tests.authz_support import seed_world
from tests.conftest import Api
from tests.test_authz_matrix import REST

TIME_KEYS = {"deadline", "since", "until", "server_time", "at"}
# Who reads each route: its own buyer first (sees the most of their things), then staff.
READERS = ("buyer", "host", "admin", "assistant", "other_host", "viewer", "anon")


def _is_time_key(key: str) -> bool:
    return key.endswith("_at") or key in TIME_KEYS


def zone_less(value: Any, path: str = "$") -> list[str]:
    """Paths of time fields without an offset (or not ISO 8601 at all)."""
    bad: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}"
            if _is_time_key(str(key)) and isinstance(item, str):
                try:
                    parsed = datetime.fromisoformat(item)
                except ValueError:
                    bad.append(f"{here}={item!r} (not ISO 8601)")
                    continue
                if parsed.utcoffset() is None or "T" not in item:
                    bad.append(f"{here}={item!r}")
            else:
                bad += zone_less(item, here)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            bad += zone_less(item, f"{path}[{index}]")
    return bad


def test_the_walker_sees_a_zone_less_time() -> None:
    assert zone_less({"a": [{"scheduled_at": "2030-01-01T20:00:00"}]}) == [
        "$.a[0].scheduled_at='2030-01-01T20:00:00'"]
    assert zone_less({"ended_at": "2030-01-01 20:00:00+00:00"}) != []
    assert zone_less({"ended_at": "2030-01-01T12:00:00+00:00", "deadline": None}) == []


@pytest.mark.asyncio
async def test_every_time_in_the_api_has_an_offset(api: Api) -> None:
    w = await seed_world(api)
    headers = w.headers("host")
    resp = await api.client.put(f"/api/sessions/{w.session_a}/preview", headers=headers, json={
        "scheduled_at": "2030-06-01T20:00:00+08:00", "product_ids": [w.product_a]})
    assert resp.status == 200, await resp.text()
    resp = await api.client.post(f"/api/sessions/{w.session_a}/subscribe",
                                 headers=w.headers("buyer"))
    assert resp.status == 200
    walked, bad, times = [], [], 0
    for op in REST:
        if op.method != "GET":
            continue
        reader = next((r for r in READERS if r in op.allowed), None)
        if reader is None:
            continue
        resp = await api.client.get(op.target.format(w=w), headers=w.headers(reader))
        if resp.status != 200 or resp.content_type != "application/json":
            continue
        body = await resp.json()
        walked.append(op.route)
        found = zone_less(body)
        bad += [f"{op.route}: {item}" for item in found]
        times += _count_times(body)
    assert bad == []
    # The walk really covered the routes that carry times.
    for route in ("/api/sessions", "/api/sessions/{id}/preview", "/api/orders/{id}",
                  "/api/notifications", "/api/claims/{id}", "/api/sales/{id}",
                  "/api/group-buys/{id}", "/api/trace/{batch_code}"):
        assert route in walked, route
    assert times > 30


def _count_times(value: Any) -> int:
    if isinstance(value, dict):
        return sum(1 if _is_time_key(str(k)) and isinstance(v, str) else _count_times(v)
                   for k, v in value.items())
    if isinstance(value, list):
        return sum(_count_times(item) for item in value)
    return 0
