"""The lane lists in conftest.py name tests that exist: a renamed e2e module must not quietly
fall into the fast lane."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import E2E_MODULES, E2E_TESTS, SLOW_TESTS

TESTS = Path(__file__).resolve().parent


def _test_names(module: str) -> set[str]:
    tree = ast.parse((TESTS / f"{module}.py").read_text())
    return {node.name for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")}


def test_every_listed_e2e_module_exists() -> None:
    missing = sorted(m for m in E2E_MODULES if not (TESTS / f"{m}.py").exists())
    assert not missing, f"E2E_MODULES in tests/conftest.py names missing modules: {missing}"


def test_every_listed_single_test_exists() -> None:
    missing = []
    for entry in sorted(E2E_TESTS | SLOW_TESTS):
        module, _, name = entry.partition("::")
        if not (TESTS / f"{module}.py").exists() or name not in _test_names(module):
            missing.append(entry)
    assert not missing, f"tests/conftest.py lists tests that do not exist: {missing}"
