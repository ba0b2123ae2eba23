"""Go programs the devnet runs (CometBFT, SeaweedFS), built once at a pinned version into ~/.cache.

One build-and-check loop for every such tool: a cached binary is used when it reports the pinned version;
otherwise it is built (a few attempts, each with a timeout) and checked again.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


class GoToolMissing(RuntimeError):
    """No usable binary of a pinned Go tool, and building one failed or was not allowed."""


def reported_version(binary: Path, pick: Callable[[str], str | None]) -> str | None:
    """What `<binary> version` says, as `pick` reads it from the output; None when it does not run."""
    if not binary.is_file():
        return None
    try:
        out = subprocess.run([str(binary), "version"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return pick(out.stdout)


def ensure_go_tool(
    binary: Path,
    wanted: str,
    version_of: Callable[[Path], str | None],
    build: Callable[[str, float], None],
    *,
    missing: type[GoToolMissing],
    hint: str,
    install: bool,
    timeout: float,
    attempts: int,
) -> Path:
    """The cached binary when it reports `wanted`; else `build(go, timeout)` up to `attempts` times."""
    if version_of(binary) == wanted:
        return binary
    name = binary.name
    if not install:
        raise missing(f"{name} {wanted} not found at {binary}: {hint}")
    go = shutil.which("go")
    if go is None:
        raise missing(f"`go` is not on PATH, cannot build {name}: {hint}")
    binary.parent.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    for attempt in range(1, attempts + 1):
        try:
            build(go, timeout)
        except subprocess.CalledProcessError as exc:
            errors.append(f"attempt {attempt}: exit {exc.returncode}: {str(exc.stderr).strip()[-2000:]}")
            continue
        except subprocess.TimeoutExpired:
            errors.append(f"attempt {attempt}: timed out after {timeout:.0f}s")
            continue
        except (KeyError, ValueError) as exc:
            errors.append(f"attempt {attempt}: {exc}")
            continue
        found = version_of(binary)
        if found == wanted:
            return binary
        errors.append(f"attempt {attempt}: built binary reports version {found!r}")
    raise missing(f"installing {name} failed: " + "; ".join(errors))


def install_main(argv: list[str] | None, module: str, ensure: Callable[[], Path]) -> int:
    """`python -m <module> install`: build (or find) the pinned binary and print its path."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["install"]:
        try:
            print(ensure())
        except GoToolMissing as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    print(f"usage: python -m {module} install", file=sys.stderr)
    return 2
