"""The chaos run's independent checker: the chain over RPC and the desks over their HTTP APIs, never the
sidecar's database or the simulators' objects, so a sidecar whose own records drift cannot hide.

Input: the run's plan (what was written where, bench/chaos.py writes it as JSON) and the addresses and
credentials of the node and desks. Checked, per chain ticket: exactly one Jira issue (label search) and one
Waldur issue (remote_id filter), one ref per desk on chain naming that issue; the priority agrees on chain
and at Jira (Waldur's priority cannot be edited after create, so it is not compared); every public reply
made anywhere is present exactly once on each side. The conflict rule is on_chain_wins. "Agree" under
concurrent writes: chain and Jira hold the same value, and it is the last value some side wrote (a value
nobody wrote, or one overwritten by a later write on the same side, is a difference); a ticket written on
one side only must end at that side's last value. Parked conflicts cannot happen under on_chain_wins; a
lost one shows as a disagreement.
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

from devnet.driver import ChainDriver, DevAccount
from devnet.envelope import open_envelope, payload_from_proto
from sidecar.desks.jira import ticket_label

SUPPORT_REQUEST = "/virtengine.support.v1.Query/SupportRequest"
SUPPORT_RESPONSES = "/virtengine.support.v1.Query/SupportResponses"
EXTERNAL_REFS = "/virtengine.support.v1.Query/ExternalTicketRefs"
# Jira priority name -> chain priority (the default map); the chaos Waldur uses Jira's names.
CHAIN_PRIORITY = {"Low": "low", "Medium": "normal", "High": "high", "Highest": "urgent"}


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


@dataclass
class Report:
    checked: dict[str, int] = field(default_factory=dict)
    differences: list[str] = field(default_factory=list)

    def count(self, what: str, n: int = 1) -> None:
        self.checked[what] = self.checked.get(what, 0) + n


def _jira_issues(client: httpx.Client, number: str) -> list[dict[str, Any]]:
    jql = f'labels = "{ticket_label(number)}"'
    answer = client.get("/rest/api/3/search/jql", params={"jql": jql, "fields": "priority,labels"})
    answer.raise_for_status()
    return list(answer.json().get("issues") or [])


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


def check(plan: dict[str, Any], ends: Endpoints) -> Report:
    """Every difference between the plan's writes, the chain and the desks (empty: none)."""
    report = Report()
    reader = DevAccount.from_name("customer")
    token = base64.b64encode(f"{ends.jira_auth[0]}:{ends.jira_auth[1]}".encode()).decode()
    with (
        ChainDriver(ends.rpc_url, reader) as chain,
        httpx.Client(base_url=ends.jira_url, headers={"Authorization": f"Basic {token}"}, timeout=20) as jira,
        httpx.Client(headers={"Authorization": f"Token {ends.waldur_token}"}, timeout=20) as waldur,
    ):
        for tid in plan["tickets"]:
            _check_ticket(plan, tid, chain, jira, waldur, ends, report)
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
) -> None:
    diff = report.differences.append
    raw = chain.abci_query(SUPPORT_REQUEST, query_pb2.QuerySupportRequestRequest(ticket_id=tid))
    ticket = query_pb2.QuerySupportRequestResponse.FromString(raw).request
    report.count("chain tickets")
    refs_raw = chain.abci_query(EXTERNAL_REFS, query_pb2.QueryExternalTicketRefsRequest(resource_id=tid))
    refs = query_pb2.QueryExternalTicketRefsResponse.FromString(refs_raw).refs
    by_desk: dict[str, list[str]] = {}
    for ref in refs:
        by_desk.setdefault(ref.external_system, []).append(ref.external_ticket_id)
    issues = _jira_issues(jira, ticket.ticket_number)
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
    # priority: agreement of chain and Jira, on a value the rule allows
    # Waldur's priority is not editable after create (its serializer's protected_fields): the sidecar
    # leaves the agents an internal note instead, so Waldur's own field is not compared.
    values = {
        "chain": ticket.priority,
        "jira": CHAIN_PRIORITY.get((jissue["fields"].get("priority") or {}).get("name", ""), "?"),
    }
    report.count("priority comparisons")
    if len(set(values.values())) != 1:
        diff(f"{tid}: priority differs across sides {values}")
    last = {side: v for side, v in plan["last_priority"].get(tid, {}).items()}
    if last and values["chain"] not in last.values():
        diff(f"{tid}: final priority {values['chain']} is none of the sides' last writes {last}")
    # replies: every public reply once on every side
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


def _audit(ends: Endpoints, report: Report) -> None:
    """The sidecar's own audit chain check, as the operator would run it."""
    command = [sys.executable, "-m", "sidecar", "audit", "verify"]
    env = {**os.environ, **ends.sidecar_env}  # the sidecar's own configuration (its database path among it)
    cwd = Path(ends.sidecar_db).parent
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=cwd)
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
