"""Reconcile: what the chain holds that the sidecar or the desks lack, found and (unless dry_run) queued."""

from __future__ import annotations

import grpc
from virtengine.servicedesk.v1 import control_pb2

from sidecar.control.deps import ControlDeps


class ReconcileCalls:
    deps: ControlDeps

    async def Reconcile(
        self, request: control_pb2.ReconcileRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.ReconcileResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Reconcile is being built")
        raise AssertionError
