"""ListConflicts and ResolveConflict over a real grpc.aio server on loopback, and the CLI that calls them.

The conflict is parked by the real inbound engine (tests/sidecar/sync/test_inbound_engine.py's manual
case); the operator keeps the desk's value, and the engine's next re-read sends it to the chain.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from virtengine.servicedesk.v1 import control_pb2

from devnet.jira_sim import JiraSim
from devnet.sim_faults import ManualClock
from tests.sidecar.control.kit import cli, desk_deps, dial, free_port, loopback, running_server
from tests.sidecar.sync.rig import Rig
from tests.sidecar.sync.test_inbound_engine import edit_priority_on_both_sides, msgs, open_pair, run


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
    async with running_server(desk_deps(rig.store)) as server:
        address = loopback(server)
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

        async with dial(address) as control:
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
    code, _, err = await cli(capsys, "conflicts", "--control", f"127.0.0.1:{free_port()}")
    assert code == 3 and "UNAVAILABLE" in err
