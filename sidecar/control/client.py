"""The CLI's side of the control API: ask a running sidecar over gRPC, print tables or JSON.

Exit codes (as the CLI documents them): 0 ok, 1 the sidecar refused or failed the call, 2 usage (an
argument the sidecar calls invalid), 3 the sidecar cannot be reached at the control address.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.json_format import MessageToDict
from virtengine.servicedesk.v1 import control_pb2, control_pb2_grpc

from sidecar.listen import dial_target

TIMEOUT = 10.0
T = TypeVar("T")
EXIT_FOR: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 2,
    grpc.StatusCode.UNAVAILABLE: 3,
    grpc.StatusCode.DEADLINE_EXCEEDED: 3,
}


def call(address: str, fn: Callable[[control_pb2_grpc.ControlStub], T]) -> tuple[T | None, int]:
    """Run one call; (answer, 0) or (None, exit code) with the reason on standard error."""
    try:
        target = dial_target(address)
    except ValueError as exc:
        print(f"servicedesk-sidecar: --control {address!r}: {exc}", file=sys.stderr)
        return None, 2
    with grpc.insecure_channel(target) as channel:
        try:
            return fn(control_pb2_grpc.ControlStub(channel)), 0
        except grpc.RpcError as exc:
            code, detail = exc.code(), exc.details()
            unreachable = EXIT_FOR.get(code) == 3
            reach = " (is the sidecar running, and is --control its grpc.listen?)" if unreachable else ""
            print(f"servicedesk-sidecar: {code.name}: {detail}{reach}", file=sys.stderr)
            return None, EXIT_FOR.get(code, 1)


CONFLICT_COLUMNS = ("id", "ticket_id", "desk", "field", "chain_value", "desk_value", "strategy", "state", "detected_at")


def print_conflicts(answer: control_pb2.ListConflictsResponse, as_json: bool) -> None:
    rows = [
        MessageToDict(c, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
        for c in answer.conflicts
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print("no conflicts")
        return
    print_table(rows, CONFLICT_COLUMNS)


def print_table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))


def conflicts(address: str, include_resolved: bool, as_json: bool) -> int:
    request = control_pb2.ListConflictsRequest(include_resolved=include_resolved, limit=1000)
    answer, code = call(address, lambda stub: stub.ListConflicts(request, timeout=TIMEOUT))
    if answer is not None:
        print_conflicts(answer, as_json)
    return code


def resolve(address: str, conflict_id: int, keep: str, operator: str, as_json: bool) -> int:
    request = control_pb2.ResolveConflictRequest(id=conflict_id, winner=keep, operator=operator)
    answer, code = call(address, lambda stub: stub.ResolveConflict(request, timeout=TIMEOUT))
    if answer is None:
        return code
    row = MessageToDict(answer.conflict, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    if as_json:
        print(json.dumps(row, indent=2))
    else:
        print(f"conflict {row['id']} resolved: {keep} kept ({row['field']} of {row['ticket_id']} at {row['desk']})")
    return 0
