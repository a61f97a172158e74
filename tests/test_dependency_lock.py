"""The lock files agree with pyproject.toml, and every install path goes through them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
TEST_LOCK = ROOT / "requirements" / "lock-test.txt"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def _pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match:
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def _requirements(extra: str | None = None) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = project["optional-dependencies"][extra] if extra else project["dependencies"]
    return [Requirement(text) for text in listed]


def _unsatisfied(requirements: list[Requirement], pins: dict[str, str]) -> list[str]:
    wrong = []
    for req in requirements:
        if req.marker is not None and not req.marker.evaluate():
            continue
        pinned = pins.get(canonicalize_name(req.name))
        if pinned is None:
            wrong.append(f"{req} is not pinned")
        elif not req.specifier.contains(pinned, prereleases=True):
            wrong.append(f"{req} but the lock pins {pinned}")
    return wrong


def test_every_runtime_dependency_is_pinned_in_the_runtime_lock() -> None:
    wrong = _unsatisfied(_requirements(), _pins(LOCK))
    assert not wrong, f"{LOCK.name} is stale, run `make lock`: " + "; ".join(wrong)


def test_every_runtime_and_test_dependency_is_pinned_in_the_test_lock() -> None:
    wrong = _unsatisfied(_requirements() + _requirements("test"), _pins(TEST_LOCK))
    assert not wrong, f"{TEST_LOCK.name} is stale, run `make lock`: " + "; ".join(wrong)


def test_both_locks_pin_the_same_runtime_versions() -> None:
    runtime, test = _pins(LOCK), _pins(TEST_LOCK)
    differ = {name: (version, test.get(name)) for name, version in runtime.items()
              if test.get(name) != version}
    assert not differ, f"runtime pins differ between the locks (lock.txt, lock-test.txt): {differ}"


def test_every_pin_carries_hashes() -> None:
    for path in (LOCK, TEST_LOCK):
        blocks = re.split(r"\n(?=[A-Za-z0-9])", path.read_text())
        unhashed = [b.split()[0] for b in blocks if PIN.match(b) and "--hash=sha256:" not in b]
        assert not unhashed, f"{path.name}: pinned without a hash: {unhashed}"


def test_make_docker_and_ci_install_from_the_locks() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r $(LOCK)" in makefile
    assert "--require-hashes -r $(TEST_LOCK)" in makefile
    assert "LOCK := requirements/lock.txt" in makefile
    assert "TEST_LOCK := requirements/lock-test.txt" in makefile
    # Installing the package itself must not resolve dependencies around the lock.
    installs = [line for line in makefile.splitlines() if "pip install" in line and "-e ." in line]
    assert installs and all("--no-deps" in line for line in installs), installs
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements/lock.txt" in dockerfile
    docker_installs = [line for line in dockerfile.splitlines() if "pip install" in line and "-e ." in line]
    assert docker_installs and all("--no-deps" in line for line in docker_installs), docker_installs
    assert "make test" in (ROOT / ".ci" / "run").read_text()
