"""Standard grpc.health.v1 follows the chain follower: a real sidecar on the devnet node says SERVING,
NOT_SERVING while the node is down, and SERVING again once it is back and the cursor has caught up."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from devnet.cometbft import DevnetNode
from sidecar.control.health import follower_serving
from sidecar.control.server import SERVICE_NAME
from sidecar.observe.health import ChainHealth, HealthState
from tests.sidecar.harness import app_flags, running_app

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def next_status(stream: grpc.aio.UnaryStreamCall, wanted: int, timeout: float) -> None:
    """Read the Watch stream until it says `wanted`, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    seen: list[int] = []
    while time.monotonic() < deadline:
        try:
            answer = await asyncio.wait_for(stream.read(), deadline - time.monotonic())
        except TimeoutError:
            break
        assert answer is not grpc.aio.EOF, "the Watch stream ended"
        seen.append(answer.status)
        if answer.status == wanted:
            return
    raise AssertionError(f"health did not become {health_pb2.HealthCheckResponse.ServingStatus.Name(wanted)}: {seen}")


@pytest.mark.node
async def test_health_flips_when_the_node_stops_and_comes_back(devnet_node: DevnetNode, tmp_path: Path) -> None:
    async with running_app(app_flags(tmp_path, devnet_node.rpc_url)) as app:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
            await next_status(watch, SERVING, timeout=30)
            assert (await health.Check(health_pb2.HealthCheckRequest(), timeout=5)).status == SERVING

            await asyncio.to_thread(devnet_node.stop)
            await next_status(watch, NOT_SERVING, timeout=30)
            assert (await health.Check(health_pb2.HealthCheckRequest(), timeout=5)).status == NOT_SERVING

            await asyncio.to_thread(devnet_node.start)
            await next_status(watch, SERVING, timeout=60)
            watch.cancel()

            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)  # grpcurl works without proto files
            ask = reflection_pb2.ServerReflectionRequest(list_services="")
            [answer] = [a async for a in reflection.ServerReflectionInfo(iter([ask]), timeout=5)]
            names = {s.name for s in answer.list_services_response.service}
            assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names


def test_serving_needs_a_reachable_node_and_a_cursor_within_the_lag_bound() -> None:
    def state(**chain: object) -> HealthState:
        return HealthState(chain=ChainHealth(**{"reachable": True, "head_height": 120, **chain}))  # type: ignore[arg-type]

    assert follower_serving(state(), 100, max_lag_blocks=20)
    assert not follower_serving(state(), 99, max_lag_blocks=20)  # one block too far behind
    assert not follower_serving(state(reachable=False), 120, max_lag_blocks=20)
    assert not follower_serving(state(catching_up=True), 120, max_lag_blocks=20)
    assert not follower_serving(state(head_height=None), 120, max_lag_blocks=20)
    assert not follower_serving(state(), None, max_lag_blocks=20)  # no cursor yet
    refused = state()
    refused.set_problem("follower", "node serves another chain")
    assert not follower_serving(refused, 120, max_lag_blocks=20)
