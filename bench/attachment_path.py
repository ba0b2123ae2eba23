"""A 10 MiB attachment's path end to end, both directions, with this process's peak RSS growth, beside the
bare way of moving the same bytes.

Outbound is the engine itself: the file, sealed for 3 recipients into a LocalStore (as the customer's
portal does), is listed by an on-chain request in a real SQLite inbox; a DeskWorker with AttachmentSync
(sidecar/sync/attach_out.py) runs the request's create job, then, measured, its attachment job: the desk's
listing checked for an earlier upload, a first pass that decrypts with the support key and checks sha256
and size keeping nothing, a second into a spool file, JiraDesk.upload_attachment. Inbound composes the
steps of AttachmentIntake._copy (sidecar/sync/attach_in.py) from the phase-1 modules, since driving the
intake needs a ticket's whole inbound state: that attachment downloaded back through JiraDesk.download
under content.Counted, its type judged by its head and name, sealed for the recipients into a spool file,
stored with LocalStore.put_file. Baselines: a plain httpx multipart upload of the plaintext file and a plain
streamed download to a file, against the same simulator routes. A control reads the file whole into
memory: the meter must show one file's size there, or it measures something else.

The Jira simulator (its upload limit raised above the file) runs in its own process, so its in-memory copy
of the file is not ours, and every path runs in a fresh process of its own, warmed (a connection open, a
worker thread started) before it is measured: the peak is /proc/self/status VmHWM after resetting it to the
current RSS (writing "5" to /proc/self/clear_refs), or, where that is refused, getrusage's high-water mark,
which then also counts start-up. The issue's bound: a file is never held whole in memory more than once,
so the growth must stay under ~2x the file size.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
SIZE = int(os.environ.get("BENCH_ATTACHMENT_BYTES", str(10 * MiB)))
RECIPIENTS = 3
FILE_NAME = "screenshot.png"
CONTENT_TYPE = "image/png"
PNG_HEAD = b"\x89PNG\r\n\x1a\n"
ALLOWED = ("image/*", "application/pdf", "text/plain", "application/json", "application/zip")
# In this order: inbound downloads outbound's upload, bare_download the bare upload. held_whole is the control.
PATHS = ("outbound", "bare_upload", "inbound", "bare_download", "held_whole")
ROOT = Path(__file__).resolve().parent.parent
SUBMITTER = "virtengine1benchcustomer000000000000000000000"
BOUND = 2.0  # peak RSS growth, in file sizes, that "never held whole more than once" allows


@dataclass(frozen=True)
class Setup:
    """What every measured process is given (in a 0600 file: it holds the benchmark's throwaway keys)."""

    base_url: str
    issue_id: str
    issue_key: str
    email: str
    api_token: str
    work: str  # the temp directory: plaintext, store, spool
    size: int
    support_key: str  # hex of the support key's private key
    recipients: list[str]  # hex of every recipient's public key, the support key's first
    ref: str  # the sealed object of the plaintext
    sha256: str  # of the plaintext
    attachment_id: str = ""  # the outbound path's upload (inbound downloads it) and its issue
    out_issue_id: str = ""
    out_issue_key: str = ""
    bare_attachment_id: str = ""  # the bare upload's (the bare download reads it)


# measuring ------------------------------------------------------------------------------------------------
def _status(field: str) -> int:
    """A /proc/self/status figure in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak() -> str:
    """Make the high-water mark the current RSS if the kernel lets us ("clear_refs"), else say we could not
    ("ru_maxrss": the peak then includes whatever start-up reached)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        if _status("VmHWM") <= _status("VmRSS") + MiB:
            return "clear_refs"
    except OSError:
        pass
    return "ru_maxrss"


def peak(method: str) -> int:
    if method == "clear_refs":
        return _status("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


# the paths ------------------------------------------------------------------------------------------------
async def _file_chunks(path: Path, size: int = 65536) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, size):
            yield chunk


def _jira(setup: Setup) -> Any:
    from sidecar.config import load_config
    from sidecar.desks.jira import JiraDesk
    from sidecar.observe.metrics import Metrics

    config = load_config(
        environ={"VIRTENGINE_SERVICEDESK_JIRA_API_TOKEN": setup.api_token},
        flags={
            "jira.base_url": setup.base_url,
            "jira.username": setup.email,
            "sync.allow_insecure_http": "true",
            "webhook.require_signature": "false",
        },
    )
    return JiraDesk(config.settings.jira, setup.api_token, metrics=Metrics(), allow_insecure_http=True)


def _key(setup: Setup) -> Any:
    from nacl.public import PrivateKey

    from sidecar.chain.envelope import EnvelopeKey

    return EnvelopeKey(PrivateKey(bytes.fromhex(setup.support_key)))


@dataclass
class Outbound:
    """The outbound engine, driven as the sidecar drives it: a DeskWorker over a real SQLite store, with
    AttachmentSync (sidecar/sync/attach_out.py) wired in. `prepare` puts one on-chain request listing the
    file in the inbox and runs its create job (the desk issue, the attachment job queued); `run`, the part
    measured, steps the worker until the attachment job is finished: the listing checked for an earlier
    upload, a first pass that decrypts and verifies keeping nothing, a second into a spool file, the upload."""

    setup: Setup
    desk: Any
    spool: Path
    store: Any = None
    worker: Any = None

    async def prepare(self) -> None:
        from sidecar.artifacts.local import LocalStore
        from sidecar.chain.envelope import key_id
        from sidecar.config import load_config
        from sidecar.observe.audit import Auditor
        from sidecar.observe.health import HealthState
        from sidecar.observe.metrics import Metrics
        from sidecar.store.db import Store
        from sidecar.store.inbox import BlockBatch, commit_blocks_txn, init_cursor_txn
        from sidecar.store.jobs import dispatch_inbox_txn
        from sidecar.store.records import RequestCreated
        from sidecar.sync.attach_out import AttachmentSettings, AttachmentSync
        from sidecar.sync.content import ContentOpener
        from sidecar.sync.outbound import DeskWorker, WorkerSettings

        setup, key = self.setup, _key(self.setup)
        self.store = await Store.open(str(Path(setup.work) / "outbound.db"))
        recipients = [bytes.fromhex(r) for r in setup.recipients]
        listed = {"file_name": FILE_NAME, "content_type": CONTENT_TYPE, "size": setup.size}
        listed |= {"sha256": setup.sha256, "ref": setup.ref}
        plain = {"subject": "Attachment benchmark", "description": "see the file", "attachments": [listed]}
        tid, submitter, ts = f"{SUBMITTER}/support/1", SUBMITTER, 1764150000
        payload = {
            "event_type": "support_request_created",
            "event_id": f"{tid}/1",
            "ticket_id": tid,
            "ticket_number": "SUP-000001",
            "submitter": submitter,
            "category": "technical",
            "priority": "normal",
            "status": "open",
            "payload": {"envelope": key.seal(plain, recipients)},
            "recipients": [key_id(r) for r in recipients],
            "timestamp": ts,
        }
        event = RequestCreated(
            f"{tid}/1",
            "support_request_created",
            1,
            0,
            1,
            tid,
            submitter,
            ts,
            payload,
            ticket_number="SUP-000001",
            submitter=submitter,
            category="technical",
            priority="normal",
            status="open",
            recipients=tuple(key_id(r) for r in recipients),
        )
        await self.store.write("cursor", init_cursor_txn, "bench", 0)
        await self.store.write("commit", commit_blocks_txn, "bench", [BlockBatch(1, [event], {})])
        await self.store.write("dispatch", dispatch_inbox_txn, ["jira"], [], 1, time.time())
        config = load_config(environ={}, flags={"webhook.require_signature": "false"})
        auditor = Auditor(self.store)
        artifacts = LocalStore(Path(setup.work) / "artifacts")
        sync = AttachmentSync(self.store, artifacts, key, auditor, AttachmentSettings(setup.size, ALLOWED, self.spool))
        self.worker = DeskWorker(
            self.desk,
            self.store,
            ContentOpener(self.store, key),
            auditor,
            Metrics(),
            HealthState(),
            config.settings.retry,
            WorkerSettings(concurrency=1, keep_bases=False, step_span=0.0),  # the attachment job waits for run()
            attachments=sync,
        )
        await self._until("kind != 'attachment'")
        if await self._left("kind = 'attachment'") != 1:
            raise RuntimeError("the create job did not queue one attachment job")

    async def run(self) -> dict[str, Any]:
        await self._until("kind = 'attachment'")
        row = await self.store.read(
            "row",
            lambda c: c.execute("SELECT state, reason, desk_attachment_id FROM attachments").fetchone(),
        )
        issue = await self.store.read(
            "issue", lambda c: c.execute("SELECT external_id, external_key FROM external_refs").fetchone()
        )
        if row is None or row[0] != "done":
            raise RuntimeError(f"the attachment job ended {tuple(row) if row else None}")
        return {"attachment_id": row[2], "issue_id": issue[0], "issue_key": issue[1]}

    async def _left(self, which: str) -> int:
        sql = f"SELECT COUNT(*) FROM jobs WHERE state IN ('pending', 'running') AND {which}"
        return int(await self.store.read("left", lambda c: c.execute(sql).fetchone()[0]))

    async def _until(self, which: str) -> None:
        deadline = time.monotonic() + 120
        while await self._left(which):
            if time.monotonic() > deadline:
                raise RuntimeError(f"jobs ({which}) still pending after 120 s")
            if await self.worker.step():
                await asyncio.sleep(0.01)  # nothing was due (the create waits on the desk's search index)
        dead = await self.store.read(
            "dead", lambda c: c.execute("SELECT COUNT(*) FROM jobs WHERE state = 'dead'").fetchone()[0]
        )
        if dead:
            raise RuntimeError(f"{dead} jobs dead-lettered")

    async def aclose(self) -> None:
        if self.store is not None:
            await self.store.close()


async def inbound(setup: Setup, desk: Any, spool: Path) -> dict[str, Any]:
    """AttachmentIntake._copy's steps: download under Counted, judge the type by the head, seal into a spool
    file, store it."""
    from sidecar.artifacts.content import SNIFF_BYTES, Counted, Refused, allowed, safe_file_name, sniff
    from sidecar.artifacts.local import LocalStore
    from sidecar.artifacts.sealed import seal_file
    from sidecar.desks.base import ExternalTicket

    store, key, limit = LocalStore(Path(setup.work) / "artifacts"), _key(setup), setup.size
    ticket = ExternalTicket("jira", setup.out_issue_id, setup.out_issue_key, "")
    att = next(a for a in await desk.list_attachments(ticket) if a.id == setup.attachment_id)
    name = safe_file_name(att.file_name)
    judged: list[str] = []

    def judge(head: bytes) -> str:
        content_type = sniff(head, name)
        reason = allowed(content_type, name, ALLOWED)
        if reason is not None:
            raise Refused(reason)
        return content_type

    async def judging(counted: Counted) -> AsyncIterator[bytes]:
        async for piece in counted:
            if not judged and len(counted.head) >= SNIFF_BYTES:
                judged.append(judge(counted.head))
            yield piece
        if not judged:
            judged.append(judge(counted.head))

    fd, temp = tempfile.mkstemp(dir=spool, prefix=".attach-in-", suffix=".part")
    os.close(fd)
    path = Path(temp)
    try:
        counted = Counted(desk.download(att, limit), limit)
        try:
            recipients = [bytes.fromhex(r) for r in setup.recipients]
            sealed = await seal_file(key, recipients, judging(counted), path)
        finally:
            await counted.aclose()
        stored = await store.put_file(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return {"ref": stored.ref, "sha256": sealed.sha256_plain, "size": sealed.size_plain, "type": judged[0]}


async def bare_upload(setup: Setup, client: Any, spool: Path) -> dict[str, Any]:
    """The plaintext file as one multipart POST, nothing else."""
    with (Path(setup.work) / "plain").open("rb") as handle:
        response = await client.post(
            f"/rest/api/3/issue/{setup.issue_key}/attachments",
            files={"file": (FILE_NAME, handle, CONTENT_TYPE)},
            headers={"X-Atlassian-Token": "no-check"},
        )
    response.raise_for_status()
    return {"attachment_id": str(response.json()[0]["id"])}


async def bare_download(setup: Setup, client: Any, spool: Path) -> dict[str, Any]:
    """The bare upload's bytes streamed to a file (following Jira's redirect to the media URL)."""
    out = spool / "bare-download"
    digest, size = hashlib.sha256(), 0
    url = f"/rest/api/3/attachment/content/{setup.bare_attachment_id}"
    async with client.stream("GET", url, follow_redirects=True) as response:
        response.raise_for_status()
        with out.open("wb") as handle:
            async for chunk in response.aiter_bytes():
                digest.update(chunk)
                size += len(chunk)
                await asyncio.to_thread(handle.write, chunk)
    return {"sha256": digest.hexdigest(), "size": size}


async def held_whole(setup: Setup, client: Any, spool: Path) -> dict[str, Any]:
    """The control: the file read whole into memory and hashed. Its growth shows what one whole copy
    costs on this meter; were it near zero, the meter would be measuring something else."""
    data = await asyncio.to_thread((Path(setup.work) / "plain").read_bytes)
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


RUNNERS = {
    "inbound": inbound,
    "bare_upload": bare_upload,
    "bare_download": bare_download,
    "held_whole": held_whole,
}


async def measure(path: str, setup: Setup) -> dict[str, Any]:
    """One path, timed, with the peak RSS growth over what the process held when it began (clients made,
    and for the outbound engine its store opened and the create job run)."""
    import httpx

    spool = Path(setup.work) / "spool"
    await asyncio.to_thread(spool.mkdir, parents=True, exist_ok=True)
    if path.startswith("bare_") or path == "held_whole":
        client: Any = httpx.AsyncClient(base_url=setup.base_url, auth=(setup.email, setup.api_token), timeout=60)
    else:
        client = _jira(setup)
    engine = Outbound(setup, client, spool) if path == "outbound" else None
    try:
        if engine is not None:
            await engine.prepare()
        else:  # as warm as the engine's process is after its create job: a connection open, a worker thread
            await (client.check() if path == "inbound" else client.get("/rest/api/3/attachment/meta"))
            await asyncio.to_thread(gc.collect)
        gc.collect()
        method = reset_peak()
        start_rss = _status("VmRSS")
        started = time.perf_counter()
        result = await (engine.run() if engine is not None else RUNNERS[path](setup, client, spool))
        seconds = time.perf_counter() - started
        growth = peak(method) - start_rss
        threads = threading.active_count()  # worker threads each keep a malloc arena: part of the growth
    finally:
        if engine is not None:
            await engine.aclose()
        await client.aclose()
    return {
        **result,
        "seconds": seconds,
        "rss_growth": growth,
        "rss_start": start_rss,
        "method": method,
        "threads": threads,
    }


def child(path: str, setup_file: str) -> None:
    setup = Setup(**json.loads(Path(setup_file).read_text()))
    print(json.dumps(asyncio.run(measure(path, setup))))


# the simulator's process ----------------------------------------------------------------------------------
def serve_sim(max_bytes: int) -> None:
    """Serve a Jira simulator with one issue until stdin closes; each "summary" line on stdin is answered
    with every issue's attachments (id, issue key, size, sha256) and the contract violations seen so far."""
    from devnet.jira_sim import JiraSim

    with JiraSim(latency=0.0, validate=True, max_attachment_bytes=max_bytes) as sim:
        key = sim.agent_create_issue("Attachment benchmark")
        issue = sim.issue(key)
        hello = {"base_url": sim.base_url, "key": key, "id": issue.id, "email": sim.email, "token": sim.api_token}
        print(json.dumps(hello), flush=True)
        for _ in sys.stdin:
            files = [
                {"id": a.id, "issue": i.key, "size": len(a.content), "sha256": hashlib.sha256(a.content).hexdigest()}
                for i in sim.list_issues()
                for a in i.attachments
            ]
            print(json.dumps({"attachments": files, "violations": list(sim.contract_violations)}), flush=True)


class SimProcess:
    """The simulator's process: started with the upload limit raised above the file, stopped on exit."""

    def __init__(self, max_bytes: int) -> None:
        args = [sys.executable, "-m", "bench.attachment_path", "sim", str(max_bytes)]
        self.proc = subprocess.Popen(
            args, cwd=ROOT, env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until it serves (or exits: then the line is empty)
        if not line:
            self.close()
            raise RuntimeError(f"the simulator's process exited {self.proc.returncode} before serving")
        self.hello: dict[str, Any] = json.loads(line)

    def summary(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("summary\n")
        self.proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return answer

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


# the driver -----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def sim_process(max_bytes: int) -> Iterator[SimProcess]:
    sim = SimProcess(max_bytes)
    try:
        yield sim
    finally:
        sim.close()


async def _prepare(work: Path, size: int) -> tuple[str, list[str], str, str]:
    """The plaintext file (a PNG head, then random bytes) and its sealed object in the LocalStore:
    (support key hex, recipients hex, ref, sha256 of the plaintext)."""
    from nacl.public import PrivateKey

    from sidecar.artifacts.local import LocalStore
    from sidecar.artifacts.sealed import seal_file
    from sidecar.chain.envelope import EnvelopeKey

    plain = work / "plain"
    with plain.open("wb") as handle:
        handle.write(PNG_HEAD)
        left = size - len(PNG_HEAD)
        while left > 0:
            handle.write(os.urandom(min(MiB, left)))
            left -= min(MiB, left)
    support = PrivateKey.generate()
    others = [PrivateKey.generate() for _ in range(RECIPIENTS - 1)]
    recipients = [bytes(k.public_key) for k in (support, *others)]
    sealing = work / "sealing.part"
    sealed = await seal_file(EnvelopeKey(support), recipients, _file_chunks(plain), sealing)
    await LocalStore(work / "artifacts").put_file(sealing)
    sealing.unlink()
    return bytes(support).hex(), [r.hex() for r in recipients], sealed.ref, sealed.sha256_plain


def run_path(path: str, setup: Setup) -> dict[str, Any]:
    """Measure one path in a fresh process."""
    setup_file = Path(setup.work) / "setup.json"
    fd = os.open(setup_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(asdict(setup)))
    args = [sys.executable, "-m", "bench.attachment_path", "measure", path, str(setup_file)]
    done = subprocess.run(args, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{path} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_all(work: Path, size: int) -> tuple[Setup, dict[str, dict[str, Any]], dict[str, Any]]:
    """Every path once, in order: (setup, each path's result, the simulator's summary afterwards)."""
    support, recipients, ref, sha256 = asyncio.run(_prepare(work, size))
    with sim_process(size + MiB) as sim:
        h = sim.hello
        setup = Setup(
            h["base_url"], h["id"], h["key"], h["email"], h["token"], str(work), size, support, recipients, ref, sha256
        )
        results: dict[str, dict[str, Any]] = {}
        for path in PATHS:
            results[path] = run_path(path, setup)
            if path == "outbound":
                out = results[path]
                ids = {"attachment_id": out["attachment_id"], "out_issue_id": out["issue_id"]}
                setup = Setup(**{**asdict(setup), **ids, "out_issue_key": out["issue_key"]})
            if path == "bare_upload":
                setup = Setup(**{**asdict(setup), "bare_attachment_id": results[path]["attachment_id"]})
        summary = sim.summary()
    return setup, results, summary


def main() -> None:
    from bench.results import Figure, report

    with tempfile.TemporaryDirectory(prefix="bench-attach-", dir=os.environ.get("BENCH_DIR")) as tmp:
        _, results, summary = run_all(Path(tmp), SIZE)
    mib = SIZE / MiB
    figures = [Figure("file_size", mib, "MiB"), Figure("recipients", RECIPIENTS, "keys")]
    verdicts: list[str] = []
    for path, bare in (("outbound", "bare_upload"), ("inbound", "bare_download")):
        r, b = results[path], results[bare]
        growth, bare_growth = r["rss_growth"] / MiB, b["rss_growth"] / MiB
        figures += [
            Figure(f"{path}_time", r["seconds"], "s", b["seconds"], r["seconds"] / b["seconds"]),
            Figure(f"{path}_rate", mib / r["seconds"], "MiB/s", mib / b["seconds"], b["seconds"] / r["seconds"]),
            Figure(
                f"{path}_peak_rss_growth",
                growth,
                "MiB",
                bare_growth,
                growth / bare_growth if bare_growth > 0 else None,
            ),
            Figure(f"{path}_peak_rss_per_file", growth / mib, "x file size"),
        ]
        held = "holds" if growth < BOUND * mib else "EXCEEDED"
        verdicts.append(
            f"  {path}: peak RSS growth {growth:.1f} MiB for a {mib:.1f} MiB file "
            f"({growth / mib:.2f}x; bare {bare_growth:.1f} MiB): bound < {BOUND:.0f}x file size {held}"
        )
    control = results["held_whole"]["rss_growth"] / MiB
    figures.append(Figure("control_whole_copy_rss_growth", control, "MiB", mib, control / mib))
    report("attachment_path", figures)
    methods = sorted({r["method"] for r in results.values()})
    print(f"  peak RSS: each path in a fresh process, growth = peak - RSS at its start, peak by {', '.join(methods)}")
    print(f"  control: the file read whole into memory grows the peak by {control:.1f} MiB (file {mib:.1f} MiB)")
    print("\n".join(verdicts))
    print(f"  simulator: {len(summary['attachments'])} attachments stored, {len(summary['violations'])} violations")


if __name__ == "__main__":
    if sys.argv[1:2] == ["sim"]:
        serve_sim(int(sys.argv[2]))
    elif sys.argv[1:2] == ["measure"]:
        child(sys.argv[2], sys.argv[3])
    else:
        main()
