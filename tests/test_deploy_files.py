"""docker-compose.yml is valid and production-shaped; .ci/run and the Makefile keep the contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml

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
    "additionalProperties": False,
}


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_file_matches_schema() -> None:
    jsonschema.validate(_compose(), COMPOSE_SCHEMA)


def test_compose_has_app_redis_with_aof_and_postgres() -> None:
    services = _compose()["services"]
    assert set(services) >= {"app", "redis", "postgres"}
    assert "--appendonly" in services["redis"]["command"]
    assert services["redis"]["command"][services["redis"]["command"].index("--appendonly") + 1] == "yes"
    env = services["app"]["environment"]
    assert env["REDIS_URL"].startswith("redis://redis:")
    assert env["DATABASE_URL"].startswith("postgresql://")
    assert services["app"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "/healthz" in " ".join(services["app"]["healthcheck"]["test"])
    named = set(_compose()["volumes"])
    for service in services.values():
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in named


def test_ci_script_runs_the_readme_test_command() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert "make test" in script
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
