"""The list calls: jobs, tx intents and conflicts, filtered and paged."""

from __future__ import annotations

import grpc
from virtengine.servicedesk.v1 import control_pb2

from sidecar.control.deps import ControlDeps
from sidecar.control.views import conflict_message, intent_message, job_message
from sidecar.store.inbound import list_conflicts
from sidecar.store.intents import list_intents
from sidecar.store.jobs import list_jobs


class ListCalls:
    deps: ControlDeps

    async def ListJobs(
        self, request: control_pb2.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.ListJobsResponse:
        limit = request.limit if 0 < request.limit <= 1000 else 100
        jobs = await self.deps.store.read("list jobs", list_jobs, request.state or None, request.desk or None, limit)
        return control_pb2.ListJobsResponse(jobs=[job_message(j) for j in jobs])

    async def ListConflicts(
        self, request: control_pb2.ListConflictsRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.ListConflictsResponse:
        limit = request.limit if 0 < request.limit <= 1000 else 100
        rows = await self.deps.store.read("list conflicts", list_conflicts, request.include_resolved, limit)
        return control_pb2.ListConflictsResponse(conflicts=[conflict_message(c) for c in rows])

    async def ListTxIntents(
        self, request: control_pb2.ListTxIntentsRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.ListTxIntentsResponse:
        limit = request.limit if 0 < request.limit <= 1000 else 100
        views = await self.deps.store.read("list intents", list_intents, request.state or None, limit)
        return control_pb2.ListTxIntentsResponse(intents=[intent_message(v) for v in views])
