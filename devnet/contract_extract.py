"""Cut the pinned Jira OpenAPI specs down to the operations this project uses.

The full specs are 3 MB of third-party data that live outside the repository; the Jira simulator
and its contract checks need only the operations below and the components they reference. This
script writes that subset into devnet/contracts/ as sorted, indented JSON, so a regeneration shows
up as a readable diff, and records the SHA-256 of the pinned source it came from. Where the full
specs sit beside the checkout, tests/devnet/test_contract_extract.py re-runs it and compares bytes.

    python -m devnet.contract_extract --platform PATH --jsm PATH --out devnet/contracts/
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONTRACTS_DIR = Path(__file__).resolve().parent / "contracts"
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
HEADER_KEYS = ("openapi", "info", "servers")  # copied as they are; `info` gains x-extracted-from
COMPONENTS = "#/components/"

# The operations the Jira simulator serves (devnet/jira_api.py) and the sidecar's Jira client calls
# (sidecar/desks/jira.py). Every one the client calls is also served by the simulator.
PLATFORM_OPERATIONS: tuple[tuple[str, str], ...] = (
    ("POST", "/rest/api/3/issue"),  # client: create an issue
    ("GET", "/rest/api/3/issue/{issueIdOrKey}"),  # client: read an issue, its fields and claim property
    ("PUT", "/rest/api/3/issue/{issueIdOrKey}"),  # client: edit fields and labels
    ("PUT", "/rest/api/3/issue/{issueIdOrKey}/assignee"),  # client: assign / unassign
    ("GET", "/rest/api/3/issue/{issueIdOrKey}/transitions"),  # client: find the transition to a status
    ("POST", "/rest/api/3/issue/{issueIdOrKey}/transitions"),  # client: move the issue
    ("GET", "/rest/api/3/issue/{issueIdOrKey}/changelog"),  # client: the history expand=changelog cut off
    ("GET", "/rest/api/3/issue/{issueIdOrKey}/comment"),  # client: find its own comments again
    ("POST", "/rest/api/3/issue/{issueIdOrKey}/comment"),  # client: add a comment
    ("POST", "/rest/api/3/issue/{issueIdOrKey}/attachments"),  # client: multipart upload
    ("GET", "/rest/api/3/attachment/meta"),  # simulator: enabled and uploadLimit
    ("GET", "/rest/api/3/attachment/content/{id}"),  # client: download (a 303 to the media URL)
    ("GET", "/rest/api/3/attachment/{id}"),  # simulator: one attachment's metadata
    ("DELETE", "/rest/api/3/attachment/{id}"),  # simulator: remove an attachment
    ("GET", "/rest/api/3/issue/{issueIdOrKey}/properties/{propertyKey}"),  # simulator only
    ("PUT", "/rest/api/3/issue/{issueIdOrKey}/properties/{propertyKey}"),  # client: the sidecar's claim
    ("GET", "/rest/api/3/search/jql"),  # simulator: the GET form of enhanced search
    ("POST", "/rest/api/3/search/jql"),  # client: find the issue of a ticket
    ("GET", "/rest/api/3/search"),  # simulator: the removed search, answered with 410 Gone
    ("POST", "/rest/api/3/search"),  # simulator: the removed search, answered with 410 Gone
    ("GET", "/rest/api/3/myself"),  # client: health check
    ("GET", "/rest/api/3/mypermissions"),  # desk check: the account's project permissions
    ("GET", "/rest/api/3/project/{projectIdOrKey}"),  # desk check: the project and its issue types
    ("GET", "/rest/api/3/project/{projectIdOrKey}/statuses"),  # desk check: each issue type's statuses
    ("GET", "/rest/api/3/priority/search"),  # desk check: the project's priorities
)
JSM_OPERATIONS: tuple[tuple[str, str], ...] = (
    ("POST", "/rest/servicedeskapi/request"),  # client: create a customer request
    ("POST", "/rest/servicedeskapi/request/{issueIdOrKey}/comment"),  # client: public / internal comment
    ("GET", "/rest/servicedeskapi/request/{issueIdOrKey}/attachment"),  # client: the customer-visible files
    ("POST", "/rest/servicedeskapi/request/{issueIdOrKey}/attachment"),  # simulator: files with a comment
    ("GET", "/rest/servicedeskapi/servicedesk/{serviceDeskId}/requesttype/{requestTypeId}"),  # desk check
)


@dataclass(frozen=True)
class PinnedSpec:
    """One pinned third-party spec, what is taken from it, and where the subset goes."""

    source: str  # file name of the full spec as pinned
    sha256: str  # of the pinned file's bytes; another file is refused
    subset: str  # file name of the subset in devnet/contracts/
    operations: tuple[tuple[str, str], ...]


PLATFORM = PinnedSpec(
    "jira-platform-v3.json",
    "ae5e7e6d5e8078c44055f28741e865bd99114d211180173922dec292a25af1fa",
    "jira-platform-v3.subset.json",
    PLATFORM_OPERATIONS,
)
JSM = PinnedSpec(
    "jira-servicemanagement-v3.json",
    "321ecc15da0ab2666e0b2670f056b476a5b0065b30d08444a98feea43a2273bb",
    "jira-servicemanagement-v3.subset.json",
    JSM_OPERATIONS,
)
PINNED = (PLATFORM, JSM)


class ExtractError(Exception):
    """The source is not the pinned spec, or lacks something the project uses."""


def _refs(node: Any) -> Iterator[str]:
    """Every local reference under `node`: `$ref` values and discriminator mapping targets."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            elif key == "discriminator" and isinstance(value, dict):
                yield from (v for v in (value.get("mapping") or {}).values() if isinstance(v, str))
                yield from _refs(value)
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _component(ref: str) -> tuple[str, str]:
    """`#/components/schemas/Foo` -> ("schemas", "Foo"), JSON-pointer escapes undone."""
    if not ref.startswith(COMPONENTS):
        raise ExtractError(f"reference {ref!r} points outside components/: cannot extract it")
    kind, _, name = ref[len(COMPONENTS) :].partition("/")
    if not kind or not name or "/" in name:
        raise ExtractError(f"reference {ref!r} is not of the form #/components/<kind>/<name>")
    return kind, name.replace("~1", "/").replace("~0", "~")


def _security_schemes(node: Any) -> set[str]:
    """Names of the security schemes the `security` requirement lists under `node` use."""
    names: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "security" and isinstance(value, list):
                names.update(name for req in value if isinstance(req, dict) for name in req)
            else:
                names |= _security_schemes(value)
    elif isinstance(node, list):
        for item in node:
            names |= _security_schemes(item)
    return names


def extract(raw: bytes, pinned: PinnedSpec) -> dict[str, Any]:
    """The subset of the spec in `raw` that `pinned.operations` need, with every component they reach."""
    digest = hashlib.sha256(raw).hexdigest()
    if digest != pinned.sha256:
        raise ExtractError(
            f"{pinned.source}: sha256 {digest} is not the pinned {pinned.sha256}; "
            "review the new spec, then update PINNED in devnet/contract_extract.py"
        )
    spec = json.loads(raw)
    paths: dict[str, dict[str, Any]] = {}
    for method, template in pinned.operations:
        item = spec.get("paths", {}).get(template)
        operation = item.get(method.lower()) if isinstance(item, dict) else None
        if operation is None:
            raise ExtractError(f"{pinned.source} has no operation {method} {template}")
        kept = paths.setdefault(template, {k: v for k, v in item.items() if k not in HTTP_METHODS})
        kept[method.lower()] = operation

    available = spec.get("components", {})
    components: dict[str, dict[str, Any]] = {}
    pending = sorted(set(_refs(paths)))
    while pending:
        kind, name = _component(pending.pop())
        if name in components.get(kind, {}):
            continue
        target = available.get(kind, {}).get(name)
        if target is None:
            raise ExtractError(f"{pinned.source}: #/components/{kind}/{name} is referenced but not defined")
        components.setdefault(kind, {})[name] = target
        pending.extend(_refs(target))
    schemes = available.get("securitySchemes", {})
    for name in sorted(_security_schemes(paths) | _security_schemes(spec.get("security"))):
        if name not in schemes:
            raise ExtractError(f"{pinned.source}: security scheme {name!r} is required but not defined")
        components.setdefault("securitySchemes", {})[name] = schemes[name]

    subset: dict[str, Any] = {key: spec[key] for key in HEADER_KEYS if key in spec}
    subset["info"] = {
        **spec.get("info", {}),
        "x-extracted-from": {"file": pinned.source, "sha256": digest, "by": "devnet/contract_extract.py"},
    }
    if "security" in spec:
        subset["security"] = spec["security"]
    subset["paths"] = paths
    subset["components"] = components
    return subset


def render(subset: dict[str, Any]) -> bytes:
    """The one serialisation written to disk: sorted keys, two-space indent, UTF-8, final newline."""
    return (json.dumps(subset, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def extract_file(path: Path, pinned: PinnedSpec) -> bytes:
    """The rendered subset of the full spec at `path`."""
    return render(extract(path.read_bytes(), pinned))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devnet.contract_extract", description=__doc__.split("\n")[0])
    parser.add_argument("--platform", type=Path, required=True, help=f"the pinned {PLATFORM.source}")
    parser.add_argument("--jsm", type=Path, required=True, help=f"the pinned {JSM.source}")
    parser.add_argument("--out", type=Path, default=CONTRACTS_DIR, help="directory for the subsets")
    args = parser.parse_args(argv)
    try:
        sources = ((PLATFORM, args.platform), (JSM, args.jsm))
        rendered = [(pinned, extract_file(path, pinned)) for pinned, path in sources]
    except (OSError, ValueError, ExtractError) as exc:
        print(f"contract_extract: {exc}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for pinned, data in rendered:
        (args.out / pinned.subset).write_bytes(data)
        print(f"{args.out / pinned.subset}: {len(pinned.operations)} operations, {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
