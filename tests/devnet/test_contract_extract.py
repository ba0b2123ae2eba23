"""The Jira contract in devnet/contracts/: a faithful extract of the pinned specs, complete for every
operation the simulator routes, and as strict as the full specs for the requests the project sends."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import Route

from devnet.contract_check import JiraContract
from devnet.contract_extract import (
    CONTRACTS_DIR,
    HTTP_METHODS,
    PINNED,
    ExtractError,
    PinnedSpec,
    extract,
    extract_file,
    render,
)
from devnet.jira_sim import JiraSim
from devnet.sim_core import SimRequest, json_response

ROOT = Path(__file__).resolve().parents[2]
SHARED_SPECS = ROOT.parent / "shared" / "specs"  # the full pinned specs, only where shared/ sits beside us
CREATE = {"fields": {"project": {"key": "VESUPPORT"}, "issuetype": {"name": "Task"}, "summary": "Lease 42"}}


def committed(pinned: PinnedSpec) -> dict[str, Any]:
    return dict(json.loads((CONTRACTS_DIR / pinned.subset).read_bytes()))


def shape(template: str) -> str:
    """`/issue/{key}` and `/issue/{issueIdOrKey}` are one operation: compare paths without parameter names."""
    return re.sub(r"\{[^}]+\}", "{}", template)


def routed_operations() -> set[tuple[str, str]]:
    """(method, path shape) of every route in the simulator's own route table."""
    sim = JiraSim()  # never started: only its Starlette route table is read
    ops: set[tuple[str, str]] = set()
    for route in sim.inner.routes:
        assert isinstance(route, Route)
        ops |= {(method, shape(route.path)) for method in route.methods or () if method != "HEAD"}
    return ops


def request(method: str, path: str, body: Any = None) -> SimRequest:
    data = json.dumps(body).encode() if body is not None else b""
    return SimRequest(method, path, "", {"content-type": "application/json"}, data)


# (a) the committed subset is what the script makes from the pinned specs --------------------------
@pytest.mark.parametrize("pinned", PINNED, ids=lambda p: p.subset)
def test_subset_is_a_fresh_extract_of_the_pinned_spec(pinned: PinnedSpec) -> None:
    full = SHARED_SPECS / pinned.source
    if not full.exists():
        pytest.skip("shared/specs is not beside this checkout: no full spec to extract from")
    fresh = extract_file(full, pinned)
    same = fresh == (CONTRACTS_DIR / pinned.subset).read_bytes()
    assert same, f"devnet/contracts/{pinned.subset} drifted: regenerate it (devnet/contracts/README.md)"


def test_the_documented_command_writes_the_committed_files(tmp_path: Path) -> None:
    specs = {p: SHARED_SPECS / p.source for p in PINNED}
    if not all(path.exists() for path in specs.values()):
        pytest.skip("shared/specs is not beside this checkout: no full spec to extract from")
    platform, jsm = PINNED
    cmd = [sys.executable, "-m", "devnet.contract_extract", "--platform", str(specs[platform]),
           "--jsm", str(specs[jsm]), "--out", str(tmp_path)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=120)
    for pinned in PINNED:
        assert (tmp_path / pinned.subset).read_bytes() == (CONTRACTS_DIR / pinned.subset).read_bytes()


@pytest.mark.parametrize("pinned", PINNED, ids=lambda p: p.subset)
def test_subset_records_its_pinned_source_and_holds_exactly_its_operations(pinned: PinnedSpec) -> None:
    subset = committed(pinned)
    assert subset["info"]["x-extracted-from"]["file"] == pinned.source
    assert subset["info"]["x-extracted-from"]["sha256"] == pinned.sha256
    held = {(m.upper(), t) for t, item in subset["paths"].items() for m in item if m in HTTP_METHODS}
    assert held == set(pinned.operations)
    assert (CONTRACTS_DIR / pinned.subset).read_bytes() == render(subset)  # stored in the one diffable form


@pytest.mark.parametrize("pinned", PINNED, ids=lambda p: p.subset)
def test_every_reference_in_the_subset_resolves_inside_it(pinned: PinnedSpec) -> None:
    subset = committed(pinned)
    refs = set(re.findall(r'"\$ref": "([^"]+)"', json.dumps(subset)))
    assert refs, "the operations reference no schema: the extract lost its components"
    for ref in refs:
        _, _, kind, name = ref.split("/")
        assert name in subset["components"].get(kind, {}), f"{ref} is referenced but not in {pinned.subset}"


# (b) every operation the simulator routes is in the contract --------------------------------------
def test_the_contract_holds_every_operation_the_simulator_routes() -> None:
    routed = routed_operations()
    assert ("POST", "/rest/api/3/issue") in routed  # the route table was read, not an empty set
    extracted = {(m, shape(t)) for pinned in PINNED for m, t in pinned.operations}
    assert routed - extracted == set(), "routed by the simulator but missing from devnet/contract_extract.py"
    assert extracted - routed == set(), "in the contract but served by no simulator route"


def test_the_checker_knows_every_routed_operation() -> None:
    contract = JiraContract()
    routed = routed_operations()
    assert routed
    for method, path_shape in sorted(routed):
        path = path_shape.replace("{}", "VESUPPORT-1", 1).replace("{}", "claim")
        problems = contract.check_request(request(method, path))
        assert not [p for p in problems if "not an operation" in p], f"{method} {path}: {problems}"


# (c) the subset still refuses what the full spec refuses -------------------------------------------
def test_a_valid_create_passes_and_a_mistyped_one_is_refused() -> None:
    contract = JiraContract()
    assert contract.check_request(request("POST", "/rest/api/3/issue", CREATE)) == []
    problems = contract.check_request(request("POST", "/rest/api/3/issue", {**CREATE, "update": "labels"}))
    assert any("InvalidRequestBody" in p and "is not of type 'object'" in p for p in problems), problems
    problems = contract.check_request(request("POST", "/rest/api/3/search/jql", {"jql": "x", "maxResults": "ten"}))
    assert any("'ten' is not of type 'integer'" in p for p in problems), problems
    problems = contract.check_request(request("POST", "/rest/servicedeskapi/request/VESUPPORT-1/comment", {"body": 5}))
    assert any("5 is not of type 'string'" in p for p in problems), problems


def test_a_mistyped_response_is_refused() -> None:
    contract = JiraContract()
    create = request("POST", "/rest/api/3/issue", CREATE)
    good = {"id": "10000", "key": "VESUPPORT-1", "self": "http://127.0.0.1/rest/api/3/issue/10000"}
    assert contract.check_response(create, json_response(201, good)) == []
    problems = contract.check_response(create, json_response(201, {**good, "id": 10000}))
    assert any("10000 is not of type 'string'" in p for p in problems), problems


@pytest.mark.parametrize(
    ("method", "path", "subset"),
    [
        ("DELETE", "/rest/api/3/issue/VESUPPORT-1", "jira-platform-v3.subset.json"),  # in the full spec only
        ("GET", "/rest/api/2/issue/VESUPPORT-1", "jira-platform-v3.subset.json"),  # in no spec
        ("GET", "/rest/servicedeskapi/request", "jira-servicemanagement-v3.subset.json"),  # in the full spec only
    ],
)
def test_an_operation_outside_the_contract_is_a_named_problem(method: str, path: str, subset: str) -> None:
    problems = JiraContract().check_request(request(method, path))
    assert len(problems) == 1
    assert f"{method} {path} is not an operation of the project's Jira contract ({subset})" in problems[0]


# the script itself, on a small spec of known shape -------------------------------------------------
def tiny_spec(**schemas: Any) -> bytes:
    ref = {"$ref": "#/components/schemas/Root"}
    spec = {
        "openapi": "3.0.1",
        "info": {"title": "tiny", "version": "1"},
        "servers": [{"url": "https://example.invalid"}],
        "tags": [{"name": "dropped"}],
        "paths": {
            "/a/{id}": {
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "get": {"responses": {"200": {"content": {"application/json": {"schema": ref}}}},
                        "security": [{"basicAuth": []}]},
                "delete": {"responses": {"204": {"description": "gone"}}},
            },
            "/b": {"get": {"responses": {"200": {"description": "unused"}}}},
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"basicAuth": {"type": "http", "scheme": "basic"}, "OAuth2": {"type": "oauth2"}},
        },
    }
    return json.dumps(spec).encode()


def pin(raw: bytes, *operations: tuple[str, str]) -> PinnedSpec:
    return PinnedSpec("tiny.json", hashlib.sha256(raw).hexdigest(), "tiny.subset.json", operations)


def test_extract_keeps_what_the_operations_reach_and_nothing_else() -> None:
    raw = tiny_spec(
        Root={"type": "object", "properties": {"pet": {"$ref": "#/components/schemas/Pet"}}},
        Pet={"oneOf": [{"$ref": "#/components/schemas/Cat"}],
             "discriminator": {"propertyName": "kind", "mapping": {"dog": "#/components/schemas/Dog"}}},
        Cat={"type": "object"},
        Dog={"type": "object"},
        Unused={"type": "string"},
    )
    subset = extract(raw, pin(raw, ("GET", "/a/{id}")))
    assert sorted(subset["components"]["schemas"]) == ["Cat", "Dog", "Pet", "Root"]
    assert sorted(subset["components"]["securitySchemes"]) == ["basicAuth"]
    assert list(subset["paths"]) == ["/a/{id}"]
    assert sorted(subset["paths"]["/a/{id}"]) == ["get", "parameters"]  # the path's parameters stay, DELETE goes
    assert "tags" not in subset
    assert subset["info"]["x-extracted-from"]["sha256"] == hashlib.sha256(raw).hexdigest()
    assert render(subset) == render(extract(raw, pin(raw, ("GET", "/a/{id}"))))


def test_extract_refuses_an_unpinned_source_a_missing_operation_and_a_dangling_reference() -> None:
    raw = tiny_spec(Root={"$ref": "#/components/schemas/Gone"})
    with pytest.raises(ExtractError, match="is not the pinned"):
        extract(raw + b" ", pin(raw, ("GET", "/a/{id}")))
    with pytest.raises(ExtractError, match=r"has no operation POST /a/\{id\}"):
        extract(raw, pin(raw, ("POST", "/a/{id}")))
    with pytest.raises(ExtractError, match="Gone is referenced but not defined"):
        extract(raw, pin(raw, ("GET", "/a/{id}")))
