"""Pieces of the inbound devnet tests and benchmark: the sidecar as a real process with the desk simulators
and their webhooks, a lossy webhook sender, the chain read back independently of the sidecar, and "idle".

Nothing here mocks the product: the sender is the simulators' own WebhookSender with one more fault (a
delivery that never happens), the sidecar is `python -m sidecar run`, and the chain is read over
CometBFT's RPC only (abci_query for the ticket and its responses, block_results for its events), never
through the sidecar's mirror, so a mirror that drifts from the chain cannot hide.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from virtengine.support.v1 import query_pb2

from devnet.cometbft import DevnetNode
from devnet.driver import ChainDriver, DevAccount
from devnet.envelope import open_envelope, payload_from_proto
from devnet.jira_model import adf_to_text
from devnet.jira_sim import JiraSim
from devnet.sim_webhooks import HeadersFor, WebhookSender
from devnet.support_events import STATUS_NAMES
from devnet.waiting import async_wait_until
from devnet.waldur_sim import WaldurSim
from sidecar.config import KEYS_BY_PATH
from sidecar.store.inbound import sweep_marks
from tests.sidecar.harness import read_rows
from tests.sidecar.process import SidecarProcess, closed_port
from tests.sidecar.sync.test_outbound_e2e import desk_env, desk_flags

CUSTOMER = DevAccount.from_name("customer")
AGENT = DevAccount.from_name("agent")
SIDECAR = DevAccount.from_name("sidecar")
RECIPIENTS = [CUSTOMER.box_public, SIDECAR.box_public]
SIGNING_KEY = hashlib.sha256(b"devnet-account:sidecar").hexdigest()  # the devnet's sidecar account (an agent)
JIRA_HOOK_SECRET = "jira-hook-secret-for-inbound-tests"
WALDUR_HOOK_SECRET = "waldur-hook-secret-for-inbound-tests"
# Jira priority name -> chain priority: the default jira.priority_map read backwards (one-to-one).
CHAIN_PRIORITY = {"Low": "low", "Medium": "normal", "High": "high", "Highest": "urgent"}
JIRA_PRIORITY = {chain: desk for desk, chain in CHAIN_PRIORITY.items()}
WALDUR_PRIORITIES = tuple(CHAIN_PRIORITY)  # a Waldur whose admin added Jira's priorities, mapped the same way
WALDUR_PRIORITY_MAP = ",".join(f"{chain}={desk}" for chain, desk in JIRA_PRIORITY.items())
WALDUR_HOOK_EVENTS = ["issue_creation_succeeded", "issue_update_succeeded", "issue_deletion_succeeded"]
SUPPORT_REQUEST = "/virtengine.support.v1.Query/SupportRequest"
SUPPORT_RESPONSES = "/virtengine.support.v1.Query/SupportResponses"


# the sidecar ---------------------------------------------------------------------------------------
class Sidecar:
    """`python -m sidecar run` on a fixed loopback webhook port, so it can be stopped (or SIGKILLed) and
    started again while the simulators keep sending their signed webhooks to the same address. `flags`
    override the defaults (config paths, e.g. {"sync.conflict_resolution": "manual"})."""

    def __init__(
        self,
        tmp_path: Path,
        node: DevnetNode,
        jira: JiraSim,
        waldur: WaldurSim | None = None,
        flags: Mapping[str, object] | None = None,
    ) -> None:
        self.tmp_path, self.node, self.jira, self.waldur = tmp_path, node, jira, waldur
        self.db = tmp_path / "sidecar.db"
        self.port = closed_port()
        self.desks = ["jira"] + (["waldur"] if waldur is not None else [])
        settings: dict[str, object] = {
            "webhook.listen_addr": f"127.0.0.1:{self.port}",
            "webhook.rate_limit_per_second": "5000",
            "webhook.rate_limit_per_source": "5000",
            "webhook.max_queued_writes": "256",
            "sync.sync_interval": "2s",
            "jira.requests_per_second": "500",
        }
        self.env = {
            **desk_env(jira, waldur),
            "VIRTENGINE_SERVICEDESK_SIGNING_KEY": SIGNING_KEY,
            "VIRTENGINE_SERVICEDESK_JIRA_WEBHOOK_SECRET": JIRA_HOOK_SECRET,
        }
        jira.webhook_url, jira.webhook_secret = self.hook_url("jira"), JIRA_HOOK_SECRET
        if waldur is not None:
            settings["waldur.priority_map"] = WALDUR_PRIORITY_MAP
            self.env["VIRTENGINE_SERVICEDESK_WALDUR_WEBHOOK_SECRET"] = WALDUR_HOOK_SECRET
            # Waldur signs nothing: the deployment's proxy adds the shared secret (the simulator's knob for it).
            waldur.hook_secret = WALDUR_HOOK_SECRET
            register_waldur_hook(waldur, self.hook_url("waldur"))
        settings.update(flags or {})
        for path, value in desk_flags(tmp_path, node, jira, waldur, **settings).items():
            self.env[KEYS_BY_PATH[path].env] = str(value)
        self.proc: SidecarProcess | None = None
        self.starts = 0
        self.grpc_port = 0
        self.logs: list[str] = []  # lines of the processes stopped or killed so far

    def hook_url(self, desk: str) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks/{desk}"

    def start(self) -> None:
        assert self.proc is None, "already running"
        self.proc = SidecarProcess(["run"], dict(self.env), cwd=self.tmp_path)
        self.starts += 1
        started = self.proc.wait_for_log("started")
        self.grpc_port = int(started["grpc_port"])

    def stop(self) -> None:
        """SIGTERM, if it runs; the process must exit cleanly (one that died on its own fails here)."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        try:
            code = proc.terminate()
        finally:
            proc.close()
            self.logs += proc.lines
        assert code == 0, f"sidecar exited with {code}: {''.join(proc.lines[-30:])}"

    def kill(self) -> None:
        """SIGKILL, if it runs: no shutdown path runs (also the teardown of a test that failed)."""
        if self.proc is not None:
            proc, self.proc = self.proc, None
            proc.close()
            self.logs += proc.lines

    def all_lines(self) -> list[str]:
        return self.logs + (list(self.proc.lines) if self.proc is not None else [])

    def tail(self, lines: int = 40) -> str:
        return "".join(self.all_lines()[-lines:])


def register_waldur_hook(waldur: WaldurSim, url: str) -> None:
    """What an operator does once: a JSON web hook for the issue events (Waldur has no comment events)."""
    body = {"destination_url": url, "event_types": WALDUR_HOOK_EVENTS, "content_type": "json"}
    answer = httpx.post(
        f"{waldur.api_url}/hooks-web/", json=body, headers={"Authorization": f"Token {waldur.token}"}, timeout=10
    )
    assert answer.status_code == 201, answer.text


class LossySender(WebhookSender):
    """The simulators' sender with every delivery fate drawn once per event (seeded): `dup` of them sent
    twice, `late` held back long enough that later events overtake them, `lost` never sent at all."""

    def __init__(
        self,
        *,
        dup: float = 0.2,
        late: float = 0.1,
        lost: float = 0.05,
        late_range: tuple[float, float] = (0.5, 3.0),
        seed: int = 0,
    ) -> None:
        super().__init__(max_retries=3, backoff=0.1, timeout=5.0, seed=seed)
        self.dup, self.late, self.lost, self.late_range = dup, late, lost, late_range
        self.fates: Counter[str] = Counter()
        self._dice = random.Random(seed)
        self._fate_lock = threading.Lock()

    def submit(self, url: str, identifier: str, event: str, body: bytes, headers_for: HeadersFor) -> None:
        with self._fate_lock:  # the script slot and the event must pair up: both threads submit
            roll = self._dice.random()
            if roll < self.lost:
                self.fates["lost"] += 1
                return
            duplicate = self._dice.random() < self.dup
            delay = self._dice.uniform(*self.late_range) if self._dice.random() < self.late else None
            self.fates["sent"] += 1
            self.fates["duplicated"] += duplicate
            self.fates["late"] += delay is not None
            self.next_options(duplicate=duplicate, delay=delay)
            super().submit(url, identifier, event, body, headers_for)


# the chain, read back -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChainTicket:
    status: str
    priority: str
    agent: str
    response_count: int


@dataclass(frozen=True)
class ChainResponse:
    author: str
    is_agent: bool
    message: str  # as the reader's wallet opens it


class ChainReader:
    """The chain's committed state over abci_query, responses opened with `account`'s key (what that
    wallet would show); one connection for many reads (a connection costs tens of milliseconds)."""

    def __init__(self, node: DevnetNode, account: DevAccount = CUSTOMER) -> None:
        self.account = account
        self._driver = ChainDriver(node.rpc_url, account)

    def __enter__(self) -> ChainReader:
        return self

    def __exit__(self, *_: object) -> None:
        self._driver.close()

    def ticket(self, ticket_id: str) -> ChainTicket:
        value = self._driver.abci_query(SUPPORT_REQUEST, query_pb2.QuerySupportRequestRequest(ticket_id=ticket_id))
        ticket = query_pb2.QuerySupportRequestResponse.FromString(value).request
        return ChainTicket(STATUS_NAMES[ticket.status], ticket.priority, ticket.assigned_agent, ticket.response_count)

    def responses(self, ticket_id: str) -> list[ChainResponse]:
        """Every response of the ticket in chain order (fails if one is not sealed inline to the reader)."""
        request = query_pb2.QuerySupportResponsesRequest(ticket_id=ticket_id)
        value = self._driver.abci_query(SUPPORT_RESPONSES, request)
        found = []
        for response in query_pb2.QuerySupportResponsesResponse.FromString(value).responses:
            payload = payload_from_proto(response.payload)
            assert payload.envelope is not None, f"{ticket_id}: a response without an inline envelope"
            opened = open_envelope(payload.envelope, self.account.box_key)
            found.append(ChainResponse(response.author, response.is_agent, str(opened.get("message", ""))))
        return found


def chain_ticket(node: DevnetNode, ticket_id: str) -> ChainTicket:
    with ChainReader(node) as chain:
        return chain.ticket(ticket_id)


def chain_responses(node: DevnetNode, ticket_id: str, reader: DevAccount = CUSTOMER) -> list[ChainResponse]:
    with ChainReader(node, reader) as chain:
        return chain.responses(ticket_id)


def support_events(node: DevnetNode, first: int, last: int) -> list[dict[str, Any]]:
    """The payload_json of every support_event of successful txs in heights first..last (block_results)."""
    events: list[dict[str, Any]] = []
    with httpx.Client(base_url=node.rpc_url, timeout=10) as client:
        for height in range(first, last + 1):
            result = client.get("/block_results", params={"height": str(height)}).json()["result"]
            for tx in result.get("txs_results") or []:
                if tx.get("code"):
                    continue
                for event in tx.get("events") or []:
                    if event.get("type") == "support_event":
                        attrs = {a["key"]: a["value"] for a in event.get("attributes") or []}
                        events.append(json.loads(attrs["payload_json"]))
    return events


def field_changes(
    events: Sequence[dict[str, Any]], ticket_id: str, before: ChainTicket, sender: str
) -> list[tuple[str, str]]:
    """(field, new value) for every change of status, priority or agent `sender` made to the ticket, in chain
    order, starting from the ticket as it was `before` the events (updates carry current values, so a
    change is a difference from the state before it; a reply's automatic status change is nobody's). An
    update that changed nothing (a duplicate) shows as ("nothing", "")."""
    state = {"status": before.status, "priority": before.priority, "agent": before.agent}
    changes: list[tuple[str, str]] = []
    for event in events:
        if event.get("ticket_id") != ticket_id:
            continue
        if event["event_type"] == "support_request_status_changed":
            state["status"] = event["new_status"]
            continue
        if event["event_type"] != "support_request_updated":
            continue
        now = {"status": event["status"], "priority": event["priority"], "agent": event.get("assigned_agent", "")}
        if event["updated_by"] == sender:
            diff = [(name, value) for name, value in now.items() if value != state[name]]
            changes += diff or [("nothing", "")]
        state = now
    return changes


def create_ticket(node: DevnetNode, subject: str, priority: str = "normal") -> str:
    with ChainDriver(node.rpc_url, CUSTOMER) as customer:
        return customer.create_ticket("technical", priority, {"subject": subject, "description": "d"}, RECIPIENTS)


def create_tickets(node: DevnetNode, count_: int) -> list[str]:
    with ChainDriver(node.rpc_url, CUSTOMER) as customer:
        return customer.create_tickets(count_, RECIPIENTS, per_tx=25)


# the desks ------------------------------------------------------------------------------------------
def waldur_issue_of(waldur: WaldurSim, ticket_id: str) -> str | None:
    found = waldur.by_remote_id(f"virtengine:{ticket_id}")
    return found[0].uuid.hex if len(found) == 1 else None


def jira_texts(jira: JiraSim, key: str) -> list[tuple[str, bool, str]]:
    """(author accountId, public, plain text) of every comment of the issue."""
    return [(c.author, c.public, adf_to_text(c.body)) for c in jira.issue(key).comments]


def waldur_texts(waldur: WaldurSim, uuid: str) -> list[tuple[str, bool, str]]:
    """(author username, public, text) of every comment of the issue."""
    return [(c.author.username, c.is_public, c.description) for c in waldur.comments_of(uuid)]


# the sidecar's store, read-only ---------------------------------------------------------------------
def rows(db: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    """A read-only query of the sidecar's database (it may be running)."""
    return read_rows(db, sql, args)


def count(db: Path, sql: str, *args: object) -> int:
    return int(rows(db, sql, *args)[0][0])


def linked_keys(db: Path) -> dict[str, str]:
    """chain ticket id -> the Jira issue key the sidecar linked to it (a verified ref), once it has one."""
    found = rows(
        db,
        "SELECT ticket_id, external_key FROM external_refs"
        " WHERE desk = 'jira' AND verified = 1 AND external_key IS NOT NULL",
    )
    return {str(t): str(k) for t, k in found}


def failures(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Work the sidecar gave up on: dead desk jobs and re-reads, chain txs failed or dead."""
    found = {
        "dead jobs": rows(db, "SELECT kind, last_error FROM jobs WHERE state = 'dead'"),
        "dead re-reads": rows(db, "SELECT desk, external_id, last_error FROM inbound_queue WHERE state = 'dead'"),
        "failed intents": rows(db, "SELECT dedupe_key, code, log FROM tx_intents WHERE state IN ('failed', 'dead')"),
    }
    return {k: v for k, v in found.items() if v}


OPEN_WORK = {
    "desk jobs": "SELECT COUNT(*) FROM jobs WHERE state IN ('pending', 'running')",
    "chain inbox": "SELECT COUNT(*) FROM chain_inbox WHERE state = 'pending'",
    "hints": "SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'accepted'",
    "re-reads": "SELECT COUNT(*) FROM inbound_queue WHERE state IN ('pending', 'running')",
    "intents": "SELECT COUNT(*) FROM tx_intents WHERE state IN ('queued', 'signed', 'broadcast')",
}


def busy(db: Path, height: int, desks: Sequence[str] = (), swept_after: float = 0.0) -> str | None:
    """What the sidecar still has to do (None: nothing): read the chain up to `height`, work off an open desk
    job, chain inbox entry, hint, re-read or chain tx, and (for each of `desks`) start a sweep after
    `swept_after` and work it off. One snapshot of the database, so no work is missed moving between tables."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        conn.execute("BEGIN")
        cursor = conn.execute("SELECT height FROM cursor").fetchone()
        if cursor is None or int(cursor[0]) < height:
            return "follower behind"
        for what, sql in OPEN_WORK.items():
            if conn.execute(sql).fetchone()[0]:
                return what
        marks = sweep_marks(conn)
        behind = [desk for desk in desks if marks.get(desk, 0.0) <= swept_after]
        return f"no sweep yet of {behind}" if behind else None
    except sqlite3.OperationalError as exc:
        return f"database: {exc}"  # e.g. the sidecar has not created its tables yet
    finally:
        conn.close()


async def settle(sidecar: Sidecar, *, after: float | None = None, timeout: float = 60) -> None:
    """Wait until the sidecar is idle with a sweep of each of its desks begun after `after` (default: now)
    worked off; the chain height is taken now, so every block committed so far has been read. Work it gave
    up on stops the wait."""
    height = sidecar.node.height()
    since = time.time() if after is None else after

    def idle() -> dict[str, list[tuple[Any, ...]]] | bool:
        try:
            given_up = failures(sidecar.db)
        except sqlite3.OperationalError:
            return False  # the sidecar has not created its tables yet
        return given_up or busy(sidecar.db, height, sidecar.desks, since) is None

    try:
        outcome = await async_wait_until(idle, timeout=timeout, what="the sidecar to settle", interval=0.1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nsidecar log tail:\n{sidecar.tail()}") from None
    assert outcome is True, f"the sidecar gave up on work: {outcome}"
