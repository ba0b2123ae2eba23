"""ListConflicts and ResolveConflict over a real grpc.aio server on loopback, and the CLI that calls them.

The conflict is parked by the real inbound engine (tests/sidecar/sync/test_inbound_engine.py's manual
case); the operator keeps the desk's value, and the engine's next re-read sends it to the chain.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from virtengine.servicedesk.v1 import control_pb2, control_pb2_grpc

from devnet.jira_sim import JiraSim
from devnet.sim_faults import ManualClock
from sidecar.cli import main
from sidecar.control.deps import ControlDeps
from sidecar.control.server import ControlServer
from sidecar.observe.audit import Auditor
from sidecar.observe.health import HealthState
from tests.sidecar.sync.rig import Rig
from tests.sidecar.sync.test_inbound_engine import edit_priority_on_both_sides, msgs, open_pair, run


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in a thread (it makes blocking gRPC calls to the server on this loop)."""
    code = await asyncio.to_thread(main, list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_operator_lists_and_resolves_a_parked_conflict_over_grpc_and_the_cli(
    make_jira_sim: Callable[..., JiraSim],
    clock: ManualClock,
    rigs: list[Rig],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = make_jira_sim(clock=clock)
    rig, engine = await open_pair(tmp_path, rigs, sim, clock, "manual")
    await edit_priority_on_both_sides(rig, engine, sim)
    server = ControlServer("127.0.0.1:0", ControlDeps(rig.store, HealthState(), Auditor(rig.store), ["jira"], ["jira"]))
    await server.start()
    address = f"127.0.0.1:{server.port}"
    try:
        code, out, _ = await cli(capsys, "conflicts", "--control", address, "--json")
        assert code == 0
        [listed] = json.loads(out)["conflicts"]
        assert (listed["field"], listed["chain_value"], listed["desk_value"], listed["state"]) == (
            "priority",
            "urgent",
            "low",
            "open",
        )
        code, out, _ = await cli(capsys, "conflicts", "--control", address)
        assert code == 0 and "priority" in out and "TICKET_ID" in out

        async with grpc.aio.insecure_channel(address) as channel:
            control = control_pb2_grpc.ControlStub(channel)
            for request, status in (
                (control_pb2.ResolveConflictRequest(id=0, winner="desk"), grpc.StatusCode.INVALID_ARGUMENT),
                (
                    control_pb2.ResolveConflictRequest(id=int(listed["id"]), winner="both"),
                    grpc.StatusCode.INVALID_ARGUMENT,
                ),
                (control_pb2.ResolveConflictRequest(id=999, winner="desk"), grpc.StatusCode.NOT_FOUND),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await control.ResolveConflict(request)
                assert refused.value.code() == status

        code, out, _ = await cli(capsys, "resolve", str(listed["id"]), "--keep", "desk", "--control", address)
        assert code == 0 and "desk kept" in out
        code, _, err = await cli(capsys, "resolve", str(listed["id"]), "--keep", "desk", "--control", address)
        assert code == 1 and "FAILED_PRECONDITION" in err  # decided already
        clock.advance(time.time())  # the server stamps the re-read with the wall clock; the engine runs on this one
        await run(engine)
        assert [(n, m.priority) for n, m in await msgs(rig)] == [  # type: ignore[attr-defined]
            ("MsgUpdateSupportRequest", "low")
        ]
        [entry] = await rig.audit("conflict_resolved")
        assert entry["status"] == "desk" and entry["details"]["rule"] == "manual"
    finally:
        await server.stop(0)
    code, _, err = await cli(capsys, "conflicts", "--control", f"127.0.0.1:{free_port()}")
    assert code == 3 and "UNAVAILABLE" in err
