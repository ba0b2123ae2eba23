"""Inbound attachments on a real store, a real local artifact store and the desk simulators over HTTP: a file an
agent attaches becomes one sealed MsgAddSupportResponse the customer opens, once, or is withheld with one note.

The outbound worker creates the desk issue first; the agent attaches through the simulator; a webhook hint (as
the receiver records it) makes the inbound engine re-read the issue and its intake take the file in. The queued
intents are decoded and opened with the customer's key from tests/vectors (the devnet test lands them).
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from nacl.public import PrivateKey
from virtengine.support.v1 import tx_pb2

from devnet.envelope import envelope_from_proto, open_envelope
from devnet.jira_sim import JiraSim
from devnet.sim_faults import ManualClock
from devnet.waldur_sim import WaldurSim
from sidecar.artifacts.local import LocalStore
from sidecar.artifacts.sealed import open_object
from sidecar.chain.envelope import EnvelopeKey
from sidecar.desks.base import Desk, ExternalTicket
from sidecar.desks.jira import JiraDesk
from sidecar.desks.waldur import WaldurDesk
from sidecar.observe.audit import Auditor
from sidecar.observe.metrics import Metrics
from sidecar.store.attachments import add_outbound_txn, mark_done_txn
from sidecar.store.records import RequestCreated
from sidecar.store.webhooks import Delivery, record_delivery_txn
from sidecar.sync.attach_in import AttachmentIntake, IntakeSettings
from sidecar.sync.inbound import InboundEngine, InboundSettings
from tests.sidecar.desks.support import JIRA_TOKEN, WALDUR_TOKEN, jira_config, waldur_config
from tests.sidecar.sync.rig import Rig, created, ticket_id
from tests.vectors import load

VECTORS = load("envelopes.json")
KEYS = VECTORS["keys"]
THREE = next(c for c in VECTORS["cases"] if c["name"] == "request, three recipients")
SUPPORT = EnvelopeKey.from_base64(KEYS["support"]["private_key"])
CUSTOMER_KEY = EnvelopeKey.from_base64(KEYS["customer"]["private_key"])
SIDECAR = "virtengine1sidecar0000000000000000000000000000"
MiB = 1024 * 1024
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(8)


def pdf(size: int) -> bytes:
    return PDF + os.urandom(size - len(PDF))


def created_with_recipients(n: int = 1, *, keys_known: bool = True) -> RequestCreated:
    """Ticket n as the chain creates it with the vectors' envelope: customer, support and auditor recipients
    (with `keys_known` False, the mirror holds no envelope: the recipients' public keys are unknown)."""
    envelope = THREE["payload"]["envelope"]
    return replace(
        created(n),
        payload={"payload": {"envelope": envelope}} if keys_known else {},
        recipients=tuple(envelope["recipient_key_ids"]),
    )


@dataclass
class Bench:
    rig: Rig
    desk: Any  # JiraDesk or WaldurDesk
    engine: InboundEngine
    artifacts: LocalStore
    issue: ExternalTicket
    clock: ManualClock

    async def hint(self, delivery: str) -> None:
        """A verified webhook delivery naming the issue, as the receiver records it."""
        event = "jira:issue_updated" if self.desk.name == "jira" else "attachment_created"
        row = Delivery(self.desk.name, delivery, event, self.issue.external_id, delivery, "accepted")
        await self.rig.store.write("delivery", record_delivery_txn, row, None, self.clock())

    async def run(self) -> None:
        for _ in range(30):
            if await self.engine.step() > 0:
                return
        raise AssertionError("the engine never became idle")

    async def responses(self) -> list[tuple[str, tx_pb2.MsgAddSupportResponse]]:
        rows = await self.rig.query(
            "SELECT dedupe_key, msg_bytes FROM tx_intents WHERE dedupe_key LIKE 'inbound:%:attachment:%' ORDER BY id"
        )
        found = []
        for key, data in rows:
            msg = tx_pb2.MsgAddSupportResponse()
            msg.ParseFromString(data)
            found.append((str(key), msg))
        return found

    async def rows(self) -> list[tuple[Any, ...]]:
        return await self.rig.query(
            "SELECT direction, state, reason, desk_attachment_id, attempts FROM attachments ORDER BY id"
        )

    async def notes(self, row_id: int) -> int:
        """Comments at the desk issue carrying the withheld marker of attachment row `row_id`."""
        view = await self.desk.read_issue(self.issue)
        return sum(1 for c in view.comments if c.marker == f"withheld:inbound:{row_id}")


async def bench(
    tmp_path: Path, rigs: list[Rig], desk: Desk, clock: ManualClock, max_bytes: int = 2 * MiB, keys_known: bool = True
) -> Bench:
    rig = await Rig.open(tmp_path / "sidecar.db", desk, clock)
    rigs.append(rig)
    artifacts = LocalStore(tmp_path / "artifacts")
    intake = AttachmentIntake(
        [desk],  # type: ignore[list-item]  # JiraDesk / WaldurDesk have attachments
        rig.store,
        artifacts,
        Auditor(rig.store, clock=clock),
        rig.retry,
        IntakeSettings(max_bytes=max_bytes),
        sender=SIDECAR,
        key=SUPPORT,
        spool_dir=tmp_path / "data",
        clock=clock,
    )
    engine = InboundEngine(
        [desk],  # type: ignore[list-item]  # JiraDesk / WaldurDesk read changes back
        rig.store,
        Auditor(rig.store, clock=clock),
        Metrics(),
        rig.retry,
        InboundSettings(idle_wait=999.0),
        sender=SIDECAR,
        key=SUPPORT,
        outbound_desks=[desk.name],
        clock=clock,
        attachments=intake,
    )
    await rig.chain(created_with_recipients(1, keys_known=keys_known))
    await rig.run_due()  # outbound creates the desk issue
    [(external_id, key, url)] = await rig.query("SELECT external_id, external_key, external_url FROM external_refs")
    issue = ExternalTicket(desk.name, str(external_id), str(key or external_id), str(url or ""))
    return Bench(rig, desk, engine, artifacts, issue, clock)


async def jira_bench(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path, **kw: Any
) -> tuple[JiraSim, Bench]:
    sim = make_jira_sim(clock=clock, max_attachment_bytes=20 * MiB)
    desk = JiraDesk(jira_config(sim), JIRA_TOKEN, metrics=Metrics(), allow_insecure_http=True)
    return sim, await bench(tmp_path, rigs, desk, clock, **kw)


async def waldur_bench(
    make_waldur_sim: Callable[..., WaldurSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path, **kw: Any
) -> tuple[WaldurSim, Bench]:
    sim = make_waldur_sim()
    desk = WaldurDesk(waldur_config(sim), WALDUR_TOKEN, metrics=Metrics(), allow_insecure_http=True)
    return sim, await bench(tmp_path, rigs, desk, clock, **kw)


async def opened(b: Bench, msg: tx_pb2.MsgAddSupportResponse) -> tuple[dict[str, Any], bytes]:
    """The response's plaintext and the stored file's bytes, both opened with the customer's key."""
    customer = PrivateKey(base64.b64decode(KEYS["customer"]["private_key"]))
    plain = open_envelope(envelope_from_proto(msg.payload.envelope), customer)
    [entry] = plain["attachments"]
    data = b"".join([piece async for piece in open_object(CUSTOMER_KEY, b.artifacts.open(entry["ref"]), 20 * MiB)])
    return plain, data


async def check_landed(b: Bench, content: bytes, name: str) -> None:
    [(key, msg)] = await b.responses()
    assert key.endswith(":attachment:" + str((await b.rows())[0][3]))
    assert msg.sender == SIDECAR and msg.ticket_id == ticket_id(1)
    plain, data = await opened(b, msg)
    [entry] = plain["attachments"]
    digest = hashlib.sha256(content).hexdigest()
    assert entry["sha256"] == digest and entry["size"] == len(content)
    assert entry["content_type"] == "application/pdf" and entry["file_name"] == name
    assert plain["message"].endswith(f"agent) attached {name}") or plain["message"].endswith(f"agent attached {name}")
    assert hashlib.sha256(data).hexdigest() == digest, "the stored object does not open to the agent's file"
    [(state, sha, ref)] = await b.rig.query("SELECT state, sha256, ref FROM attachments")
    assert (state, sha, ref) == ("done", digest, entry["ref"])
    synced = await b.rig.audit("attachment_synced")
    assert len(synced) == 1 and synced[0]["details"]["sha256"] == digest
    texts = [str(r[0]) for r in await b.rig.query("SELECT details_json FROM audit")]
    assert not any(name in t for t in texts), "a file name reached the audit"


async def test_an_agents_pdf_at_jira_becomes_one_response_the_customer_opens(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    sim, b = await jira_bench(make_jira_sim, clock, rigs, tmp_path)
    content = pdf(MiB)
    sim.agent_attach(b.issue.key, "report.pdf", content, "application/pdf")
    await b.hint("d-1")
    await b.hint("d-2")  # a duplicate hint for the same attachment
    await b.run()
    await b.hint("d-3")  # and a later one: the attachment is known by its desk id
    await b.run()
    await check_landed(b, content, "report.pdf")
    leftovers = [p for p in (tmp_path / "data").iterdir()] if (tmp_path / "data").exists() else []
    assert leftovers == [], "a spool file was left behind"


async def test_an_agents_pdf_at_waldur_becomes_one_response_the_customer_opens(
    make_waldur_sim: Callable[..., WaldurSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    sim, b = await waldur_bench(make_waldur_sim, clock, rigs, tmp_path)
    content = pdf(MiB)
    sim.agent_attach(b.issue.external_id, "report.pdf", content, "application/pdf")
    await b.hint("w-1")
    await b.hint("w-2")
    await b.run()
    await b.hint("w-3")
    await b.run()
    await check_landed(b, content, "report.pdf")


async def test_an_oversize_file_is_withheld_with_one_note_even_when_the_desk_understates_it(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    sim, b = await jira_bench(make_jira_sim, clock, rigs, tmp_path, max_bytes=256 * 1024)
    sim.agent_attach(b.issue.key, "big.pdf", pdf(300 * 1024), "application/pdf")
    liar = sim.agent_attach(b.issue.key, "small.pdf", pdf(300 * 1024), "application/pdf")
    sim.declared_sizes[liar] = 1000  # listed as 1000 bytes, served chunked without a Content-Length
    await b.hint("o-1")
    await b.run()
    await b.hint("o-2")
    await b.run()
    rows = await b.rows()
    assert [(r[1], r[2]) for r in rows] == [("withheld", "too_large"), ("withheld", "too_large")]
    assert await b.responses() == []
    assert [await b.notes(i) for i in (1, 2)] == [1, 1], "one note per withheld file"
    withheld = await b.rig.audit("attachment_withheld")
    assert [w["details"]["reason"] for w in withheld] == ["too_large", "too_large"]
    assert await b.artifacts.list_refs() == [], "a refused file was stored"


async def test_a_program_is_withheld(
    make_waldur_sim: Callable[..., WaldurSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    sim, b = await waldur_bench(make_waldur_sim, clock, rigs, tmp_path)
    sim.agent_attach(b.issue.external_id, "tool.exe", ELF + os.urandom(4096), "application/octet-stream")
    sim.agent_attach(b.issue.external_id, "notes.bin", ELF + os.urandom(4096), "application/octet-stream")
    await b.hint("t-1")
    await b.run()
    assert [(r[1], r[2]) for r in await b.rows()] == [("withheld", "type_not_allowed")] * 2
    assert await b.responses() == []
    assert [await b.notes(i) for i in (1, 2)] == [1, 1]


async def test_the_sidecars_own_uploads_are_never_taken_back(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    _, b = await jira_bench(make_jira_sim, clock, rigs, tmp_path)
    own = tmp_path / "own.pdf"
    own.write_bytes(pdf(10_000))
    await b.desk.upload_attachment(b.issue, "own.pdf", "application/pdf", own)  # by the sidecar's account
    await b.hint("e-1")
    await b.run()
    assert await b.rows() == [] and await b.responses() == []


async def test_waldur_echoes_are_known_by_desk_id_and_by_hash_after_a_crash(
    make_waldur_sim: Callable[..., WaldurSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    """Waldur names no author: the sidecar's upload is known by the outbound row's desk id, or, when the
    sidecar crashed between upload and record, by the outbound row's hash (which then takes the desk id)."""
    _, b = await waldur_bench(make_waldur_sim, clock, rigs, tmp_path)
    first, second = tmp_path / "a.pdf", tmp_path / "b.pdf"
    first.write_bytes(pdf(5000))
    second.write_bytes(pdf(6000))
    recorded = await b.desk.upload_attachment(b.issue, "a.pdf", "application/pdf", first)
    await b.desk.upload_attachment(b.issue, "b.pdf", "application/pdf", second)  # its record lost in a crash
    tid, now = ticket_id(1), clock()
    for path, desk_id in ((first, recorded.id), (second, None)):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        row, _ = await b.rig.store.write("outbound", add_outbound_txn, "waldur", tid, digest, 0, None, None, now)
        if desk_id is not None:
            await b.rig.store.write("done", mark_done_txn, row, desk_id, now)
    await b.hint("x-1")
    await b.run()
    await b.hint("x-2")
    await b.run()
    assert await b.responses() == []
    rows = await b.rig.query("SELECT direction, desk_attachment_id IS NOT NULL FROM attachments ORDER BY id")
    assert rows == [("outbound", 1), ("outbound", 1)], "the crashed upload's row did not take its desk id"


async def test_a_desk_503_during_download_is_retried_and_lands_once(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    sim, b = await jira_bench(make_jira_sim, clock, rigs, tmp_path)
    content = pdf(200_000)
    sim.agent_attach(b.issue.key, "report.pdf", content, "application/pdf")
    sim.faults.inject("503", path_contains="/attachment/content/")
    await b.hint("r-1")
    await b.run()
    assert [(r[1], r[2], r[4]) for r in await b.rows()] == [("pending", "desk_unavailable", 1)]
    assert await b.responses() == []
    await b.run()  # not due yet: backoff
    assert [r[4] for r in await b.rows()] == [1]
    clock.advance(60)
    await b.run()
    await check_landed(b, content, "report.pdf")


async def test_a_desk_that_never_serves_the_file_fails_it_after_the_retry_policy(
    make_jira_sim: Callable[..., JiraSim],
    clock: ManualClock,
    rigs: list[Rig],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim, b = await jira_bench(make_jira_sim, clock, rigs, tmp_path)
    sim.agent_attach(b.issue.key, "report.pdf", pdf(5000), "application/pdf")
    sim.faults.inject("503", 50, path_contains="/attachment/content/")
    await b.hint("f-1")
    for _ in range(b.rig.retry.max_retries + 3):
        await b.run()
        clock.advance(b.rig.retry.max_backoff + 1)
    assert [(r[1], r[2], r[4]) for r in await b.rows()] == [("failed", "desk_unavailable", b.rig.retry.max_retries)]
    failed = await b.rig.audit("attachment_failed")
    assert len(failed) == 1 and failed[0]["details"]["reason"] == "desk_unavailable"
    logged = [(r.getMessage(), getattr(r, "reason", None)) for r in caplog.records if "sync failed" in r.getMessage()]
    assert logged == [("attachment sync failed", "desk_unavailable")]  # once, for good (retries log their own line)
    assert await b.responses() == []


async def test_a_recipient_without_a_known_key_withholds_the_file_as_replies_do(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    sim, b = await jira_bench(make_jira_sim, clock, rigs, tmp_path, keys_known=False)
    sim.agent_attach(b.issue.key, "report.pdf", pdf(5000), "application/pdf")
    await b.hint("k-1")
    await b.run()
    assert [(r[1], r[2]) for r in await b.rows()] == [("withheld", "recipient_key_unknown")]
    assert await b.responses() == [] and await b.notes(1) == 1


async def test_a_file_on_an_internal_note_at_a_jsm_desk_stays_at_the_desk(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    """At a JSM desk (request type + service desk configured) a file the agent attached with an internal
    note is not visible to the customer, so it is neither recorded nor sent to the chain; a public one is."""
    sim = make_jira_sim(clock=clock, max_attachment_bytes=20 * MiB)
    sim.add_request_type("7", "25")
    config = jira_config(sim, service_desk_id="7", request_type_id="25")
    desk = JiraDesk(config, JIRA_TOKEN, metrics=Metrics(), allow_insecure_http=True)
    b = await bench(tmp_path, rigs, desk, clock)
    assert sim.issue(b.issue.key).request_type_id == "25"
    internal = sim.agent_attach_internal(b.issue.key, "internal.pdf", pdf(4096), "application/pdf")
    content = pdf(8192)
    public = sim.agent_attach(b.issue.key, "answer.pdf", content, "application/pdf")
    await b.hint("j-1")
    await b.run()
    await b.hint("j-2")
    await b.run()
    assert [r[3] for r in await b.rows()] == [public], "the internal file was recorded"
    await check_landed(b, content, "answer.pdf")
    assert internal not in {str(r[0]) for r in await b.rig.query("SELECT desk_attachment_id FROM attachments")}
