"""The list calls: jobs, tx intents and conflicts, filtered and paged (newest first, keyset pages on id)."""

from __future__ import annotations

import grpc
from virtengine.servicedesk.v1 import control_pb2

from sidecar.control.deps import ControlDeps
from sidecar.control.paging import BadArgument, check_desk, check_state, check_ticket_id, cut, page_of, refuse
from sidecar.control.views import conflict_message, intent_message, job_message
from sidecar.store.inbound import CONFLICT_STATES, list_conflicts
from sidecar.store.intents import INTENT_STATES, list_intents
from sidecar.store.jobs import JOB_STATES, list_jobs


class ListCalls:
    deps: ControlDeps

    async def ListJobs(
        self, request: control_pb2.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.ListJobsResponse:
        try:
            page = page_of("jobs", request.limit, request.page_token)
            state = check_state(request.state, JOB_STATES)
            desk = check_desk(request.desk)
            ticket_id = check_ticket_id(request.ticket_id)
        except BadArgument as exc:
            await refuse(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        rows = await self.deps.store.read(
            "list jobs", list_jobs, state, desk, page.fetch, ticket_id=ticket_id, before_id=page.before_id
        )
        jobs, token = cut("jobs", rows, page, lambda j: j.id)
        return control_pb2.ListJobsResponse(jobs=[job_message(j) for j in jobs], next_page_token=token)

    async def ListConflicts(
        self, request: control_pb2.ListConflictsRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.ListConflictsResponse:
        try:
            page = page_of("conflicts", request.limit, request.page_token)
            state = check_state(request.state, CONFLICT_STATES)
            desk = check_desk(request.desk)
            ticket_id = check_ticket_id(request.ticket_id)
        except BadArgument as exc:
            await refuse(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        rows = await self.deps.store.read(
            "list conflicts",
            list_conflicts,
            request.include_resolved,
            page.fetch,
            state=state,
            desk=desk,
            ticket_id=ticket_id,
            before_id=page.before_id,
        )
        conflicts, token = cut("conflicts", rows, page, lambda c: c.id)
        return control_pb2.ListConflictsResponse(
            conflicts=[conflict_message(c) for c in conflicts], next_page_token=token
        )

    async def ListTxIntents(
        self, request: control_pb2.ListTxIntentsRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.ListTxIntentsResponse:
        try:
            page = page_of("intents", request.limit, request.page_token)
            state = check_state(request.state, INTENT_STATES)
            ticket_id = check_ticket_id(request.ticket_id)
        except BadArgument as exc:
            await refuse(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        rows = await self.deps.store.read(
            "list intents", list_intents, state, page.fetch, ticket_id=ticket_id, before_id=page.before_id
        )
        views, token = cut("intents", rows, page, lambda v: v.intent.id)
        return control_pb2.ListTxIntentsResponse(intents=[intent_message(v) for v in views], next_page_token=token)
