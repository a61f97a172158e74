"""The packages of docs/ARCHITECTURE.md are the ones that ship: the image copies each of them, and
the import contracts name each of them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _packages() -> set[str]:
    """Every top-level Python package of the repository (a directory with an __init__.py)."""
    return {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}


def test_the_image_copies_every_package() -> None:
    copied = set(re.findall(r"^COPY (\w+) \1$", (ROOT / "Dockerfile").read_text(), re.M))
    assert _packages() <= copied, f"not copied into the image: {sorted(_packages() - copied)}"


def test_every_package_sits_in_a_layer_and_is_type_checked() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    linter = config["tool"]["importlinter"]
    layers = next(c for c in linter["contracts"] if c["type"] == "layers")["layers"]
    layered = {name.strip() for layer in layers for name in layer.split("|")}
    assert _packages() == layered == set(linter["root_packages"])
    assert _packages() == set(config["tool"]["mypy"]["packages"])
