"""The chaos run's independent checker: the chain over RPC and the desks over their HTTP APIs, never the
sidecar's database or the simulators' objects, so a sidecar whose own records drift cannot hide.

Input: the run's plan (what was written where, bench/chaos.py writes it as JSON) and the addresses and
credentials of the node, the desks and the sidecar's control API.

Which tickets: every support ticket on chain, not only the driver's. The chain has no list query (the
contract's Query service has none), so the checker reads the list twice over RPC and requires both to
agree: every `support_request_created` event in block_results from height 1 to the head (less purged
ones), and a walk of `<account>/support/1, 2, ...` until NotFound for every genesis account and every
account a transfer funded (ids are a per-submitter counter from 1, CHAIN_CONTRACT.md). A driver ticket
missing from chain is a difference too.

Checked, per chain ticket: exactly one Jira issue (label search) and one Waldur issue (remote_id
filter), one ref per desk on chain naming that issue; the status agrees across the three sides through
the configured status maps (chain -> Jira name, chain -> Waldur name). Per ticket the driver wrote:
the priority agrees on chain and at Jira (Waldur's priority cannot be edited after create, so it is not
compared); every public reply made anywhere is present exactly once on each side. "Agree" under
concurrent writes, for priority and status: chain and desk hold the same value, and the chain's value is
the last value some side wrote (for a desk write: a chain value that desk name stands for); a value
nobody wrote, or one overwritten by a later write on the same side, is a difference. The conflict rule is
on_chain_wins, so a conflict decides for the chain's value, which is one of those.

No conflict lost: the sidecar's conflicts as the operator reads them (`servicedesk-sidecar conflicts
--all --json` over the control API) are each resolved for the chain (the rule) or listed open where the
sidecar parks them for an operator (a desk status the chain cannot reach, rule `transition_not_allowed`);
each is in the audit export once (`conflict_resolved` or `conflict_parked`), and the export names no
conflict the list lacks. A field parked in an open conflict is written by neither side until an operator
decides, so it is not compared (counted as skipped).
The audit chain is checked by the sidecar's own command (`servicedesk-sidecar audit verify`).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from virtengine.support.v1 import query_pb2

from devnet.driver import ChainDriver, ChainDriverError, DevAccount
from devnet.envelope import open_envelope, payload_from_proto
from devnet.support_events import STATUS_NAMES
from sidecar.desks.jira import ticket_label

SUPPORT_REQUEST = "/virtengine.support.v1.Query/SupportRequest"
SUPPORT_RESPONSES = "/virtengine.support.v1.Query/SupportResponses"
EXTERNAL_REFS = "/virtengine.support.v1.Query/ExternalTicketRefs"
# Jira priority name -> chain priority (the default map); the chaos Waldur uses Jira's names.
CHAIN_PRIORITY = {"Low": "low", "Medium": "normal", "High": "high", "Highest": "urgent"}
# chain status -> desk status name: the sidecar's default jira.status_map and waldur.status_map
JIRA_STATUS = {
    "open": "Open",
    "assigned": "In Progress",
    "in_progress": "In Progress",
    "waiting_customer": "Waiting for Customer",
    "waiting_support": "Waiting for Support",
    "resolved": "Resolved",
    "closed": "Closed",
    "archived": "Closed",
}
WALDUR_STATUS = {s: ("Resolved" if s in ("resolved", "closed", "archived") else "Open") for s in JIRA_STATUS}
DESK_STATUS = {"jira": JIRA_STATUS, "waldur": WALDUR_STATUS}
NOT_FOUND = "code 22"


@dataclass
class Endpoints:
    """Where the checker reads: the node's RPC and each desk's API with a read credential."""

    rpc_url: str
    jira_url: str
    jira_auth: tuple[str, str]  # Basic (email, token)
    waldur_url: str  # the API root, ending in /api
    waldur_token: str
    sidecar_db: str  # only the directory, for `servicedesk-sidecar audit verify` (its own check, run as a command)
    sidecar_env: dict[str, str] = field(default_factory=dict)
    control: str = ""  # the running sidecar's control API (host:port), for `servicedesk-sidecar conflicts`


@dataclass
class Report:
    checked: dict[str, int] = field(default_factory=dict)
    differences: list[str] = field(default_factory=list)

    def count(self, what: str, n: int = 1) -> None:
        self.checked[what] = self.checked.get(what, 0) + n


def _jira_issues(client: httpx.Client, number: str, known: list[str]) -> list[dict[str, Any]]:
    """The issues carrying the ticket's label, found by search and each read back by key. Jira's search index
    lags (a just-created issue may be missing for seconds, and hits may show older fields), so the issues the
    chain's refs name (`known`, keys or ids) go in as `reconcileIssues`, Jira's read-after-write switch: a
    check right after the sync sees them; a duplicate nobody registered shows once the index catches up."""
    ids: list[str] = []
    for ref in known:
        found = client.get(f"/rest/api/3/issue/{ref}", params={"fields": "labels"})
        if found.status_code == 200:
            ids.append(str(found.json()["id"]))
    jql = f'labels = "{ticket_label(number)}"'
    params = {"jql": jql, "fields": "labels"} | ({"reconcileIssues": ",".join(ids)} if ids else {})
    answer = client.get("/rest/api/3/search/jql", params=params)
    answer.raise_for_status()
    issues: list[dict[str, Any]] = []
    for hit in answer.json().get("issues") or []:
        current = client.get(f"/rest/api/3/issue/{hit['key']}", params={"fields": "priority,labels,status"})
        current.raise_for_status()
        issues.append(current.json())
    return issues


def _jira_comments(client: httpx.Client, key: str) -> list[str]:
    texts: list[str] = []
    start = 0
    while True:
        answer = client.get(f"/rest/api/3/issue/{key}/comment", params={"startAt": start, "maxResults": 100})
        answer.raise_for_status()
        body = answer.json()
        for comment in body.get("comments") or []:
            if comment.get("jsdPublic", True):
                texts.append(json.dumps(comment.get("body")))  # ADF: the token is a substring of its text nodes
        start += len(body.get("comments") or [])
        if not body.get("comments") or start >= int(body.get("total", 0)):
            return texts


def _waldur_all(client: httpx.Client, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    url: str | None = path
    query: dict[str, str] | None = {**params, "page_size": "300"}
    while url:
        answer = client.get(url, params=query)
        answer.raise_for_status()
        rows += answer.json()
        url = answer.links.get("next", {}).get("url")
        query = None
    return rows


# which tickets the chain holds ----------------------------------------------------------------------
@dataclass
class ChainEvents:
    """What block_results say about tickets and accounts, heights 1..head."""

    created: set[str] = field(default_factory=set)
    purged: set[str] = field(default_factory=set)
    funded: set[str] = field(default_factory=set)  # accounts a transfer paid into (MsgSend makes new ones)
    blocks: int = 0


def _attrs(event: dict[str, Any]) -> dict[str, str]:
    return {str(a.get("key")): str(a.get("value")) for a in event.get("attributes") or []}


def _read_events(events: list[dict[str, Any]], found: ChainEvents) -> None:
    for event in events:
        attrs = _attrs(event)
        if event.get("type") == "transfer" and attrs.get("recipient"):
            found.funded.add(attrs["recipient"])
        if event.get("type") != "support_event":
            continue
        payload = json.loads(attrs.get("payload_json") or "{}")
        if attrs.get("event_type") == "support_request_created":
            found.created.add(str(payload["ticket_id"]))
        elif attrs.get("event_type") == "support_request_purged":
            found.purged.add(str(payload["ticket_id"]))


def scan_events(rpc_url: str, report: Report, batch: int = 10) -> ChainEvents:
    """Every block's results from height 1 (JSON-RPC batches, at most CometBFT's default
    rpc.max_request_batch_size of 10): created and purged tickets, funded accounts."""
    found = ChainEvents()
    with httpx.Client(base_url=rpc_url, timeout=60) as client:
        sync = client.get("/status").json()["result"]["sync_info"]
        earliest, head = int(sync["earliest_block_height"]), int(sync["latest_block_height"])
        if earliest > 1:
            report.differences.append(f"the node pruned blocks below {earliest}: tickets cannot all be listed")
        for first in range(earliest, head + 1, batch):
            heights = range(first, min(first + batch, head + 1))
            calls = [
                {"jsonrpc": "2.0", "id": h, "method": "block_results", "params": {"height": str(h)}} for h in heights
            ]
            answer = client.post("/", json=calls).json()
            answer = [answer] if isinstance(answer, dict) and "result" in answer else answer  # a batch of one
            if not isinstance(answer, list):
                raise RuntimeError(f"block_results batch refused: {answer}")
            for doc in answer:
                result = doc["result"]
                for tx in result.get("txs_results") or []:
                    if not int(tx.get("code") or 0):
                        _read_events(tx.get("events") or [], found)
                _read_events(result.get("finalize_block_events") or [], found)
                found.blocks += 1
    return found


def _walk(chain: ChainDriver, address: str) -> list[str]:
    """`address`'s tickets: n = 1, 2, ... until the chain answers NotFound (ids are a per-submitter counter)."""
    found: list[str] = []
    while True:
        tid = f"{address}/support/{len(found) + 1}"
        try:
            chain.abci_query(SUPPORT_REQUEST, query_pb2.QuerySupportRequestRequest(ticket_id=tid))
        except ChainDriverError as exc:
            if NOT_FOUND in str(exc):
                return found
            raise
        found.append(tid)


def chain_ticket_ids(ends: Endpoints, chain: ChainDriver, report: Report) -> list[str]:
    """Every ticket on chain, read two ways that must agree (the module docstring)."""
    events = scan_events(ends.rpc_url, report)
    genesis = chain.call("genesis")["genesis"]["app_state"]
    accounts = {str(a["address"]) for a in genesis.get("accounts") or []} | events.funded
    accounts |= {tid.split("/")[0] for tid in events.created}
    walked = {tid for address in sorted(accounts) for tid in _walk(chain, address)}
    listed = events.created - events.purged
    report.count("blocks scanned", events.blocks)
    report.count("accounts walked", len(accounts))
    for tid in sorted(listed - walked):
        report.differences.append(f"{tid}: created on chain (block_results) but not found by the walk")
    for tid in sorted(walked - listed):
        report.differences.append(f"{tid}: on chain (walk) without a creation event")
    return sorted(walked | listed)


def _existing(chain: ChainDriver, tickets: list[str]) -> list[str]:
    """Those of `tickets` the chain holds (NotFound: not)."""
    found = []
    for tid in tickets:
        try:
            chain.abci_query(SUPPORT_REQUEST, query_pb2.QuerySupportRequestRequest(ticket_id=tid))
        except ChainDriverError as exc:
            if NOT_FOUND not in str(exc):
                raise
            continue
        found.append(tid)
    return found


# the checks -------------------------------------------------------------------------------------------
def check(plan: dict[str, Any], ends: Endpoints, every_ticket: bool = True) -> Report:
    """Every difference between the plan's writes, the chain and the desks (empty: none). `every_ticket`
    False checks the plan's tickets only: a test that shares its node with others (whose desks are gone)."""
    report = Report()
    reader = DevAccount.from_name("customer")
    token = base64.b64encode(f"{ends.jira_auth[0]}:{ends.jira_auth[1]}".encode()).decode()
    with (
        ChainDriver(ends.rpc_url, reader) as chain,
        httpx.Client(base_url=ends.jira_url, headers={"Authorization": f"Basic {token}"}, timeout=20) as jira,
        httpx.Client(headers={"Authorization": f"Token {ends.waldur_token}"}, timeout=20) as waldur,
    ):
        parked = _conflicts(plan["rule"], ends, report)
        on_chain = chain_ticket_ids(ends, chain, report) if every_ticket else _existing(chain, plan["tickets"])
        for tid in sorted(set(plan["tickets"]) - set(on_chain)):
            report.differences.append(f"{tid}: the driver created it but the chain does not hold it")
        report.count("tickets the driver created", len(plan["tickets"]))
        for tid in on_chain:
            _check_ticket(plan, tid, chain, jira, waldur, ends, report, parked)
    _audit(ends, report)
    return report


def _check_ticket(
    plan: dict[str, Any],
    tid: str,
    chain: ChainDriver,
    jira: httpx.Client,
    waldur: httpx.Client,
    ends: Endpoints,
    report: Report,
    parked: set[tuple[str, str, str]],
) -> None:
    """`parked`: (ticket, desk, field) held in an open conflict, which neither side writes until an operator
    decides: not compared (the conflict is listed, so not lost)."""
    diff = report.differences.append
    raw = chain.abci_query(SUPPORT_REQUEST, query_pb2.QuerySupportRequestRequest(ticket_id=tid))
    ticket = query_pb2.QuerySupportRequestResponse.FromString(raw).request
    report.count("chain tickets")
    refs_raw = chain.abci_query(EXTERNAL_REFS, query_pb2.QueryExternalTicketRefsRequest(resource_id=tid))
    refs = query_pb2.QueryExternalTicketRefsResponse.FromString(refs_raw).refs
    by_desk: dict[str, list[str]] = {}
    for ref in refs:
        by_desk.setdefault(ref.external_system, []).append(ref.external_ticket_id)
    issues = _jira_issues(jira, ticket.ticket_number, by_desk.get("jira", []))
    wissues = _waldur_all(waldur, f"{ends.waldur_url}/support-issues/", {"remote_id": f"virtengine:{tid}"})
    wissues = [w for w in wissues if w.get("remote_id") == f"virtengine:{tid}"]
    report.count("desk issue lookups", 2)
    if len(issues) != 1:
        diff(f"{tid}: {len(issues)} Jira issues (want 1)")
    if len(wissues) != 1:
        diff(f"{tid}: {len(wissues)} Waldur issues (want 1)")
    for desk in ("jira", "waldur"):
        report.count("chain refs")
        if len(by_desk.get(desk, [])) != 1:
            diff(f"{tid}: {len(by_desk.get(desk, []))} {desk} refs on chain (want 1)")
    if len(issues) != 1 or len(wissues) != 1:
        return
    jissue, wissue = issues[0], wissues[0]
    if by_desk.get("jira") and by_desk["jira"][0] not in (jissue["key"], jissue["id"]):
        diff(f"{tid}: the chain's Jira ref {by_desk['jira'][0]} is not the desk's issue {jissue['key']}")
    if by_desk.get("waldur") and by_desk["waldur"][0].replace("-", "") != wissue["uuid"].replace("-", ""):
        diff(f"{tid}: the chain's Waldur ref is not the desk's issue")
    status = STATUS_NAMES.get(ticket.status, f"?{ticket.status}")
    desk_status = {"jira": (jissue["fields"].get("status") or {}).get("name", "?"), "waldur": wissue.get("status")}
    for desk, name in desk_status.items():
        if (tid, desk, "status") in parked:
            report.count("status comparisons skipped: parked in an open conflict")
            continue
        report.count("status comparisons")
        if DESK_STATUS[desk].get(status) != name:
            diff(f"{tid}: status {status} on chain but {name!r} at {desk} (want {DESK_STATUS[desk].get(status)!r})")
    if tid not in plan["tickets"]:
        return
    if not {(tid, "jira", "priority"), (tid, "jira", "status"), (tid, "waldur", "status")} & parked:
        _check_written(plan, tid, ticket, status, jissue, report)
    _check_replies(plan, tid, chain, jira, waldur, jissue, wissue, ends, report)


def _check_written(
    plan: dict[str, Any], tid: str, ticket: Any, status: str, jissue: dict[str, Any], report: Report
) -> None:
    """Priority and status of a driver ticket: agreed, and on a value some side wrote last."""
    diff = report.differences.append
    # Waldur's priority is not editable after create (its serializer's protected_fields): the sidecar
    # leaves the agents an internal note instead, so Waldur's own field is not compared.
    values = {
        "chain": ticket.priority,
        "jira": CHAIN_PRIORITY.get((jissue["fields"].get("priority") or {}).get("name", ""), "?"),
    }
    report.count("priority comparisons")
    if len(set(values.values())) != 1:
        diff(f"{tid}: priority differs across sides {values}")
    last = dict(plan["last_priority"].get(tid, {}))
    if last and values["chain"] not in last.values():
        diff(f"{tid}: final priority {values['chain']} is none of the sides' last writes {last}")
    wrote = dict(plan.get("last_status", {}).get(tid, {}))  # chain: a chain status; a desk: its status name
    if wrote:
        report.count("status last-write checks")
        stands = [side for side, v in wrote.items() if (status if side == "chain" else DESK_STATUS[side][status]) == v]
        if not stands:
            diff(f"{tid}: final status {status} stands for none of the sides' last writes {wrote}")


def _check_replies(
    plan: dict[str, Any],
    tid: str,
    chain: ChainDriver,
    jira: httpx.Client,
    waldur: httpx.Client,
    jissue: dict[str, Any],
    wissue: dict[str, Any],
    ends: Endpoints,
    report: Report,
) -> None:
    """Every public reply made anywhere is present exactly once on each side."""
    diff = report.differences.append
    responses_raw = chain.abci_query(SUPPORT_RESPONSES, query_pb2.QuerySupportResponsesRequest(ticket_id=tid))
    chain_texts = []
    for response in query_pb2.QuerySupportResponsesResponse.FromString(responses_raw).responses:
        payload = payload_from_proto(response.payload)
        if payload.envelope is None:
            diff(f"{tid}: a response without an inline envelope")
            continue
        chain_texts.append(str(open_envelope(payload.envelope, DevAccount.from_name("customer").box_key)["message"]))
    jira_texts = _jira_comments(jira, jissue["key"])
    wcomments = _waldur_all(waldur, f"{ends.waldur_url}/support-comments/", {"issue_uuid": wissue["uuid"]})
    waldur_texts = [str(c.get("description", "")) for c in wcomments if c.get("is_public", True)]
    for token in plan["replies"].get(tid, []):
        for side, texts in (("chain", chain_texts), ("jira", jira_texts), ("waldur", waldur_texts)):
            report.count("reply presence checks")
            found = sum(f"{token}:" in t for t in texts)  # "-1:" must not match "-10:"
            if found != 1:
                diff(f"{tid}: reply {token} present {found} times on {side} (want 1)")


def _sidecar_command(ends: Endpoints, *args: str) -> subprocess.CompletedProcess[str]:
    """`servicedesk-sidecar ARGS` with the sidecar's own configuration, as its operator runs it."""
    command = [sys.executable, "-m", "sidecar", *args]
    env = {**os.environ, **ends.sidecar_env}
    cwd = Path(ends.sidecar_db).parent
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=cwd, check=False)


def _conflicts(rule: str, ends: Endpoints, report: Report) -> set[tuple[str, str, str]]:
    """No conflict lost: each one the sidecar lists is decided by the rule, or open where it parks them for
    an operator (under manual; under any rule, a desk status the chain's transitions cannot reach: rule
    `transition_not_allowed`, CHAIN_CONTRACT.md); the list and the audit export name the same conflicts, once
    each. Returns the (ticket, desk, field) of the open ones."""
    diff = report.differences.append
    listed = _sidecar_command(ends, "conflicts", "--all", "--json", "--control", ends.control)
    if listed.returncode != 0:
        diff(f"`conflicts --all` failed ({listed.returncode}): {(listed.stdout + listed.stderr)[-300:]}")
        return set()
    conflicts = json.loads(listed.stdout).get("conflicts") or []
    report.count("conflicts listed", 0)  # present (0) when there were none
    exported = _sidecar_command(ends, "audit", "export", "--since", "30d")
    if exported.returncode != 0:
        diff(f"`audit export` failed ({exported.returncode}): {exported.stderr[-300:]}")
        return set()
    audited = [json.loads(line) for line in exported.stdout.splitlines() if line.strip()]
    decided = [
        row
        for row in audited
        if row["event_type"] == "conflict_parked"
        or (row["event_type"] == "conflict_resolved" and row["details"].get("rule") != "manual")
    ]
    wanted = None if rule == "manual" else {"on_chain_wins": "chain kept", "external_wins": "desk kept"}.get(rule)
    parked_rules = {
        (r["ticket_id"], r["desk"], r["details"].get("field")): str(r["details"].get("rule", ""))
        for r in decided
        if r["event_type"] == "conflict_parked"
    }
    parked: set[tuple[str, str, str]] = set()
    for conflict in conflicts:
        report.count("conflicts listed")
        state, resolution = conflict.get("state"), conflict.get("resolution", "")
        where = (str(conflict.get("ticket_id")), str(conflict.get("desk")), str(conflict.get("field")))
        report.count(f"conflicts {state}")
        if state == "open":
            parked.add(where)
        why = parked_rules.get(where, "")
        if state == "open" and rule != "manual" and not why.startswith("transition_not_allowed"):
            diff(f"conflict {conflict.get('id')} left open under {rule} (rule {why!r})")
        elif state == "resolved" and wanted is not None and resolution != wanted:
            diff(f"conflict {conflict.get('id')} resolved as {resolution!r} under {rule} (want {wanted!r})")
        elif state not in ("open", "resolved"):
            diff(f"conflict {conflict.get('id')} in state {state!r}")
    in_list = sorted((c.get("ticket_id"), c.get("desk"), c.get("field")) for c in conflicts)
    in_audit = sorted((r["ticket_id"], r["desk"], r["details"].get("field")) for r in decided)
    report.count("conflict audit rows", len(decided))
    if in_list != in_audit:
        diff(f"conflicts listed {len(in_list)} and audited {len(in_audit)} differ: {_first_gap(in_list, in_audit)}")
    return parked


def _first_gap(a: list[Any], b: list[Any]) -> str:
    only_a = [x for x in a if a.count(x) > b.count(x)]
    only_b = [x for x in b if b.count(x) > a.count(x)]
    return f"only listed {only_a[:3]}, only audited {only_b[:3]}"


def _audit(ends: Endpoints, report: Report) -> None:
    """The sidecar's own audit chain check, as the operator would run it."""
    done = _sidecar_command(ends, "audit", "verify")
    report.count("audit chain verifications")
    if done.returncode != 0:
        report.differences.append(f"audit verify failed ({done.returncode}): {(done.stdout + done.stderr)[-300:]}")


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.chaos_check RUN.json`: the run file bench.chaos writes (plan and endpoints)."""
    args = argv if argv is not None else sys.argv[1:]
    run = json.loads(Path(args[0]).read_text())
    ends = Endpoints(**run["endpoints"])
    report = check(run["plan"], ends)
    print(json.dumps({"checked": report.checked, "differences": report.differences}, indent=2))
    return 1 if report.differences else 0


if __name__ == "__main__":
    raise SystemExit(main())
