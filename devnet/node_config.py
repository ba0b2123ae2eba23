"""Editing a fresh CometBFT home: config.toml keys per section and genesis.json, plus free ports.

config.toml is edited line by line (stdlib has a TOML reader, not a writer) so comments survive."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

TomlValue = str | int | bool
T = TypeVar("T")


def free_port() -> int:
    """A loopback port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


PORT_ATTEMPTS = 3  # first starts whose ports another process took in the meantime


class PortTaken(RuntimeError):
    """A server could not bind a port `free_port` had just found free."""


def start_on_free_ports(start: Callable[[], T], retreat: Callable[[], None], *, started_once: bool) -> T:
    """`start()`, where `free_port` only knew a port was free a moment ago: on a busy machine another process
    can take it first. A first start that fails that way runs `retreat()` (stop, pick new ports) and tries
    again; a restart keeps its ports (clients hold its URLs), so its PortTaken is final."""
    for attempt in range(PORT_ATTEMPTS):
        try:
            return start()
        except PortTaken:
            if started_once or attempt == PORT_ATTEMPTS - 1:
                raise
            retreat()
    raise AssertionError("unreachable")


def _format(value: TomlValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)


def set_toml(text: str, section: str, key: str, value: TomlValue) -> str:
    """Set `key` in `[section]` ("" = the top-level table); append it to the section when missing."""
    lines = text.splitlines()
    start = 0
    if section:
        header = f"[{section}]"
        matches = [i for i, line in enumerate(lines) if line.strip() == header]
        if not matches:
            return text.rstrip("\n") + f"\n\n{header}\n{key} = {_format(value)}\n"
        start = matches[0] + 1
    end = next((i for i in range(start, len(lines)) if re.match(r"^\s*\[", lines[i])), len(lines))
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    for i in range(start, end):
        if pattern.match(lines[i]):
            lines[i] = f"{key} = {_format(value)}"
            break
    else:
        lines.insert(end, f"{key} = {_format(value)}")
    return "\n".join(lines) + "\n"


def edit_config(home: Path, settings: dict[tuple[str, str], TomlValue]) -> None:
    path = home / "config" / "config.toml"
    text = path.read_text()
    for (section, key), value in settings.items():
        text = set_toml(text, section, key, value)
    path.write_text(text)


def write_genesis(home: Path, chain_id: str, app_state: dict[str, Any]) -> None:
    """Set the chain id and the app's genesis state in the genesis.json `cometbft init` wrote."""
    path = home / "config" / "genesis.json"
    genesis = json.loads(path.read_text())
    genesis["chain_id"] = chain_id
    genesis["app_state"] = app_state
    path.write_text(json.dumps(genesis, indent=2))
