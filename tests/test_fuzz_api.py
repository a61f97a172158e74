"""Schemathesis against the served `/api/openapi.json`, as every role, on a real server.

The server is `python -m server serve` in a subprocess with a real redis-server and SQLite.
Before fuzzing, a small world is seeded through the API (a community, a session, a batch, a
product, a sale, a group-buy, a live hold and a paid order), so that besides schemathesis'
own values every path parameter is also tried with ids that exist. For each role (anonymous,
viewer, assistant, host, admin) and each operation, positive and negative cases are generated
and checked: no 5xx, the status documented, the content type documented, and the body valid
against the document (errors are the `Error` schema). Failures are collected, not shrunk, so one
run names every broken operation.

Bounded for CI (a few examples per operation, derandomized so CI is reproducible);
`LINLI_FUZZ_EXAMPLES=50` goes bigger by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from redis import Redis
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import Failure, FailureGroup

from tests.conftest import _fresh_pg_database
from tests.server_process import ServerProcess

EXAMPLES = int(os.environ.get("LINLI_FUZZ_EXAMPLES", "6"))
ROLES = ("anonymous", "viewer", "assistant", "host", "admin")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
NEGATIVE_CHECKS = [*CHECKS, negative_data_rejection]
# WHIP/WHEP offers are SDP text: sent as generated, like text/plain.
schemathesis.serializer.alias("application/sdp", "text/plain")


@dataclass
class World:
    """What the seed created: ids that path parameters may point at, and a token per role."""

    url: str
    tokens: dict[str, str] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)


def _call(http: requests.Session, method: str, url: str, token: str | None = None,
          expect: int = 200, **kwargs: Any) -> Any:
    headers = dict(kwargs.pop("headers", {}))
    if token:
        headers["Authorization"] = f"Bearer {token}"
    resp = http.request(method, url, headers=headers, timeout=30, **kwargs)
    assert resp.status_code == expect, f"{method} {url}: {resp.status_code} {resp.text[:500]}"
    return resp.json() if resp.content else None


def seed(server: ServerProcess) -> World:
    """A small marketplace created through the API, as its users would."""
    world = World(server.url)
    base = server.url
    with requests.Session() as http:
        admin = _call(http, "POST", f"{base}/api/auth/token",
                      json={"username": "admin", "password": server.admin_password})["token"]
        world.tokens["admin"] = admin
        for role in ("viewer", "assistant", "host"):
            name = f"fuzz_{role}_{uuid.uuid4().hex[:6]}"
            made = _call(http, "POST", f"{base}/api/users", admin, expect=201,
                         json={"username": name, "password": "password-" + name, "role": role})
            world.user_ids[role] = int(made["id"])
            world.tokens[role] = _call(http, "POST", f"{base}/api/auth/token",
                                       json={"username": name, "password": "password-" + name})["token"]
        host, viewer = world.tokens["host"], world.tokens["viewer"]
        community = _call(http, "POST", f"{base}/api/communities", admin, expect=201,
                          json={"name": "翠苑小区"})["id"]
        _call(http, "POST", f"{base}/api/communities/{community}/members", admin, expect=201,
              json={"user_id": world.user_ids["viewer"]})
        session = _call(http, "POST", f"{base}/api/sessions", host, expect=201,
                        json={"title": "枇杷专场", "farm": "白沙农场"})
        batch = _call(http, "POST", f"{base}/api/batches", host, expect=201,
                      json={"code": "FUZZ-2024-001", "farm": "白沙农场", "plot": "3号地"})
        product = _call(http, "POST", f"{base}/api/products", host, expect=201,
                        json={"name": "白沙枇杷", "price_fen": 6800, "batch_id": batch["id"]})
        sale = _call(http, "POST", f"{base}/api/sessions/{session['id']}/sales", host, expect=201,
                     json={"product_id": product["id"], "stock": 500, "price_fen": 5900,
                           "per_buyer_limit": 100, "community_ids": [community],
                           "community_price_fen": 5500, "gift_first_n": 10})
        deadline = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        group = _call(http, "POST", f"{base}/api/sales/{sale['id']}/group-buys", host, expect=201,
                      json={"community_id": community, "threshold": 5, "deadline": deadline,
                            "group_price_fen": 5000})
        _call(http, "POST", f"{base}/api/communities/{community}/pickup-points", admin, expect=201,
              json={"name": "3号楼门卫", "address": "翠苑路 8 号"})
        holds = [
            _call(http, "POST", f"{base}/api/sales/{sale['id']}/holds", viewer, expect=201,
                  json={"qty": 1}, headers={"Idempotency-Key": f"seed-{i}"})["hold_id"]
            for i in range(2)
        ]
        order = _call(http, "POST", f"{base}/api/holds/{holds[1]}/pay", viewer)
        _call(http, "POST", f"{base}/api/batches/{batch['code']}/trace-events", host, expect=201,
              json={"kind": "harvested", "location": "3号地", "note": "清晨采摘"})
    world.ids.update(
        community=str(community), session=str(session["id"]), batch=str(batch["id"]),
        batch_code=batch["code"], product=str(product["id"]), sale=str(sale["id"]),
        group=str(group["group_id"]), hold=holds[0], order=str(order["order_id"]),
        user=str(world.user_ids["viewer"]),
    )
    return world


# Which seeded object a path parameter names, by the path's first segment (after /api).
_BY_PREFIX = {
    "sessions": "session", "live": "session", "host": "session", "moderate": "session",
    "replays": "session", "whip": "session", "whep": "session", "hls": "session",
    "sales": "sale", "holds": "hold", "orders": "order", "products": "product",
    "communities": "community", "group-buys": "group", "batches": "batch", "trace": "batch_code",
}


def real_path_parameters(path: str, world: World) -> dict[str, str]:
    """Existing ids for the path's parameters (empty when the path has none)."""
    names = re.findall(r"{(\w+)}", path)
    if not names:
        return {}
    segments = [s for s in path.split("/") if s and s != "api"]
    kind = _BY_PREFIX.get(segments[0], "")
    found: dict[str, str] = {}
    for name in names:
        if name in ("code", "batch_code"):
            found[name] = world.ids["batch_code"]
        elif name == "user_id":
            found[name] = world.ids["user"]
        elif name == "session_id":
            found[name] = world.ids["session"]
        elif name == "seq":
            found[name] = "1"
        elif name == "name":
            found[name] = "index.m3u8"
        elif name == "metric":
            found[name] = "orders"
        elif name == "id" and kind:
            found[name] = world.ids[kind]
        else:
            found[name] = "1"
    return found


@pytest.fixture(scope="module")
def server(redis_url: str, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    Redis.from_url(redis_url).flushall()
    data_dir = Path(tempfile.mkdtemp(prefix="linli-fuzz-"))
    database_url = f"sqlite:///{data_dir / 'linli.db'}"
    if os.environ.get("LINLI_FUZZ_DB") == "postgres":
        admin_url = request.getfixturevalue("postgres_admin_url")
        database_url = asyncio.run(_fresh_pg_database(admin_url))
    proc = ServerProcess(data_dir, redis_url, database_url,
                         extra_env={"LINLI_LOG_LEVEL": "ERROR", "LINLI_RTMP_PORT": "-1"})
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def world(server: ServerProcess) -> World:
    return seed(server)


@pytest.fixture(scope="module")
def api_schema(server: ServerProcess) -> Any:
    schema = schemathesis.openapi.from_url(server.url + "/api/openapi.json")
    # Each role's token is sent by the test; unknown query parameters are ignored by design
    # (as by most HTTP APIs), so neither is worth a "negative" case.
    schema.config.generation.update(with_security_parameters=False)
    return schema


def _allowed(entry: dict[str, Any], role: str) -> bool:
    if "security" not in entry:
        return True
    if role == "anonymous":
        return False
    roles = entry.get("x-roles")
    return roles is None or role in roles


def _can_be_negative(entry: dict[str, Any]) -> bool:
    """Only a body or a query can be invalid: path parameters are any string (404 or 400 then)."""
    return "requestBody" in entry or any(p["in"] == "query" for p in entry.get("parameters", []))


def _failures_of(exc: Failure | FailureGroup) -> list[Failure]:
    if isinstance(exc, Failure):
        return [exc]
    return [f for f in exc.exceptions if isinstance(f, Failure)]


class Fuzzer:
    """Sends cases as one role and keeps the first example of every distinct failure."""

    def __init__(self, server: ServerProcess, token: str | None) -> None:
        self.server = server
        self.http = requests.Session()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.failures: dict[str, str] = {}
        self.cases = 0

    def check(self, case: Any, checks: list[Any]) -> None:
        self.cases += 1
        response = case.call(base_url=self.server.url, session=self.http, headers=self.headers,
                             timeout=30)
        try:
            case.validate_response(response, checks=checks)
        except (Failure, FailureGroup) as exc:
            found = _failures_of(exc)
            key = (f"{case.operation.label} -> {response.status_code}: "
                   + ", ".join(sorted({f.title for f in found})))
            detail = "\n".join(f"- {f.title}: {f.message[:1200]}" for f in found)
            self.failures.setdefault(key, f"{detail}\n{case.as_curl_command()}")

    def run(self, strategy: Any, examples: int, checks: list[Any]) -> None:
        @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def run(case: Any) -> None:
            self.check(case, checks)

        # Unsatisfiable: no case of that kind exists (e.g. nothing in the operation can be invalid).
        with contextlib.suppress(Unsatisfiable):
            run()

    def report(self, what: str) -> str:
        errors = [line[:2000] for line in self.server.log_tail().splitlines() if "unhandled" in line]
        found = "\n\n".join(f"### {key}\n{detail}" for key, detail in sorted(self.failures.items()))
        return f"{len(self.failures)} failures {what}:\n{found}\n\nserver errors:\n" + "\n".join(errors)

    def close(self) -> None:
        self.http.close()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("role", ROLES)
def test_fuzz_api_as(role: str, server: ServerProcess, world: World, api_schema: Any) -> None:
    fuzzer = Fuzzer(server, world.tokens.get(role))
    started = time.monotonic()
    for result in api_schema.get_all_operations():
        operation = result.ok()
        entry = operation.definition.raw
        if not _allowed(entry, role):
            # Refused before anything is read: one case shows the 401/403 is a proper error.
            fuzzer.run(operation.as_strategy(GenerationMode.POSITIVE), 1, CHECKS)
            continue
        fuzzer.run(operation.as_strategy(GenerationMode.POSITIVE), EXAMPLES, CHECKS)
        real = real_path_parameters(operation.path, world)
        if real:
            fuzzer.run(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=real),
                       EXAMPLES, CHECKS)
        if _can_be_negative(entry):
            fuzzer.run(operation.as_strategy(GenerationMode.NEGATIVE), EXAMPLES, NEGATIVE_CHECKS)
    fuzzer.close()
    print(f"fuzz as {role}: {fuzzer.cases} cases in {time.monotonic() - started:.1f}s, "
          f"{len(fuzzer.failures)} distinct failures")
    assert not fuzzer.failures, fuzzer.report(f"as {role}")


# Path values that are not ids, or ids no row can have; each must get a 4xx error, never a 500.
ODD_IDS = ("0", "-1", "1.0", "1e3", " 1", "²", "١٢", "99999999999", "9" * 19, "9" * 40, "1-²",
           "%00", "..", "a" * 300)


@pytest.mark.parametrize("role", ["anonymous", "admin"])
def test_odd_path_parameters_are_client_errors(role: str, server: ServerProcess, world: World,
                                               api_schema: Any) -> None:
    fuzzer = Fuzzer(server, world.tokens.get(role))
    for result in api_schema.get_all_operations():
        operation = result.ok()
        real = real_path_parameters(operation.path, world)
        for name in real:
            for odd in ODD_IDS:
                fuzzer.check(operation.Case(path_parameters={**real, name: odd}), CHECKS)
    fuzzer.close()
    assert fuzzer.cases > 100
    assert not fuzzer.failures, fuzzer.report(f"for odd path parameters as {role}")


# Bodies no generator aims at: each must be refused with a 4xx error, never reach the database.
HOSTILE_BODIES = {
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "NUL in text": b'{"name": "a\\u0000b", "title": "a\\u0000b", "text": "a\\u0000b"}',
    "NUL in a key": b'{"a\\u0000": 1}',
    "lone surrogate": b'{"name": "\\ud800", "title": "\\udfff", "reason": "\\ud800"}',
    "invalid UTF-8": b'{"name": "\xff\xfe"}',
    "not an object": b"[1, 2, 3]",
    "a bare string": b'"x"',
    "null": b"null",
    "truncated": b'{"name": ',
}


@pytest.mark.parametrize("role", ["viewer", "admin"])
def test_hostile_json_bodies_are_client_errors(role: str, server: ServerProcess, world: World,
                                               api_schema: Any) -> None:
    fuzzer = Fuzzer(server, world.tokens.get(role))
    statuses: dict[str, set[int]] = {}
    for result in api_schema.get_all_operations():
        operation = result.ok()
        body = operation.definition.raw.get("requestBody", {}).get("content", {})
        if "application/json" not in body:
            continue
        real = real_path_parameters(operation.path, world)
        for what, raw in HOSTILE_BODIES.items():
            case = operation.Case(path_parameters=real)
            url = server.url + operation.path.format(**real)
            resp = fuzzer.http.request(operation.method.upper(), url, data=raw, timeout=30,
                                       headers={**fuzzer.headers, "Content-Type": "application/json"})
            fuzzer.cases += 1
            statuses.setdefault(what, set()).add(resp.status_code)
            try:
                case.validate_response(resp, checks=CHECKS)
            except (Failure, FailureGroup) as exc:
                key = f"{operation.label} with {what} -> {resp.status_code}"
                fuzzer.failures.setdefault(key, "\n".join(f.title for f in _failures_of(exc)))
    fuzzer.close()
    assert not fuzzer.failures, fuzzer.report(f"for hostile bodies as {role}")
    assert all(status < 500 for found in statuses.values() for status in found), statuses
    if role == "admin":
        # Where the admin may act, NUL and surrogates are named as bad input.
        with requests.post(server.url + "/api/communities", data=HOSTILE_BODIES["NUL in text"],
                           headers={**fuzzer.headers, "Content-Type": "application/json"},
                           timeout=30) as resp:
            assert resp.status_code == 400
            assert resp.json()["error"]["code"] == "validation_failed"
