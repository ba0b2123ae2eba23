"""virtengine.servicedesk.v1.Control: one servicer assembled from the modules that each own a group of calls.

Only this package maps sidecar errors to gRPC status codes.
"""

from __future__ import annotations

from virtengine.servicedesk.v1 import control_pb2_grpc

from sidecar.control.actions import ActionCalls
from sidecar.control.deps import ControlDeps
from sidecar.control.lists import ListCalls
from sidecar.control.queries import QueryCalls
from sidecar.control.reconcile import ReconcileCalls
from sidecar.control.steering import SteeringCalls


class ControlService(
    QueryCalls, ListCalls, ActionCalls, ReconcileCalls, SteeringCalls, control_pb2_grpc.ControlServicer
):
    def __init__(self, deps: ControlDeps) -> None:
        self.deps = deps
