"""The chaos run: `python -m bench.chaos --duration S --seed N`.

The devnet node, the Jira and Waldur simulators and the sidecar as a real process (the test kits'
pieces). For `duration` seconds a seeded driver creates tickets on chain and changes them (priority,
status, agent replies) while agents change them at Jira and Waldur (priority, status, public comments);
meanwhile it injects, at random: SIGKILL + restart of the sidecar, a node restart (stop/start on the same
home), desk outages (503 windows), 429 bursts, and lost, duplicated and reordered (held back while later
ones overtake) webhooks: every Jira and Waldur event goes through the lossy sender. Then it stops
injecting, lets everything settle, and hands the plan to bench.chaos_check, the independent checker,
while the sidecar still runs (the checker asks its control API for the conflicts). Conflict rule:
on_chain_wins (see chaos_check for what "agree" means under concurrent writes). Exit status: the checker's.

Status changes follow allowed transitions (the chain's table; a desk's own workflow) among in_progress,
waiting_customer, waiting_support and resolved, on every other ticket: those get no replies, since a
reply moves the status by the chain's own rule and the last write would no longer be the driver's.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from virtengine.support.v1 import query_pb2

from bench.chaos_check import JIRA_STATUS, Endpoints, Report
from devnet.cometbft import DevnetNode
from devnet.driver import ChainDriver
from devnet.jira_sim import JiraSim
from devnet.keys import TestAccount, genesis_app_state
from devnet.support_events import STATUS_NAMES
from devnet.waiting import WaitTimeout, wait_until
from devnet.waldur_sim import WaldurSim
from sidecar.chain.transitions import ALLOWED
from tests.sidecar.sync.inbound_kit import (
    AGENT,
    CUSTOMER,
    JIRA_PRIORITY,
    RECIPIENTS,
    WALDUR_PRIORITIES,
    LossySender,
    Sidecar,
    busy,
    failures,
    linked_keys,
    waldur_issue_of,
)

# the lossy sender's fates, as the summary names them ("late": held back while later events overtake it)
FATES = {"duplicated": "duplicated", "late": "reordered", "lost": "lost"}
ACCOUNTS = ("customer", "customer2", "agent", "sidecar", "outsider")
PRIORITIES = tuple(JIRA_PRIORITY)  # chain priorities
RULE = "on_chain_wins"
SUPPORT_REQUEST = "/virtengine.support.v1.Query/SupportRequest"
# the statuses the driver moves tickets between; never closed, which would end the ticket's changes
STATUS_POOL = ("in_progress", "waiting_customer", "waiting_support", "resolved")
JIRA_POOL = tuple(sorted({JIRA_STATUS[s] for s in STATUS_POOL}))
WALDUR_POOL = ("Open", "Resolved")


@dataclass
class Plan:
    """What the driver and the agents did: the truth the checker compares against."""

    seed: int
    tickets: list[str] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)  # ticket -> Jira key
    uuids: dict[str, str] = field(default_factory=dict)  # ticket -> Waldur uuid
    last_priority: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    status_tickets: set[str] = field(default_factory=set)
    last_status: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))  # desk: its name
    replies: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    actions: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)
    made: int = 0

    def token(self, side: str) -> str:
        self.made += 1
        return f"chaos-{self.seed}-{side}-{self.made}"

    def as_json(self) -> dict[str, Any]:
        return {
            "rule": RULE,
            "tickets": self.tickets,
            "last_priority": dict(self.last_priority),
            "last_status": dict(self.last_status),
            "replies": dict(self.replies),
        }


class Rig:
    """The node, both simulators (webhooks through the lossy sender) and the sidecar process."""

    def __init__(self, home: Path, seed: int) -> None:
        accounts = [TestAccount.from_name(n) for n in ACCOUNTS]
        agents = [a for a in accounts if a.name in ("agent", "sidecar")]
        self.node = DevnetNode(genesis_app_state(accounts, agents=agents), home=home / "node").start()
        self.lossy = [LossySender(dup=0.15, late=0.1, lost=0.05, seed=seed + n) for n in range(2)]  # jira, waldur
        self.jira = JiraSim(validate=True, webhooks=self.lossy[0], search_delay=0.5).start()
        self.waldur = WaldurSim(validate=True, priorities=WALDUR_PRIORITIES, webhooks=self.lossy[1]).start()
        flags = {"sync.conflict_resolution": RULE, "jira.timeout": "5s", "waldur.timeout": "5s"}
        self.sidecar = Sidecar(home, self.node, self.jira, self.waldur, flags)

    def close(self) -> None:
        self.sidecar.kill()
        for sim in (self.jira, self.waldur):
            sim.stop()
        self.node.cleanup()

    def endpoints(self) -> Endpoints:
        return endpoints_of(self.sidecar, self.jira, self.waldur)


def endpoints_of(sidecar: Sidecar, jira: JiraSim, waldur: WaldurSim) -> Endpoints:
    """Where the independent checker reads: the node, each desk with its agent's read credential, and the
    running sidecar's control API and configuration (for the operator's commands)."""
    return Endpoints(
        rpc_url=sidecar.node.rpc_url,
        jira_url=jira.base_url,
        jira_auth=(jira.agent.email, jira.agent_token),
        waldur_url=waldur.api_url,
        waldur_token=str(waldur.agent_token),
        sidecar_db=str(sidecar.db),
        sidecar_env=dict(sidecar.env),
        control=f"127.0.0.1:{sidecar.grpc_port}",
    )


def _link_new(rig: Rig, plan: Plan) -> None:
    """Learn which tickets have both desk issues (from the sidecar's refs and Waldur's remote ids): only
    those get desk-side changes."""
    keys = linked_keys(rig.sidecar.db)
    for tid in plan.tickets:
        if tid in keys and tid not in plan.keys:
            uuid = waldur_issue_of(rig.waldur, tid)
            if uuid:
                plan.keys[tid], plan.uuids[tid] = keys[tid], uuid


def _act(rig: Rig, plan: Plan, rng: random.Random, customer: ChainDriver, agent: ChainDriver) -> None:
    """One random change by one party."""
    roll = rng.random()
    if roll < 0.1 or len(plan.tickets) < 3:
        tid = customer.create_ticket("technical", "normal", {"subject": "chaos", "description": "d"}, RECIPIENTS)
        plan.tickets.append(tid)
        if len(plan.tickets) % 2 == 0:  # every other ticket: status changes are certain to happen
            plan.status_tickets.add(tid)
        plan.actions["chain create"] += 1
        return
    linked = sorted(plan.keys)
    if not linked:
        return
    tid = rng.choice(linked)
    side = rng.choice(("chain", "jira", "waldur"))
    if tid in plan.status_tickets and rng.random() < 0.7:
        _change_status(rig, plan, rng, agent, tid, side)
    elif rng.random() < 0.5 or tid in plan.status_tickets:
        value = rng.choice(PRIORITIES)
        if side == "chain":
            agent.update(tid, priority=value)
        elif side == "jira":
            rig.jira.agent_update(plan.keys[tid], priority=JIRA_PRIORITY[value])
        else:
            rig.waldur.agent_update(plan.uuids[tid], priority=JIRA_PRIORITY[value])
        plan.last_priority[tid][side] = value
        plan.actions[f"{side} priority"] += 1
    else:
        text = plan.token(side)
        if side == "chain":
            agent.reply(tid, f"{text}: please send the logs", RECIPIENTS)
        elif side == "jira":
            rig.jira.agent_comment(plan.keys[tid], f"{text}: please retry", public=True)
        else:
            rig.waldur.agent_comment(plan.uuids[tid], f"{text}: please retry", is_public=True)
        plan.replies[tid].append(text)
        plan.actions[f"{side} reply"] += 1


def _change_status(rig: Rig, plan: Plan, rng: random.Random, agent: ChainDriver, tid: str, side: str) -> None:
    """One status change on one side, along a transition that side allows from where it stands."""
    if side == "chain":
        raw = agent.abci_query(SUPPORT_REQUEST, query_pb2.QuerySupportRequestRequest(ticket_id=tid))
        current = STATUS_NAMES[query_pb2.QuerySupportRequestResponse.FromString(raw).request.status]
        choices = sorted(ALLOWED[current] & set(STATUS_POOL))
        if not choices:
            return
        value = rng.choice(choices)
        agent.update(tid, status=value)
    elif side == "jira":
        value = rng.choice([s for s in JIRA_POOL if s != rig.jira.issue(plan.keys[tid]).status])
        rig.jira.agent_transition(plan.keys[tid], value)  # through the workflow's steps, as a person clicks
    else:
        value = rng.choice([s for s in WALDUR_POOL if s != rig.waldur.get_issue(plan.uuids[tid]).status])
        rig.waldur.agent_set_status(plan.uuids[tid], value)
    plan.last_status[tid][side] = value
    plan.actions[f"{side} status"] += 1


def _inject(rig: Rig, plan: Plan, rng: random.Random, node_restarts: bool) -> None:
    """One random fault (webhook losses run all along through the lossy sender)."""
    roll = rng.random()
    desk = rng.choice((rig.jira, rig.waldur))
    name = "jira" if desk is rig.jira else "waldur"
    if roll < 0.3:
        rig.sidecar.kill()
        rig.sidecar.start()
        plan.injected["sidecar SIGKILL + restart"] += 1
    elif roll < 0.55:
        desk.faults.outage("503", rng.uniform(2.0, 6.0))
        plan.injected[f"{name} 503 outage"] += 1
    elif roll < 0.8:
        desk.faults.inject("429", rng.randint(3, 10))
        plan.injected[f"{name} 429 burst"] += 1
    elif roll < 0.9:
        desk.faults.inject(rng.choice(("500", "503")), rng.randint(1, 4))
        plan.injected[f"{name} 5xx"] += 1
    elif node_restarts:
        rig.node.restart()
        plan.injected["node restart"] += 1


def run(duration: float, seed: int, settle: float, home: Path, node_restarts: bool = True) -> tuple[Plan, Report]:
    rng = random.Random(seed)
    # The faults draw from their own generator: how many actions fit between two faults depends on the
    # machine's speed, so drawing both from one would make the seed fix the actions but not the faults.
    faults = random.Random(f"chaos-faults-{seed}")
    plan = Plan(seed)
    rig = Rig(home, seed)
    try:
        rig.sidecar.start()
        end = time.monotonic() + duration
        next_fault = time.monotonic() + faults.uniform(3, 10)
        with ChainDriver(rig.node.rpc_url, CUSTOMER) as customer, ChainDriver(rig.node.rpc_url, AGENT) as agent:
            while time.monotonic() < end:
                _link_new(rig, plan)
                try:
                    _act(rig, plan, rng, customer, agent)
                except Exception as exc:  # a write refused mid-fault (e.g. the node restarting): counted, retried
                    plan.actions[f"refused: {type(exc).__name__}"] += 1
                    customer.resync()
                    agent.resync()
                if time.monotonic() >= next_fault:
                    _inject(rig, plan, faults, node_restarts)
                    customer.resync()
                    agent.resync()
                    next_fault = time.monotonic() + faults.uniform(3, 10)
                time.sleep(rng.uniform(0.05, 0.3))
        unsettled = _settle(rig, settle)
        for desk, sender in zip(("jira", "waldur"), rig.lossy, strict=True):
            plan.injected.update({f"{desk} webhook {FATES[k]}": v for k, v in sender.fates.items() if k in FATES})
        run_file = home / "chaos-run.json"
        run_file.write_text(json.dumps({"plan": plan.as_json(), "endpoints": rig.endpoints().__dict__}, indent=1))
        report = _check_apart(run_file)  # the sidecar runs, idle: the checker asks it for its conflicts
        if unsettled:
            report.differences.insert(0, unsettled)
        rig.sidecar.stop()
        for desk, sim in (("jira", rig.jira), ("waldur", rig.waldur)):  # the simulators' own contract checks
            report.differences += [f"{desk} contract violation: {v}" for v in list(sim.contract_violations)]
            report.differences += [f"{desk} simulator error: {e}" for e in list(sim.internal_errors)]
        return plan, report
    finally:
        rig.close()


def _check_apart(run_file: Path) -> Report:
    """The checker in a process of its own (bench.chaos_check), while the node and desks still serve: it
    shares nothing with this driver but the run file."""
    command = [sys.executable, "-m", "bench.chaos_check", str(run_file)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    try:
        found = json.loads(done.stdout)
    except json.JSONDecodeError:
        return Report(differences=[f"the checker failed ({done.returncode}): {done.stderr[-2000:]}"])
    return Report(checked=found["checked"], differences=found["differences"])


def _settle(rig: Rig, timeout: float) -> str | None:
    """Stop injecting; wait for the late webhooks, then until the sidecar is idle after a full sweep of each
    desk begun after the last change (the sweep finds what the lost webhooks never announced). None, or
    what it was still doing at the deadline (the checker runs all the same, to show what differs)."""
    for desk in (rig.jira, rig.waldur):
        desk.faults.clear()
    if rig.sidecar.proc is None:
        rig.sidecar.start()
    wait_until(lambda: all(s.idle for s in rig.lossy), timeout=120, what="every (late) webhook to be sent")
    rig.jira.flush_index()
    since = time.time()
    height = rig.node.height()

    doing: list[str | None] = [None]

    def idle() -> bool:
        doing[0] = busy(rig.sidecar.db, height, rig.sidecar.desks, since)
        return doing[0] is None

    for what in ("the sidecar to settle", "a quiet sweep after it settled"):
        try:
            wait_until(idle, timeout=timeout, what=what, interval=0.5)
        except WaitTimeout:
            given_up = failures(rig.sidecar.db)
            return f"not settled after {timeout:.0f} s waiting for {what}: still {doing[0]}; given up: {given_up}"
        since, height = time.time(), rig.node.height()
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of changes and faults")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--settle", type=float, default=300.0, help="seconds allowed to settle afterwards (a deadline)")
    parser.add_argument("--no-node-restarts", action="store_true", help="leave the node running throughout")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        plan, report = run(args.duration, args.seed, args.settle, Path(tmp), not args.no_node_restarts)
    print(
        json.dumps(
            {
                "seed": args.seed,
                "duration": args.duration,
                "rule": RULE,
                "injected": dict(plan.injected),
                "actions": dict(plan.actions),
                "checked": report.checked,
                "differences": report.differences,
            },
            indent=2,
        )
    )
    return 1 if report.differences else 0


if __name__ == "__main__":
    sys.exit(main())
