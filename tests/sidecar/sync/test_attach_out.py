"""Outbound attachments (#15): files listed by on-chain requests and responses reach each desk once.

A real store, a real local artifact directory (objects sealed by the devnet's own writer, devnet/artifacts.py,
as a customer's portal writes them), the Jira and Waldur simulators over loopback HTTP, and the desk worker
stepped on a manual clock (tests/sidecar/sync/rig.py). Bad files end withheld: one note at the desk, one
audit row, the job finished without a retry loop.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from nacl.public import PrivateKey

from devnet.artifacts import attach_file
from devnet.envelope import envelope_to_json, seal
from devnet.jira_sim import JiraSim
from devnet.sim_faults import ManualClock
from devnet.waldur_sim import WaldurSim
from sidecar.artifacts.local import LocalStore
from sidecar.chain.envelope import EnvelopeKey
from sidecar.desks.base import Desk
from sidecar.desks.jira import JiraDesk
from sidecar.desks.waldur import WaldurDesk
from sidecar.observe.audit import Auditor
from sidecar.observe.health import HealthState
from sidecar.observe.metrics import Metrics
from sidecar.store.jobs import ATTACHMENT_KIND
from sidecar.sync import attach_out
from sidecar.sync.attach_out import AttachmentSettings, AttachmentSync
from sidecar.sync.content import ContentOpener
from sidecar.sync.outbound import DeskWorker, WorkerSettings
from tests.sidecar.desks.support import JIRA_TOKEN, WALDUR_TOKEN, jira_config, waldur_config
from tests.sidecar.sync.rig import AGENT, IDLE, Rig, created

KiB, MiB = 1024, 1024 * 1024
ALLOWED = ("image/*", "application/pdf", "text/plain", "application/json", "application/zip")
SUPPORT = PrivateKey.generate()
CUSTOMER = PrivateKey.generate()
BOTH = [bytes(CUSTOMER.public_key), bytes(SUPPORT.public_key)]


def png(size: int) -> bytes:
    """A real PNG (signature, IHDR, one IDAT of stored noise, IEND) of exactly `size` bytes or a little more."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    head = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0))
    tail = chunk(b"IEND", b"")
    noise = os.urandom(max(0, size - len(head) - len(tail) - 12))
    return head + chunk(b"IDAT", noise) + tail


PDF = b"%PDF-1.4\n" + b"0" * 4000 + b"\n%%EOF\n"


@dataclass
class World:
    rig: Rig
    sim: JiraSim | WaldurSim
    artifacts: Path
    spool: Path
    sync: AttachmentSync

    async def request(self, n: int, *files: dict[str, Any], raw: Any = None) -> None:
        """A ticket whose request lists `files` (or `raw` as its `attachments`)."""
        plain: dict[str, Any] = {"subject": f"ticket {n}", "description": "see attached"}
        plain["attachments"] = list(files) if raw is None else raw
        await self.rig.chain(replace(created(n), payload=_payload(plain)))

    async def respond(self, n: int, response_id: str, *files: dict[str, Any]) -> None:
        from sidecar.store.records import ResponseAdded

        plain = {"message": "and another file", "attachments": list(files)}
        event = ResponseAdded(
            event_id=f"response-{response_id}",
            event_type="support_response_added",
            height=0,
            position=3,
            sequence=4,
            ticket_id=f"ticket-{n:04d}",
            sender=AGENT,
            timestamp=0,
            payload={"response_id": response_id, "author": AGENT, "is_agent": True, **_payload(plain)},
            response_id=response_id,
            author=AGENT,
            is_agent=True,
        )
        await self.rig.chain(event)

    def file(self, data: bytes, name: str, content_type: str, recipients: list[bytes] | None = None) -> dict[str, Any]:
        return attach_file(self.artifacts, data, name, content_type, CUSTOMER, recipients or BOTH)

    async def desk_files(self, n: int) -> list[bytes]:
        """The bytes of every attachment of ticket n's desk issue, read from the simulator's own model."""
        external_id = await self._external_id(n)
        if isinstance(self.sim, JiraSim):
            issue = next(i for i in self.sim.issues.values() if i.id == external_id or i.key == external_id)
            return [a.content for a in issue.attachments]
        return [a.content for a in self.sim.attachments if a.issue.hex == external_id]

    async def desk_notes(self, n: int) -> list[str]:
        """Texts of the desk comments that say an attachment was withheld."""
        external_id = await self._external_id(n)
        if isinstance(self.sim, JiraSim):
            issue = next(i for i in self.sim.issues.values() if i.id == external_id or i.key == external_id)
            texts = [json.dumps(c.body) for c in issue.comments]
        else:
            texts = [c.description for c in self.sim.comments_of(external_id)]
        return [t for t in texts if "was withheld" in t]

    async def _external_id(self, n: int) -> str:
        (row,) = await self.rig.query("SELECT external_id FROM external_refs WHERE ticket_id = ?", f"ticket-{n:04d}")
        return str(row[0])

    async def rows(self) -> list[tuple[Any, ...]]:
        return await self.rig.query("SELECT state, reason, desk_attachment_id, attempts FROM attachments ORDER BY id")

    async def attachment_jobs(self) -> list[tuple[Any, ...]]:
        return await self.rig.query("SELECT state, attempts FROM jobs WHERE kind = ? ORDER BY id", ATTACHMENT_KIND)

    async def rerun_attachment_jobs(self) -> None:
        """A duplicated delivery of every attachment job (what a redrive or a replayed queue does)."""
        await self.rig.store.write(
            "requeue", lambda conn: conn.execute("UPDATE jobs SET state = 'pending' WHERE kind = ?", (ATTACHMENT_KIND,))
        )
        await self.rig.run_due()


def _payload(plain: dict[str, Any]) -> dict[str, Any]:
    return {"payload": {"envelope": envelope_to_json(seal(plain, CUSTOMER, BOTH))}}


MakeWorld = Callable[..., AsyncIterator[World]]


@pytest.fixture
async def make_world(
    make_jira_sim: Callable[..., JiraSim],
    make_waldur_sim: Callable[..., WaldurSim],
    clock: ManualClock,
    tmp_path: Path,
    rigs: list[Rig],
) -> Callable[..., Any]:
    async def make(kind: str, *, max_bytes: int = 10 * MiB) -> World:
        desk: Desk
        sim: JiraSim | WaldurSim
        if kind == "jira":
            sim = make_jira_sim(clock=clock, max_attachment_bytes=10 * MiB)
            desk = JiraDesk(jira_config(sim, index_lag=0.0), JIRA_TOKEN, metrics=Metrics(), allow_insecure_http=True)
        else:
            sim = make_waldur_sim(clock=clock)
            desk = WaldurDesk(waldur_config(sim), WALDUR_TOKEN, metrics=Metrics(), allow_insecure_http=True)
        root = tmp_path / kind
        rig = await Rig.open(root.with_suffix(".db"), desk, clock)
        rigs.append(rig)
        artifacts, spool = root / "artifacts", root / "spool"
        auditor = Auditor(rig.store, clock=clock)
        sync = AttachmentSync(
            rig.store,
            LocalStore(artifacts),
            EnvelopeKey(SUPPORT),
            auditor,
            AttachmentSettings(max_bytes=max_bytes, allowed_types=ALLOWED, spool_dir=spool),
            clock=clock,
        )
        rig.worker = DeskWorker(
            desk,
            rig.store,
            ContentOpener(rig.store, EnvelopeKey(SUPPORT)),
            auditor,
            Metrics(),
            HealthState(),
            rig.retry,
            WorkerSettings(concurrency=4, idle_wait=IDLE, keep_bases=False),
            clock=clock,
            attachments=sync,
        )
        return World(rig, sim, artifacts, spool, sync)

    return make


@pytest.mark.parametrize("kind", ["jira", "waldur"])
async def test_a_png_reaches_the_desk_once_with_identical_bytes(make_world: Any, kind: str) -> None:
    world: World = await make_world(kind)
    image = png(1 * MiB)
    await world.request(1, world.file(image, "screen shot.png", "image/png"))
    await world.rig.run_due()
    assert await world.desk_files(1) == [image]
    ((state, reason, desk_id, attempts),) = await world.rows()
    assert (state, reason, attempts) == ("done", None, 1) and desk_id
    assert await world.attachment_jobs() == [("done", 0)]
    (synced,) = await world.rig.audit("attachment_synced")
    assert synced["details"]["sha256"] == hashlib.sha256(image).hexdigest()
    assert synced["details"]["desk_attachment_id"] == desk_id and synced["details"]["adopted"] is False
    assert "screen" not in json.dumps(await world.rig.query("SELECT * FROM audit"))  # names never audited
    assert "screen" not in json.dumps(await world.rig.query("SELECT * FROM jobs"))  # nor queued
    assert list(world.spool.glob("*")) == []  # nothing decrypted outlives the job


@pytest.mark.parametrize("kind", ["jira", "waldur"])
async def test_duplicated_events_and_jobs_upload_once(make_world: Any, kind: str) -> None:
    world: World = await make_world(kind)
    log, image = b"node log line\n" * 100, png(20 * KiB)
    first = world.file(log, "node.log", "text/plain")
    await world.request(1, first)
    await world.rig.run_due()
    await world.request(1, first)  # the same request event delivered again (a replay at another height)
    await world.rig.run_due()
    await world.rerun_attachment_jobs()  # and the attachment job itself run a second time
    await world.respond(1, "r1", first, world.file(image, "shot.png", "image/png"))  # a response listing it again
    await world.rig.run_due()
    assert sorted(await world.desk_files(1)) == sorted([log, image])
    assert [r[0] for r in await world.rows()] == ["done", "done"]
    assert len(await world.rig.audit("attachment_synced")) == 2


def _other_bytes(entry: dict[str, Any]) -> dict[str, Any]:
    return {**entry, "sha256": hashlib.sha256(b"x" * entry["size"]).hexdigest()}


# case -> (max bytes, file bytes, name, declared type, change to the entry, object damage, expected reason)
CASES: dict[str, tuple[int, bytes, str, str, Callable[[dict[str, Any]], Any], str, str]] = {
    "oversize by its listing": (64 * KiB, png(100 * KiB), "big.png", "image/png", lambda e: e, "", "too_large"),
    "oversize under a small listed size": (
        64 * KiB,
        png(100 * KiB),
        "big.png",
        "image/png",
        lambda e: {**e, "size": 1000},
        "",
        "too_large",
    ),
    "disallowed type": (
        MiB,
        b"MZ\x90\x00" + os.urandom(2000),
        "tool.exe",
        "application/x-msdownload",
        lambda e: e,
        "",
        "type_not_allowed",
    ),
    "unknown bytes": (
        MiB,
        b"\x00\x01" + os.urandom(2000),
        "data.bin",
        "image/png",
        lambda e: e,
        "",
        "type_not_allowed",
    ),
    "name and content disagree": (MiB, PDF, "photo.png", "image/png", lambda e: e, "", "type_mismatch"),
    "declared type and content disagree": (MiB, PDF, "report", "image/png", lambda e: e, "", "type_mismatch"),
    "hash of other bytes": (MiB, png(4 * KiB), "a.png", "image/png", _other_bytes, "", "hash_mismatch"),
    "size mismatch": (
        MiB,
        png(4 * KiB),
        "a.png",
        "image/png",
        lambda e: {**e, "size": e["size"] - 1},
        "",
        "size_mismatch",
    ),
    "missing object": (MiB, png(4 * KiB), "a.png", "image/png", lambda e: e, "delete", "missing"),
    "corrupted object": (MiB, png(4 * KiB), "a.png", "image/png", lambda e: e, "flip", "corrupt"),
    "not sealed for support": (
        MiB,
        png(4 * KiB),
        "a.png",
        "image/png",
        lambda e: e,
        "customer-only",
        "not_a_recipient",
    ),
    "malformed listing": (MiB, png(4 * KiB), "a.png", "image/png", lambda e: {**e, "sha256": "nope"}, "", "malformed"),
    "listing not an object": (MiB, png(4 * KiB), "a.png", "image/png", lambda e: ["file", 5], "", "malformed"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_bad_file_is_withheld_with_one_note_and_no_retry(make_world: Any, case: str) -> None:
    limit, data, name, declared, change, damage, reason = CASES[case]
    world: World = await make_world("jira", max_bytes=limit)
    recipients = [bytes(CUSTOMER.public_key)] if damage == "customer-only" else None
    entry = world.file(data, name, declared, recipients)
    path = world.artifacts / "sha256" / entry["ref"].removeprefix("sha256:")
    if damage == "delete":
        path.unlink()
    elif damage == "flip":
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        path.write_bytes(bytes(raw))
    await world.request(1, change(entry))
    await world.rig.run_due()
    assert await world.desk_files(1) == []
    ((state, got, desk_id, _),) = await world.rows()
    assert (state, got, desk_id) == ("withheld", reason, None)
    assert await world.attachment_jobs() == [("done", 0)]  # finished on the first run: no retry loop
    (audited,) = await world.rig.audit("attachment_withheld")
    assert audited["details"]["reason"] == reason and audited["status"] == "withheld"
    assert name not in json.dumps(audited)
    (note,) = await world.desk_notes(1)
    assert reason in note
    await world.rerun_attachment_jobs()  # run again: still one note, one audit row, nothing uploaded
    assert len(await world.desk_notes(1)) == 1 and len(await world.rig.audit("attachment_withheld")) == 1
    assert await world.desk_files(1) == [] and list(world.spool.glob("*")) == []


async def test_a_desk_refusing_the_size_is_withheld(make_world: Any) -> None:
    world: World = await make_world("jira")
    assert isinstance(world.sim, JiraSim)
    world.sim.max_attachment_bytes = 10 * KiB  # the site's own limit, below ours
    await world.request(1, world.file(png(20 * KiB), "a.png", "image/png"))
    await world.rig.run_due()
    assert [r[:2] for r in await world.rows()] == [("withheld", "too_large")]
    assert await world.desk_files(1) == [] and len(await world.desk_notes(1)) == 1


async def test_a_jira_outage_is_retried_and_the_file_lands_once(make_world: Any, clock: ManualClock) -> None:
    world: World = await make_world("jira")
    assert isinstance(world.sim, JiraSim)
    await world.request(1)
    await world.rig.run_due()
    world.sim.faults.outage("503", 120)  # Jira down: the response and its file wait
    image = png(50 * KiB)
    await world.respond(1, "r1", world.file(image, "a.png", "image/png"))
    await world.rig.run_due()
    assert await world.desk_files(1) == []
    for _ in range(40):
        if await world.attachment_jobs() == [("done", 0)]:
            break
        clock.advance(15)
        await world.rig.run_due()
    assert await world.attachment_jobs() == [("done", 0)]  # an outage spends no attempts
    assert await world.desk_files(1) == [image]


async def test_upload_errors_are_retried_and_land_once(make_world: Any, clock: ManualClock) -> None:
    world: World = await make_world("jira")
    assert isinstance(world.sim, JiraSim)
    world.sim.faults.inject("500", 2, method="POST", path_contains="/attachments")
    image = png(50 * KiB)
    await world.request(1, world.file(image, "a.png", "image/png"))
    await world.rig.run_due()
    for _ in range(20):
        if (await world.attachment_jobs())[0][0] == "done":
            break
        clock.advance(60)
        await world.rig.run_due()
    assert await world.attachment_jobs() == [("done", 2)]
    assert await world.desk_files(1) == [image]


class _Crash(BaseException):
    """Stands in for SIGKILL in-process: nothing catches it, so nothing after the seam runs."""


@pytest.mark.parametrize("kind", ["jira", "waldur"])
async def test_an_upload_not_recorded_is_adopted_not_repeated(make_world: Any, kind: str) -> None:
    world: World = await make_world(kind)
    image = png(30 * KiB)

    def crash() -> None:
        raise _Crash

    attach_out.install_upload_crash_hook(crash)
    try:
        await world.request(1, world.file(image, "shot 1.png", "image/png"))
        with pytest.raises(_Crash):
            await world.rig.run_due()
    finally:
        attach_out.install_upload_crash_hook(None)
    assert await world.desk_files(1) == [image]
    assert [r[0] for r in await world.rows()] == ["pending"]
    await world.rerun_attachment_jobs()  # the restart: running jobs go back to pending
    assert await world.desk_files(1) == [image]
    ((state, _, desk_id, _),) = await world.rows()
    (synced,) = await world.rig.audit("attachment_synced")
    assert (
        state == "done" and synced["details"]["adopted"] is True and synced["details"]["desk_attachment_id"] == desk_id
    )


async def test_an_agents_file_of_the_same_name_and_size_is_not_adopted(make_world: Any) -> None:
    world: World = await make_world("waldur")
    assert isinstance(world.sim, WaldurSim)
    await world.request(1)
    await world.rig.run_due()
    mine, theirs = png(8 * KiB), png(8 * KiB)
    assert len(mine) == len(theirs) and mine != theirs
    world.sim.agent_attach(await world._external_id(1), "shot.png", theirs)
    await world.respond(1, "r1", world.file(mine, "shot.png", "image/png"))
    await world.rig.run_due()
    assert sorted(await world.desk_files(1)) == sorted([theirs, mine])  # the hash told them apart


async def test_attachments_off_or_a_desk_without_them_queue_nothing(make_world: Any) -> None:
    world: World = await make_world("jira")
    assert world.rig.worker is not None
    world.rig.worker._attachments = None  # sync.sync_attachments: false (app.py passes no AttachmentSync)
    await world.request(1, world.file(png(4 * KiB), "a.png", "image/png"))
    await world.rig.run_due()
    assert await world.attachment_jobs() == [] and await world.desk_files(1) == []


async def test_an_upload_inbound_intake_recognised_as_an_echo_is_recorded_once(make_world: Any) -> None:
    from sidecar.store.attachments import adopt_echo_txn

    world: World = await make_world("jira")
    image = png(30 * KiB)

    def crash() -> None:
        raise _Crash

    attach_out.install_upload_crash_hook(crash)
    try:
        await world.request(1, world.file(image, "shot.png", "image/png"))
        with pytest.raises(_Crash):
            await world.rig.run_due()
    finally:
        attach_out.install_upload_crash_hook(None)
    assert isinstance(world.sim, JiraSim)
    (desk_id,) = [a.id for issue in world.sim.issues.values() for a in issue.attachments]
    ((row_id,),) = await world.rig.query("SELECT id FROM attachments")
    # Inbound intake saw the upload first and gave its desk id to the outbound row (sidecar/sync/attach_in.py).
    await world.rig.store.write("echo", adopt_echo_txn, 0, row_id, desk_id)
    await world.rerun_attachment_jobs()
    assert await world.desk_files(1) == [image]
    assert [r[:3] for r in await world.rows()] == [("done", None, desk_id)]
    (synced,) = await world.rig.audit("attachment_synced")
    assert synced["details"]["adopted"] is True
