"""Write a benchmark's figures to bench/results/<benchmark>.json so runs can be compared."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    baseline: float | None = None
    ratio: float | None = None


def report(benchmark: str, figures: list[Figure]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{benchmark}.json"
    path.write_text(json.dumps([asdict(f) for f in figures], indent=2) + "\n")
    width = max(len(f.name) for f in figures)
    print(f"== {benchmark}")
    for f in figures:
        base = f"  baseline {f.baseline:,.2f}" if f.baseline is not None else ""
        ratio = f"  ratio {f.ratio:.2f}x" if f.ratio is not None else ""
        print(f"  {f.name:<{width}}  {f.value:,.2f} {f.unit}{base}{ratio}")
    print(f"  -> {path}")
    return path
