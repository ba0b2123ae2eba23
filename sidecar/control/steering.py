"""Steering a running sidecar: pause and resume a direction, resync the signer, watch what it does."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from virtengine.servicedesk.v1 import control_pb2

from sidecar.control.deps import ControlDeps


class SteeringCalls:
    deps: ControlDeps

    async def Pause(
        self, request: control_pb2.PauseRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.PauseResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Pause is being built")
        raise AssertionError

    async def Resume(
        self, request: control_pb2.ResumeRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.ResumeResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Resume is being built")
        raise AssertionError

    async def ResyncSequence(
        self, request: control_pb2.ResyncSequenceRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.ResyncSequenceResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "ResyncSequence is being built")
        raise AssertionError

    async def WatchEvents(
        self, request: control_pb2.WatchEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[control_pb2.ControlEvent]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "WatchEvents is being built")
        yield control_pb2.ControlEvent()
