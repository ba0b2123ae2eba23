"""The CLI as the control API's first client: each command against a real ControlServer over a real Store on
loopback, its table, its --json and its exit codes (0 ok, 1 refused, 2 usage, 3 unreachable).

Reconcile needs a node and desks behind the server, so its command is checked against a small servicer
defined here (a stand-in for the server, for the client's paging, output and error mapping only); the
same servicer checks that the bearer token of --token-file reaches the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from virtengine.servicedesk.v1 import control_pb2, control_pb2_grpc

from sidecar.cli import main
from sidecar.control.auth import ControlSecurity
from sidecar.control.server import ControlServer
from sidecar.observe.activity import ActivityFeed
from sidecar.secrets import Secret
from sidecar.store.db import Store
from sidecar.store.intents import dead_letter_txn, queue_intent_txn
from sidecar.store.jobs import dead_job_txn, queue_update_job_txn
from tests.sidecar.control.kit import (
    TICKET,
    UNKNOWN,
    cli,
    desk_deps,
    free_port,
    loopback,
    mirror_ticket,
    opened_store,
    park_priority_conflict,
    running_server,
)

REPO = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token"


@dataclass
class Sidecar:
    store: Store
    feed: ActivityFeed
    address: str
    ids: dict[str, int]


def seed(conn: sqlite3.Connection) -> dict[str, int]:
    """One mirrored ticket linked to Jira, a pending and a dead job, a queued and a dead intent, an open conflict."""
    mirror_ticket(conn)
    now = time.time()
    for n in range(3):
        queue_update_job_txn(conn, f"seed:{n}", "jira", TICKET, "seed", now)
    jobs = [int(r[0]) for r in conn.execute("SELECT id FROM jobs ORDER BY id")]
    dead_job_txn(conn, jobs[0], "desk said 500\nretry later", now)
    intents = [queue_intent_txn(conn, f"intent:{n}", "MsgUpdateSupportRequest", TICKET, b"\x01\x02") for n in range(2)]
    dead_letter_txn(conn, [intents[0]], 5, "refused by the chain", [])
    conflict = park_priority_conflict(conn, TICKET, now)
    return {"dead_job": jobs[0], "pending_job": jobs[1], "dead_intent": intents[0], "conflict": conflict}


@pytest.fixture
async def sidecar(tmp_path: Path) -> AsyncIterator[Sidecar]:
    async with opened_store(tmp_path / "sidecar.db") as store:
        ids = await store.write("seed", seed)
        feed = ActivityFeed()
        async with running_server(desk_deps(store, activity=feed)) as server:
            try:
                yield Sidecar(store, feed, loopback(server), ids)
            finally:
                feed.close()


async def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """argparse refuses the arguments: exit 2 before any call."""
    with pytest.raises(SystemExit) as exited:
        await asyncio.to_thread(main, list(argv))
    assert exited.value.code == 2
    return capsys.readouterr().err


def header(out: str) -> list[str]:
    return out.splitlines()[0].split()


async def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_status_shows_a_table_and_json(sidecar: Sidecar, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await cli(capsys, "status", "--control", sidecar.address, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["open_conflicts"] == 1 and isinstance(doc["cursor_height"], int)
    assert doc["pauses"] == [] and [d["name"] for d in doc["desks"]] == ["jira"]
    code, out, _ = await cli(capsys, "status", "--control", sidecar.address)
    assert code == 0
    block, desks = out.split("\n\n")[:2]  # key/value lines, then the desks table
    lines = dict(line.split(None, 1) for line in block.splitlines())
    assert lines["health"] == ("healthy" if doc["healthy"] else "UNHEALTHY")
    assert lines["events"] == f"{doc['pending_events']} pending, {doc['failed_events']} failed"
    assert lines["conflicts"] == "1 open" and lines["signer"] == "off"
    assert desks.splitlines()[1].split()[:2] == ["NAME", "STATUS"] and desks.splitlines()[2].startswith("jira ")


async def test_ticket_shows_the_mirror_refs_jobs_and_conflicts(
    sidecar: Sidecar, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = await cli(capsys, "ticket", TICKET, "--control", sidecar.address)
    assert code == 0
    assert out.splitlines()[0].split() == ["ticket", TICKET]
    refs = out.split("refs:\n")[1].splitlines()
    assert refs[0].split()[:2] == ["DESK", "EXTERNAL_ID"] and refs[1].split()[:2] == ["jira", "10001"]
    assert "conflicts:" in out and "priority" in out.split("conflicts:")[1]
    assert "  - " in out and "job 1 jira: desk said 500 retry later" in out.split("last errors:")[1]  # one line each
    code, out, _ = await cli(capsys, "ticket", TICKET, "--control", sidecar.address, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["ticket"]["priority"] == "high" and doc["content"] is None
    assert {j["id"] for j in doc["jobs"]} >= {sidecar.ids["dead_job"], sidecar.ids["pending_job"]}
    assert [r["external_id"] for r in doc["refs"]] == ["10001"]
    code, _, err = await cli(capsys, "ticket", UNKNOWN, "--control", sidecar.address)
    assert code == 1 and "NOT_FOUND" in err
    code, _, err = await cli(capsys, "ticket", "not-a-ticket", "--control", sidecar.address)
    assert code == 2 and "INVALID_ARGUMENT" in err and "ticket_id" in err
    code, _, err = await cli(capsys, "ticket", TICKET, "--content", "--control", sidecar.address)
    assert code == 1 and "PERMISSION_DENIED" in err and "grpc.allow_content" in err


async def test_sync_queues_once_and_names_each_refusal(sidecar: Sidecar, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await cli(capsys, "sync", TICKET, "--control", sidecar.address, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["rereads_queued"] == 0
    waiting = {j["id"] for j in doc["jobs"]}
    assert sidecar.ids["pending_job"] in waiting  # the seeded update jobs of the ticket are still waiting
    code, out, _ = await cli(capsys, "sync", TICKET, "--direction=inbound", "--control", sidecar.address)
    assert code == 0 and "1 desk re-read(s)" in out
    code, out, _ = await cli(capsys, "sync", TICKET, "--direction=inbound", "--control", sidecar.address)
    assert code == 0 and "nothing new queued" in out and "already waiting" in out
    code, _, err = await cli(capsys, "sync", "nonsense", "--control", sidecar.address)
    assert code == 2 and "INVALID_ARGUMENT" in err
    code, _, err = await cli(capsys, "sync", UNKNOWN, "--control", sidecar.address)
    assert code == 1 and "NOT_FOUND" in err
    code, _, err = await cli(capsys, "sync", TICKET, "--desk", "waldur", "--control", sidecar.address)
    assert code == 1 and "FAILED_PRECONDITION" in err
    assert "invalid choice" in await usage_error(capsys, "sync", TICKET, "--direction=sideways")


async def test_jobs_lists_filters_pages_and_retry_redrives(
    sidecar: Sidecar, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = await cli(capsys, "jobs", "--control", sidecar.address)
    assert code == 0 and header(out) == [
        "ID",
        "STATE",
        "KIND",
        "DESK",
        "TICKET_ID",
        "ATTEMPTS",
        "NEXT_RUN_AT",
        "LAST_ERROR",
    ]
    assert len(out.splitlines()) == 4 and "desk said 500 retry later" in out  # a newline never breaks a row
    code, out, _ = await cli(capsys, "jobs", "--state", "dead", "--control", sidecar.address, "--json")
    assert code == 0 and [j["id"] for j in json.loads(out)["jobs"]] == [sidecar.ids["dead_job"]]
    code, out, err = await cli(capsys, "jobs", "--limit", "1", "--control", sidecar.address, "--json")
    first = json.loads(out)
    assert len(first["jobs"]) == 1 and first["next_page_token"]
    code, out, _ = await cli(capsys, "jobs", "--limit", "1", "--all", "--control", sidecar.address, "--json")
    every = json.loads(out)
    assert code == 0 and len(every["jobs"]) == 3 and every["next_page_token"] == ""
    assert len({j["id"] for j in every["jobs"]}) == 3
    code, out, _ = await cli(capsys, "jobs", "--limit", "1", "--control", sidecar.address)
    assert "add --all" in out

    code, out, _ = await cli(capsys, "retry", str(sidecar.ids["dead_job"]), "--control", sidecar.address)
    assert code == 0 and out.strip() == "re-drove 1 dead job(s)"
    code, _, err = await cli(capsys, "retry", str(sidecar.ids["dead_job"]), "--control", sidecar.address)
    assert code == 1 and "FAILED_PRECONDITION" in err
    code, out, _ = await cli(capsys, "retry", "--all-dead", "--desk", "jira", "--control", sidecar.address, "--json")
    assert code == 0 and json.loads(out) == {"redriven": 0}
    assert "one of the arguments" in await usage_error(capsys, "retry", "--control", sidecar.address)


async def test_intents_and_redrive_intent(sidecar: Sidecar, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await cli(capsys, "intents", "--control", sidecar.address)
    assert code == 0 and header(out)[:3] == ["ID", "STATE", "MSG_TYPE"] and "refused by the chain" in out
    code, out, _ = await cli(capsys, "intents", "--state", "dead", "--all", "--control", sidecar.address, "--json")
    assert code == 0 and [i["id"] for i in json.loads(out)["intents"]] == [sidecar.ids["dead_intent"]]
    code, out, _ = await cli(capsys, "redrive-intent", str(sidecar.ids["dead_intent"]), "--control", sidecar.address)
    assert code == 0 and out.strip() == "re-drove 1 dead intent(s)"
    code, _, err = await cli(capsys, "redrive-intent", "0", "--control", sidecar.address)
    assert code == 2 and "INVALID_ARGUMENT" in err  # the sidecar calls id 0 without --all-dead invalid
    code, out, _ = await cli(capsys, "redrive-intent", "--all-dead", "--control", sidecar.address, "--json")
    assert code == 0 and json.loads(out) == {"redriven": 0}


async def test_conflicts_and_resolve(sidecar: Sidecar, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await cli(capsys, "conflicts", "--control", sidecar.address)
    assert code == 0 and header(out)[:4] == ["ID", "TICKET_ID", "DESK", "FIELD"] and "urgent" in out
    code, out, _ = await cli(capsys, "conflicts", "--control", sidecar.address, "--json")
    [listed] = json.loads(out)["conflicts"]
    assert (listed["id"], listed["state"]) == (sidecar.ids["conflict"], "open")
    code, out, _ = await cli(capsys, "resolve", str(listed["id"]), "--keep", "chain", "--control", sidecar.address)
    assert code == 0 and "chain kept (priority of" in out
    code, _, err = await cli(capsys, "resolve", str(listed["id"]), "--keep", "chain", "--control", sidecar.address)
    assert code == 1 and "FAILED_PRECONDITION" in err
    code, out, _ = await cli(capsys, "conflicts", "--control", sidecar.address)
    assert code == 0 and out.strip() == "no conflicts"
    code, out, _ = await cli(capsys, "conflicts", "--all", "--control", sidecar.address, "--json")
    assert [c["state"] for c in json.loads(out)["conflicts"]] == ["resolved"]


async def test_pause_and_resume(sidecar: Sidecar, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ("pause", "--direction", "outbound", "--reason", "desk maintenance", "--control", sidecar.address)
    code, out, _ = await cli(capsys, *argv)
    assert code == 0 and header(out.split("paused:\n")[1]) == ["DIRECTION", "DESK", "SINCE", "BY", "REASON"]
    assert "(every desk)" in out and "desk maintenance" in out
    code, out, _ = await cli(capsys, "pause", "--desk", "jira", "--control", sidecar.address, "--json")
    assert code == 0 and {(p["direction"], p["desk"]) for p in json.loads(out)["pauses"]} == {
        ("outbound", ""),
        ("outbound", "jira"),
        ("inbound", "jira"),
    }
    code, out, _ = await cli(capsys, "status", "--control", sidecar.address, "--json")
    assert len(json.loads(out)["pauses"]) == 3
    code, _, err = await cli(capsys, "pause", "--desk", "waldur", "--control", sidecar.address)
    assert code == 1 and "FAILED_PRECONDITION" in err  # Waldur is not configured
    code, out, _ = await cli(capsys, "resume", "--control", sidecar.address)
    assert code == 0 and out.splitlines() == ["resumed 3 pause(s)", "paused: none"]


async def test_reconcile_and_resync_sequence_say_what_this_sidecar_lacks(
    sidecar: Sidecar, capsys: pytest.CaptureFixture[str]
) -> None:
    """This server has no node RPC and no signer: the refusal is exit 1 with the sidecar's reason."""
    code, out, err = await cli(capsys, "reconcile", "--dry-run", "--control", sidecar.address)
    assert code == 1 and out == "" and "Reconcile: FAILED_PRECONDITION" in err
    code, out, err = await cli(capsys, "resync-sequence", "--control", sidecar.address, "--json")
    assert code == 1 and out == "" and "ResyncSequence: FAILED_PRECONDITION: no signer" in err


async def test_watch_prints_each_event_until_the_stream_ends(
    sidecar: Sidecar, capsys: pytest.CaptureFixture[str]
) -> None:
    watching = asyncio.create_task(cli(capsys, "watch", "--kind", "job", "--control", sidecar.address))
    await wait_for(lambda: sidecar.feed.subscribers == 1, "the watch to subscribe")
    sidecar.feed.publish("intent", "included", ticket_id=TICKET, id=3)  # another kind: filtered out
    sidecar.feed.publish("job", "done", ticket_id=TICKET, desk="jira", direction="outbound", id=7)
    sidecar.feed.close()  # the stream ends once the queue is read (as at the sidecar's shutdown)
    code, out, _ = await asyncio.wait_for(watching, 20)
    [line] = out.splitlines()
    assert code == 0 and line.split()[1:] == [
        "#2",
        "job",
        "done",
        f"ticket_id={TICKET}",
        "desk=jira",
        "direction=outbound",
        "id=7",
    ]


async def test_watch_json_lines_until_sigint_exits_zero(sidecar: Sidecar, capsys: pytest.CaptureFixture[str]) -> None:
    """A real Ctrl-C: the command runs as its own process; a pause made through the CLI is what it sees."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sidecar",
        "watch",
        "--json",
        "--kind",
        "pause",
        "--control",
        sidecar.address,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_for(lambda: sidecar.feed.subscribers == 1, "the watch to subscribe", timeout=30)
        code, _, _ = await cli(capsys, "pause", "--direction", "inbound", "--control", sidecar.address)
        assert code == 0
        assert proc.stdout is not None
        event = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
        assert (event["kind"], event["action"], event["direction"]) == ("pause", "paused", "inbound")
        assert isinstance(event["seq"], int)
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_unreachable_and_undialable_addresses_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = await cli(capsys, "status", "--control", f"127.0.0.1:{free_port()}")
    assert code == 3 and "UNAVAILABLE" in err and "is the sidecar running at 127.0.0.1:" in err
    code, _, err = await cli(capsys, "jobs", "--control", "no-port-here")
    assert code == 3 and "--control 'no-port-here'" in err
    code, _, err = await cli(capsys, "watch", "--control", f"127.0.0.1:{free_port()}")
    assert code == 3 and "UNAVAILABLE" in err


async def test_the_default_address_is_grpc_listen_of_the_config(
    sidecar: Sidecar, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"servicedesk:\n  grpc:\n    listen: {sidecar.address}\n")
    code, out, _ = await cli(capsys, "jobs", "--state", "dead", "--config", str(config), "--json")
    assert code == 0 and [j["id"] for j in json.loads(out)["jobs"]] == [sidecar.ids["dead_job"]]


def test_make_sync_runs_the_manual_sync_with_the_config(sidecar_in_thread: tuple[str, Path], tmp_path: Path) -> None:
    address, db = sidecar_in_thread
    config = tmp_path / "config.yaml"
    config.write_text(f"servicedesk:\n  grpc:\n    listen: {address}\n")
    make = ["make", "--no-print-directory", "-o", ".venv/.installed", "sync", f"CONFIG={config}"]
    done = subprocess.run([*make, f"TICKET={TICKET}"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"queued for {TICKET}: 1 outbound job(s)" in done.stdout
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT kind, desk, state FROM jobs").fetchall() == [("update", "jira", "pending")]
    finally:
        conn.close()
    done = subprocess.run([*make, f"TICKET={TICKET}", "DIRECTION=inbound"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0 and "1 desk re-read(s)" in done.stdout
    done = subprocess.run(make, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "usage: make sync TICKET=" in done.stderr


@pytest.fixture
def sidecar_in_thread(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real ControlServer on its own loop in a thread, for tests that run the CLI as a process and wait."""
    db = tmp_path / "make.db"
    ready: asyncio.Future[str] | None = None
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        async with opened_store(db, mirror_ticket) as store:
            async with running_server(desk_deps(store)) as server:
                assert ready is not None
                ready.set_result(loopback(server))
                await stop.wait()

    def run() -> None:
        nonlocal ready
        asyncio.set_event_loop(loop)
        ready = loop.create_future()
        loop.run_until_complete(serve())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while ready is None or not ready.done():
        assert time.monotonic() < deadline, "the control server did not start"
        time.sleep(0.02)
    try:
        yield ready.result(), db
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(20)
        loop.close()


class StandIn(control_pb2_grpc.ControlServicer):
    """Answers Reconcile in two pages and ResyncSequence, and checks the bearer token on every call."""

    def __init__(self) -> None:
        self.calls = 0  # every call that reached this server, authorized or not
        self.requests: list[control_pb2.ReconcileRequest] = []

    async def _authorize(self, context: grpc.aio.ServicerContext) -> None:
        self.calls += 1
        if ("authorization", f"Bearer {TOKEN}") not in tuple(context.invocation_metadata() or ()):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a valid bearer token is required")

    async def Reconcile(
        self, request: control_pb2.ReconcileRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.ReconcileResponse:
        await self._authorize(context)
        self.requests.append(request)
        if request.from_height > request.to_height:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "to_height: must not be below from_height")
        action = "" if request.dry_run else "outbound_job"
        diff = control_pb2.Difference(
            kind="field", ticket_id=TICKET, desk="jira", field="priority", chain_value="urgent", action=action
        )
        if not request.page_token:
            return control_pb2.ReconcileResponse(differences=[diff], checked=5, queued=1, next_page_token="p2")
        missing = control_pb2.Difference(kind="missing_event", height=42, event_type="support_request_updated")
        return control_pb2.ReconcileResponse(differences=[missing], checked=3, queued=0)

    async def ResyncSequence(
        self, request: control_pb2.ResyncSequenceRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.ResyncSequenceResponse:
        await self._authorize(context)
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "this token may only read")
        raise AssertionError


@pytest.fixture
async def stand_in() -> AsyncIterator[tuple[StandIn, str]]:
    servicer = StandIn()
    server = grpc.aio.server()
    control_pb2_grpc.add_ControlServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


def token_file(tmp_path: Path, mode: int) -> str:
    path = tmp_path / f"token-{mode:o}"
    path.write_text(TOKEN + "\n")
    os.chmod(path, mode)
    return str(path)


async def test_reconcile_follows_every_page_and_sends_the_token(
    stand_in: tuple[StandIn, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    servicer, address = stand_in
    token = token_file(tmp_path, 0o600)
    code, out, _ = await cli(capsys, "reconcile", "--ticket", TICKET, "--control", address, "--token-file", token)
    assert code == 0 and header(out)[:3] == ["KIND", "TICKET_ID", "DESK"]
    assert out.splitlines()[-1] == "checked 8, 2 difference(s), queued 1"
    assert [r.page_token for r in servicer.requests] == ["", "p2"]
    argv = ("reconcile", "--from", "40", "--to", "50", "--dry-run", "--json", "--control", address)
    code, out, _ = await cli(capsys, *argv, "--token-file", token)
    doc = json.loads(out)
    assert code == 0 and (doc["checked"], doc["next_page_token"]) == (8, "")
    assert [d["kind"] for d in doc["differences"]] == ["field", "missing_event"] and doc["differences"][0][
        "action"
    ] == ""
    code, _, err = await cli(
        capsys, "reconcile", "--from", "50", "--to", "40", "--control", address, "--token-file", token
    )
    assert code == 2 and "to_height" in err


async def test_token_refusals_exit_1_and_an_open_token_file_exits_2(
    stand_in: tuple[StandIn, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    servicer, address = stand_in
    code, _, err = await cli(capsys, "reconcile", "--control", address)
    assert code == 1 and "UNAUTHENTICATED" in err and "--token-file" in err
    code, _, err = await cli(
        capsys, "resync-sequence", "--control", address, "--token-file", token_file(tmp_path, 0o600)
    )
    assert code == 1 and "PERMISSION_DENIED" in err and "does not allow this to this caller" in err
    calls = servicer.calls
    code, _, err = await cli(capsys, "reconcile", "--control", address, "--token-file", token_file(tmp_path, 0o644))
    assert code == 2 and "chmod 600" in err and TOKEN not in err
    assert servicer.calls == calls  # refused before any call
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    code, _, err = await cli(capsys, "reconcile", "--control", address, "--token-file", str(empty))
    assert code == 2 and "is empty" in err
    code, _, err = await cli(capsys, "status", "--control", address, "--tls-cert", str(empty))
    assert code == 2 and "tls_ca" in err


@dataclass(frozen=True)
class Pki:
    ca: Path
    server: tuple[Path, Path]
    client: tuple[Path, Path]


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=30)


def issue(folder: Path, name: str, ca: tuple[Path, Path] | None, extensions: str) -> tuple[Path, Path]:
    """A P-256 certificate and its key (0600): self-signed as a CA when `ca` is None."""
    cert, key, ext = folder / f"{name}.pem", folder / f"{name}.key", folder / f"{name}.ext"
    ext.write_text(extensions + "\n")
    new_key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key)
    if ca is None:
        openssl("req", "-x509", *new_key, "-out", cert, "-days", "2", "-subj", f"/CN={name}", "-extensions", "v3_ca")
    else:
        csr = folder / f"{name}.csr"
        openssl("req", *new_key, "-out", csr, "-subj", f"/CN={name}")
        signing = ("-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial", "-days", "2", "-extfile", ext)
        openssl("x509", "-req", "-in", csr, "-out", cert, *signing)
    key.chmod(0o600)
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca = issue(folder, "test-ca", None, "")
    server = issue(folder, "sidecar", ca, "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth")
    client = issue(folder, "operator-alice", ca, "extendedKeyUsage=clientAuth")
    return Pki(ca[0], server, client)


@contextlib.asynccontextmanager
async def secured(tmp_path: Path, listen: str, security: ControlSecurity) -> AsyncIterator[ControlServer]:
    async with opened_store(tmp_path / "secured.db") as store:
        async with running_server(desk_deps(store), listen, security) as server:
            yield server


async def test_tls_with_tokens_from_token_files(pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A real server with TLS and a full and a read-only token: the CLI dials with --tls-ca and --token-file."""
    security = ControlSecurity(
        tls_cert=str(pki.server[0]),
        tls_key=str(pki.server[1]),
        token=Secret(TOKEN, "test"),
        read_token=Secret("read-only-token", "test"),
    )
    reader = tmp_path / "read-token"
    reader.write_text("read-only-token\n")
    reader.chmod(0o600)
    async with secured(tmp_path, "127.0.0.1:0", security) as server:
        dial = ("--control", f"127.0.0.1:{server.port}", "--tls-ca", str(pki.ca))
        code, out, _ = await cli(capsys, "status", *dial, "--token-file", str(reader), "--json")
        assert code == 0 and json.loads(out)["version"]
        code, _, err = await cli(capsys, "pause", *dial, "--token-file", str(reader))
        assert code == 1 and "PERMISSION_DENIED" in err and "read-only-token" not in err
        code, out, _ = await cli(capsys, "pause", *dial, "--token-file", token_file(tmp_path, 0o600))
        assert code == 0 and "(every desk)" in out
        code, _, err = await cli(capsys, "status", *dial)
        assert code == 1 and "UNAUTHENTICATED" in err and "--token-file" in err
        code, _, err = await cli(capsys, "status", "--control", f"127.0.0.1:{server.port}")  # plaintext to TLS
        assert code == 3 and "UNAVAILABLE" in err


async def test_mtls_over_a_unix_socket(pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    security = ControlSecurity(tls_cert=str(pki.server[0]), tls_key=str(pki.server[1]), client_ca=str(pki.ca))
    socket_path = tmp_path / "control.sock"
    dial = ("--control", f"unix://{socket_path}", "--tls-ca", str(pki.ca), "--tls-server-name", "127.0.0.1")
    async with secured(tmp_path, f"unix://{socket_path}", security):
        client = ("--tls-cert", str(pki.client[0]), "--tls-key", str(pki.client[1]))
        code, out, _ = await cli(capsys, "jobs", *dial, *client, "--json")
        assert code == 0 and json.loads(out) == {"jobs": [], "next_page_token": ""}
        code, _, err = await cli(capsys, "jobs", *dial)  # no client certificate: the handshake fails
        assert code == 3 and "UNAVAILABLE" in err
        code, _, err = await cli(capsys, "jobs", *dial, "--tls-cert", str(pki.client[0]))
        assert code == 2 and "tls_key" in err


async def test_a_reader_that_leaves_early_ends_a_listing_quietly(tmp_path: Path) -> None:
    """`servicedesk-sidecar jobs --all | head -1`: more rows than a pipe holds, so the CLI is still writing
    when the reader goes; it stops with exit 0 and no traceback."""

    def many_jobs(conn: sqlite3.Connection) -> None:
        now = time.time()
        conn.executemany(
            "INSERT INTO jobs (dedupe_key, kind, desk, ticket_id, next_run_at, created_at, updated_at)"
            " VALUES (?, 'update', 'jira', ?, ?, ?, ?)",
            [(f"bulk-{n}", TICKET, now, now, now) for n in range(3000)],
        )

    async with opened_store(tmp_path / "many.db", many_jobs) as store, running_server(desk_deps(store)) as server:
        reader, writer = os.pipe()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sidecar",
            "jobs",
            "--all",
            "--control",
            loopback(server),
            cwd=REPO,
            stdout=writer,
            stderr=asyncio.subprocess.PIPE,
        )
        os.close(writer)
        with os.fdopen(reader, "rb") as out:
            first = await asyncio.wait_for(asyncio.to_thread(out.readline), 30)
        assert first.split()[:2] == [b"ID", b"STATE"]  # the table began; the reader leaves here
        assert proc.stderr is not None
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert b"Traceback" not in await proc.stderr.read()
