"""docker-compose.yml is valid and production-shaped (two app replicas behind nginx); the repo's
nginx config really runs in front of two nodes; .ci/run and the Makefile keep the contract."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
import yaml
from redis.asyncio import Redis

from tests.cluster_support import admin_token, fresh, new_session, offer_sdp, publish, user, workers
from tests.conftest import IN_CI
from tests.realtime_support import connect
from tests.server_process import ServerProcess, free_port
from tests.webrtc_clients import SDP

ROOT = Path(__file__).resolve().parents[1]

# The parts of the Compose specification this file uses (compose-spec.json, trimmed).
_HEALTHCHECK = {
    "type": "object",
    "required": ["test"],
    "properties": {
        "test": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "interval": {"type": "string", "pattern": r"^\d+(ms|s|m|h)$"},
        "timeout": {"type": "string", "pattern": r"^\d+(ms|s|m|h)$"},
        "start_period": {"type": "string", "pattern": r"^\d+(ms|s|m|h)$"},
        "retries": {"type": "integer", "minimum": 1},
    },
    "additionalProperties": False,
}
_SERVICE = {
    "type": "object",
    "anyOf": [{"required": ["image"]}, {"required": ["build"]}],
    "required": ["healthcheck"],
    "properties": {
        "image": {"type": "string"},
        "build": {"type": ["string", "object"]},
        "command": {"type": ["string", "array"]},
        "environment": {"type": "object",
                        "additionalProperties": {"type": ["string", "number", "boolean", "null"]}},
        "ports": {"type": "array", "items": {"type": "string", "pattern": r"^\d+:\d+$"}},
        "volumes": {"type": "array", "items": {"type": "string"}},
        "depends_on": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {"condition": {"enum": ["service_started", "service_healthy",
                                                      "service_completed_successfully"]}},
                "required": ["condition"],
            },
        },
        "healthcheck": _HEALTHCHECK,
        "restart": {"enum": ["no", "always", "on-failure", "unless-stopped"]},
    },
    "additionalProperties": False,
}
COMPOSE_SCHEMA = {
    "type": "object",
    "required": ["services"],
    "properties": {
        "services": {"type": "object", "additionalProperties": _SERVICE},
        "volumes": {"type": "object"},
    },
    "patternProperties": {"^x-": {}},  # extension fields (YAML anchors shared by the replicas)
    "additionalProperties": False,
}


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_file_matches_schema() -> None:
    jsonschema.validate(_compose(), COMPOSE_SCHEMA)


APPS = ("app-a", "app-b")


def test_compose_has_apps_redis_with_aof_and_postgres() -> None:
    services = _compose()["services"]
    assert set(services) >= {*APPS, "proxy", "redis", "postgres"}
    assert "--appendonly" in services["redis"]["command"]
    assert services["redis"]["command"][services["redis"]["command"].index("--appendonly") + 1] == "yes"
    for name in APPS:
        env = services[name]["environment"]
        assert env["REDIS_URL"].startswith("redis://redis:")
        assert env["DATABASE_URL"].startswith("postgresql://")
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "/healthz" in " ".join(services[name]["healthcheck"]["test"])
    named = set(_compose()["volumes"])
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).is_file(), volume  # a file of the repository
            else:
                assert source in named


def test_compose_runs_two_nodes_behind_nginx() -> None:
    services = _compose()["services"]
    proxy = services["proxy"]
    assert proxy["image"].startswith("nginx:")
    assert "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in proxy["volumes"]
    assert proxy["ports"] == ["8080:8080"]
    assert {proxy["depends_on"][name]["condition"] for name in APPS} == {"service_healthy"}
    media = [v for name in APPS for v in services[name]["volumes"] if v.endswith(":/app/var")]
    assert len(set(media)) == 2  # each node its own data dir: its own node id and recordings
    for name in APPS:
        env = services[name]["environment"]
        assert env["LINLI_INTERNAL_HOST"] == "0.0.0.0"  # noqa: S104 - the other node forwards to it
        assert "8080:8080" not in services[name].get("ports", [])  # only through the proxy
        assert env["LINLI_SECRET_KEY"] == services[APPS[0]]["environment"]["LINLI_SECRET_KEY"]
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    for name in APPS:
        assert f"server {name}:8080" in conf
    for needed in ("X-Forwarded-For $proxy_add_x_forwarded_for", "Upgrade $http_upgrade",
                   "proxy_buffering off", "proxy_request_buffering off", "proxy_http_version 1.1"):
        assert needed in conf, needed


def test_ci_script_runs_the_readme_test_command() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert "make test" in script
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme


def _nginx() -> str:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        if IN_CI:
            pytest.fail("nginx is required in CI (.ci/run installs nginx-light)")
        pytest.skip("nginx not installed (apt-get install nginx-light)")
    return nginx


@pytest.fixture
def two_nodes(tmp_path: Path, redis_url: str,
              redis_client: Redis) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    database = f"sqlite:///{tmp_path}/shared.db"
    env = {"LINLI_RTMP_PORT": "-1"}
    a = ServerProcess(tmp_path / "a", redis_url, database, extra_env=env)
    b = ServerProcess(tmp_path / "b", redis_url, database, extra_env=env)
    b.secret, b.env["LINLI_SECRET_KEY"] = a.secret, a.secret
    a.start()
    try:
        b.start()
        yield a, b
    finally:
        a.stop()
        b.stop()


@pytest.fixture
def proxy(tmp_path: Path, two_nodes: tuple[ServerProcess, ServerProcess]) -> Iterator[str]:
    """The repository's deploy/nginx.conf, run by a real nginx in front of the two nodes."""
    nginx = _nginx()
    a, b = two_nodes
    port = free_port()
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    site = site.replace("server app-a:8080", f"server 127.0.0.1:{a.port}")
    site = site.replace("server app-b:8080", f"server 127.0.0.1:{b.port}")
    site = site.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    root = tmp_path / "nginx"
    root.mkdir()
    (root / "site.conf").write_text(site)
    user = "user root;" if os.geteuid() == 0 else ""
    (root / "nginx.conf").write_text(f"""
{user}
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    include {root}/site.conf;
}}
""")
    proc = subprocess.Popen([nginx, "-p", str(root), "-c", str(root / "nginx.conf"),
                             "-g", "daemon off;"], stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None:
                    why = proc.stderr.read().decode() if proc.stderr else "nginx died"
                    raise AssertionError(why) from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_nginx_config_in_front_of_two_nodes_carries_whep_and_polling(
        proxy: str, two_nodes: tuple[ServerProcess, ServerProcess], redis_client: Redis) -> None:
    """Through nginx round-robin over two nodes: WHEP offers all answered (whichever node nginx
    picks, the owner answers), and a long-polling Socket.IO client keeps its session and gets
    its comments back although its polls alternate between the nodes."""
    await workers(redis_client, 2)
    async with fresh(proxy) as http:
        admin = await admin_token(http)
        host_token = await user(http, admin, "host", "host_" + secrets.token_hex(3))
        viewer_token = await user(http, admin, "viewer", "viewer_" + secrets.token_hex(3))
        host = await new_session(http, host_token, "代理之后")
        publisher = await publish(http, host)
        try:
            offer = await offer_sdp()
            processes = set()
            for _ in range(6):
                async with http.post(f"/whep/{host.session_id}", data=offer, headers=SDP) as resp:
                    assert resp.status == 201, await resp.text()
                    assert resp.headers["Location"].startswith(f"/whep/{host.session_id}/")
                    processes.add(resp.headers.get("X-Linli-Via") or "owner")
            assert len(processes) == 2  # nginx used both nodes; the other one forwarded
            polling = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
            client = await connect(proxy, "/live", {"session_id": host.session_id,
                                                    "token": viewer_token},
                                   transports=["polling"], http_session=polling)
            try:
                await client.wait(lambda: client.of("state"))
                for i in range(3):
                    assert (await client.call("comment", {"text": f"经过代理 {i}"}))["ok"]
                await client.wait(lambda: len([c for c in client.comments()
                                               if c["text"].startswith("经过代理")]) == 3)
            finally:
                await client.close()
                await polling.close()
        finally:
            await publisher.pc.close()
