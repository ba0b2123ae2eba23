"""Write a benchmark's figures to bench/results/<benchmark>.json so runs can be compared, with the machine
they ran on: {"machine": {cpu, cores, python, date}, "figures": [{name, value, unit, baseline, ratio}]}.
Files from before the machine was recorded are a bare list of figures; `load` reads both."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    baseline: float | None = None
    ratio: float | None = None


@dataclass(frozen=True)
class Run:
    machine: dict[str, Any]  # empty for a file written before machines were recorded
    figures: list[Figure]


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The first "model name" in /proc/cpuinfo (platform.processor() says only the architecture on Linux)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 0,
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }


def load(path: Path) -> Run | None:
    """A results file's run, or None for a file that holds other rows (such as a soak's time series)."""
    doc = json.loads(path.read_text())
    rows = doc if isinstance(doc, list) else doc.get("figures") if isinstance(doc, dict) else None
    fields = {"name", "value", "unit", "baseline", "ratio"}
    if not isinstance(rows, list) or not all(isinstance(r, dict) and set(r) <= fields for r in rows):
        return None
    found = doc.get("machine") if isinstance(doc, dict) else None
    return Run(found if isinstance(found, dict) else {}, [Figure(**row) for row in rows])


def report(benchmark: str, figures: list[Figure]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{benchmark}.json"
    doc = {"machine": machine(), "figures": [asdict(f) for f in figures]}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    width = max(len(f.name) for f in figures)
    print(f"== {benchmark}")
    for f in figures:
        base = f"  baseline {f.baseline:,.2f}" if f.baseline is not None else ""
        ratio = f"  ratio {f.ratio:.2f}x" if f.ratio is not None else ""
        print(f"  {f.name:<{width}}  {f.value:,.2f} {f.unit}{base}{ratio}")
    print(f"  -> {path}")
    return path
