"""The shared test vectors (a copy of shared/vectors, checked to match it where shared/ is present)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parent


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())
