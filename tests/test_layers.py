"""The package's layers (STYLE.md rule 2): cli -> app -> (web, control, sync) -> (chain, desks) -> (store, observe),
with the leaf modules under them all; chain and desks never import each other.

Read from the source with `ast`, every import counted (inside functions and under TYPE_CHECKING too): a
component that reached up for the whole configuration, or for a helper that lives in a sibling, would show
here first. A module the table does not place fails the test, so a new one is placed when it is written.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SIDECAR = Path(__file__).resolve().parent.parent / "sidecar"

# Each unit (a package, or a top-level module) and its layer: a unit imports only its own layer and those below.
LAYERS: dict[str, int] = {
    "__main__": 6,
    "cli": 6,
    # The composition root, and what only it uses: the configuration loader (components take their own
    # settings from config_schema, and their secrets as a mapping) and the loop runner with its doorbells.
    "app": 5,
    "config": 5,
    "loops": 5,
    "wakeups": 5,
    "web": 4,
    "control": 4,
    "sync": 4,
    "chain": 3,
    "desks": 3,
    "artifacts": 3,
    "store": 2,
    "observe": 2,
    # Leaves: small helpers any layer may use; they import only each other.
    "boundedjson": 1,
    "config_schema": 1,
    "digits": 1,
    "durations": 1,
    "errors": 1,
    "http_transport": 1,
    "listen": 1,
    "ratelimit": 1,
    "recent": 1,
    "secrets": 1,
    "timestamps": 1,
    "together": 1,
    "urls": 1,
}
NEVER = {("chain", "desks"), ("desks", "chain")}


def unit_of(path: Path) -> str:
    parts = path.relative_to(SIDECAR).with_suffix("").parts
    return parts[0]


def sidecar_imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported unit) of every import of another part of the package in `path`."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: a relative import (the package imports absolutely)"
            names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "sidecar" and len(parts) > 1:
                yield node.lineno, parts[1]


def modules() -> list[Path]:
    return sorted(SIDECAR.rglob("*.py"))


def test_every_unit_has_a_layer() -> None:
    units = {unit_of(path) for path in modules()} - {"__init__"}
    assert units - LAYERS.keys() == set(), "place the new unit in LAYERS"
    assert LAYERS.keys() - units == set(), "a unit in LAYERS no longer exists"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SIDECAR)))
def test_imports_flow_down(path: Path) -> None:
    unit = unit_of(path)
    if unit == "__init__":
        return
    wrong = [
        f"line {line}: {unit} (layer {LAYERS[unit]}) imports {target} (layer {LAYERS[target]})"
        for line, target in sidecar_imports(path)
        if target != unit and (LAYERS[target] > LAYERS[unit] or (unit, target) in NEVER)
    ]
    assert wrong == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The reader finds imports wherever they are written: at the top, in a function, under TYPE_CHECKING."""
    source = tmp_path / "probe.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nimport sidecar.store.db\nif TYPE_CHECKING:\n"
        "    from sidecar.config import Config\ndef f():\n    from sidecar.chain import keys\n"
    )
    assert sorted(target for _, target in sidecar_imports(source)) == ["chain", "config", "store"]
