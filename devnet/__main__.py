"""`make devnet`: the whole product locally, until Ctrl-C, SIGTERM or SIGHUP.

A real CometBFT v0.38.25 node running the x/support app, the Jira and Waldur simulators, and the
sidecar (a real `servicedesk-sidecar run` process) configured against them. Sample tickets are
created at start and one more every --ticket-every seconds; a status line shows what syncs. With
--prometheus, Debian's Prometheus scrapes the sidecar too (the datasource for deploy/grafana/).

However it was started (a terminal, `make`, a script's background job with SIGINT ignored), each
of SIGTERM, SIGINT and SIGHUP stops the sidecar, the node and its app, and the simulators, in
that order; the children die with the devnet even if it is SIGKILLed (see devnet.children).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
from virtengine.servicedesk.v1 import control_pb2, control_pb2_grpc

from devnet.children import ParentWatch, Stopped, StopSignals, signal_main_thread, spawn, stop_process
from devnet.cometbft import DevnetNode, ensure_cometbft
from devnet.driver import ChainDriver, DevAccount
from devnet.jira_sim import JiraSim
from devnet.keys import TestAccount, genesis_app_state
from devnet.node_config import free_port
from devnet.prometheus import SCRAPE_INTERVAL, DevnetPrometheus, PrometheusMissing
from devnet.waiting import wait_until
from devnet.waldur_sim import WaldurSim

ACCOUNTS = ("customer", "customer2", "agent", "sidecar", "outsider")
JIRA_HOOK_SECRET = "devnet-jira-webhook-secret"
WALDUR_HOOK_SECRET = "devnet-waldur-webhook-secret"
# The sidecar's default sync.max_attachment_bytes: the desks here take a file of exactly that size. Waldur's
# limit is a fronting proxy's on the whole request body, so it leaves room for the multipart framing.
ATTACHMENT_LIMIT = 10 * 1024 * 1024
WALDUR_BODY_LIMIT = ATTACHMENT_LIMIT + 64 * 1024
SAMPLES = (
    ("technical", "high", {"subject": "Lease 42 unreachable", "description": "My deployment answers 502."}),
    ("billing", "normal", {"subject": "Invoice for October", "description": "The invoice total looks wrong."}),
    ("account", "low", {"subject": "Rotate my API key", "description": "Please help me rotate my key."}),
)


def write_secrets(home: Path, jira: JiraSim, waldur: WaldurSim) -> Path:
    """The sidecar's secrets as a Kubernetes-style mount: one file per secret, mode 0600."""
    secrets = home / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    values = {
        "jira-api-token": str(jira.api_token),
        "jira-webhook-secret": JIRA_HOOK_SECRET,
        "waldur-token": str(waldur.token),
        "waldur-webhook-secret": WALDUR_HOOK_SECRET,
        "support-private-key": base64.b64encode(hashlib.sha256(b"devnet-box:sidecar").digest()).decode(),
    }
    for name, value in values.items():
        path = secrets / name
        path.write_text(value)
        path.chmod(0o600)
    key_file = home / "signing.key"
    key_file.write_text(hashlib.sha256(b"devnet-account:sidecar").hexdigest())
    key_file.chmod(0o600)
    return secrets


def write_config(home: Path, node: DevnetNode, jira: JiraSim, waldur: WaldurSim, web: int, grpc: int) -> Path:
    """A complete configuration file, the same shape operators deploy with."""
    customer = next(iter(waldur.customers))
    config = {
        "servicedesk": {
            "enabled": True,
            "jira": {
                "base_url": jira.base_url,
                "username": jira.email,
                "project_key": "VESUPPORT",
                "account_id": jira.me.account_id,
                "timeout": "10s",
            },
            "waldur": {"base_url": waldur.api_url, "organization_uuid": customer.hex, "timeout": "10s"},
            "sync": {"sync_interval": "10s", "allow_insecure_http": True},
            "webhook": {"listen_addr": f"127.0.0.1:{web}", "path_prefix": "/webhooks", "require_signature": True},
            "chain": {
                "rpc_url": node.rpc_url,
                "chain_id": node.chain_id,
                "start_height": 1,
                "key_file": str(home / "signing.key"),
                "poll_interval": "1s",
            },
            "grpc": {"listen": f"127.0.0.1:{grpc}"},
            "observe": {"listen": ""},  # /metrics beside health on the one loopback port the banner shows
            "store": {"path": str(home / "sidecar.db")},
            "artifacts": {"backend": "local", "dir": str(home / "artifacts")},
            "logging": {"format": "text"},
            "secrets": {"dir": str(home / "secrets"), "allow_env": False},
        }
    }
    path = home / "config.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


def create_samples(node: DevnetNode, count: int = len(SAMPLES)) -> list[str]:
    """The first `count` sample tickets; the first answered by an agent, the second moved on."""
    recipients = [DevAccount.from_name("customer").box_public, DevAccount.from_name("sidecar").box_public]
    ids = []
    with ChainDriver(node.rpc_url, DevAccount.from_name("customer")) as customer:
        for category, priority, text in SAMPLES[:count]:
            ids.append(customer.create_ticket(category, priority, text, recipients))
    with ChainDriver(node.rpc_url, DevAccount.from_name("agent")) as agent:
        if len(ids) > 0:
            agent.reply(ids[0], "We are looking at the provider's ingress.", recipients)
        if len(ids) > 1:
            agent.update(ids[1], status="in_progress", priority="high")
    return ids


def keep_creating(node: DevnetNode, every: float, stop: threading.Event) -> None:
    recipients = [DevAccount.from_name("customer2").box_public, DevAccount.from_name("sidecar").box_public]
    n = 0
    with ChainDriver(node.rpc_url, DevAccount.from_name("customer2")) as driver:
        while not stop.wait(every):
            n += 1
            try:
                driver.create_ticket(
                    "technical",
                    "normal",
                    {"subject": f"Periodic ticket {n}", "description": "Created by make devnet."},
                    recipients,
                )
            except Exception as exc:  # keep the devnet up; say what failed
                say(f"devnet: could not create periodic ticket {n}: {exc}")


def status_line(node: DevnetNode, jira: JiraSim, waldur: WaldurSim, grpc_port: int) -> str:
    """What the sidecar says over its control API, beside what each desk holds."""
    try:
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            s = control_pb2_grpc.ControlStub(channel).GetStatus(control_pb2.GetStatusRequest(), timeout=3)
        sidecar = (
            f"sidecar cursor {s.cursor_height}/{s.head_height} healthy={s.healthy} "
            f"pending={s.pending_events} failed={s.failed_events}"
        )
        sidecar += " desks=" + ",".join(f"{d.name}:{d.status}" for d in s.desks)
        if s.problems:
            sidecar += f" ({'; '.join(s.problems)})"
    except grpc.RpcError as exc:
        sidecar = f"sidecar control API unavailable ({exc.code().name})"
    return (
        f"height {node.height()}  {sidecar}  jira issues={len(jira.list_issues())}  "
        f"waldur issues={len(waldur.list_issues())}"
    )


def banner(
    rpc_url: str,
    chain_id: str,
    jira: JiraSim,
    waldur: WaldurSim,
    home: Path,
    web: int,
    grpc: int,
    *,
    prometheus: str | None = None,
) -> str:
    def auth(user: str, token: str) -> str:
        return base64.b64encode(f"{user}:{token}".encode()).decode()

    return "\n".join(
        [
            "",
            "devnet is up (Ctrl-C, SIGTERM or SIGHUP stops everything it started)",
            f"  chain        {rpc_url}   chain id {chain_id}   curl {rpc_url}/status",
            f"  jira sim     {jira.base_url}   issues: curl -s -X POST {jira.base_url}/rest/api/3/search/jql "
            f"-H 'Authorization: Basic {auth(jira.email, str(jira.api_token))}' -H 'Content-Type: application/json' "
            '-d \'{"jql":"project = VESUPPORT","fields":["summary","status"]}\'',
            f"  waldur sim   {waldur.api_url}   issues: curl -s {waldur.api_url}/support-issues/ "
            f"-H 'Authorization: Token {waldur.token}'",
            *agent_lines(jira, waldur),
            f"  sidecar      health http://127.0.0.1:{web}/webhooks/health   metrics http://127.0.0.1:{web}/metrics",
            f"               gRPC 127.0.0.1:{grpc} (grpcurl -plaintext 127.0.0.1:{grpc} "
            "virtengine.servicedesk.v1.Control/GetStatus)",
            *prometheus_lines(prometheus),
            f"  files        {home} (config.yaml, secrets/, sidecar.log, sidecar.db, node/"
            + (", prometheus/)" if prometheus else ")"),
            "",
        ]
    )


def prometheus_lines(url: str | None) -> list[str]:
    if url is None:
        return []
    return [
        f"  prometheus   {url}   scrapes the sidecar every {SCRAPE_INTERVAL}; alerts {url}/alerts",
        f"               Grafana: import deploy/grafana/servicedesk-sidecar.json, datasource {url}",
    ]


def start_prometheus(home: Path, web: int, port: int, started: list[Any]) -> str | None:
    """Prometheus scraping the sidecar, recorded in `started` so it stops with the rest; its URL, or
    None when it is not installed or would not start (the devnet runs on without it)."""
    try:
        prometheus = DevnetPrometheus(home / "prometheus", f"127.0.0.1:{web}", port=port)
    except PrometheusMissing as exc:
        say(f"devnet: {exc}; continuing without it")
        return None
    started.append(prometheus)
    try:
        prometheus.start()
    except RuntimeError as exc:
        say(f"devnet: {exc}; continuing without it")
        return None
    if not prometheus.scraped():
        say(f"devnet: Prometheus has not scraped the sidecar yet; see {prometheus.url}/targets")
    return prometheus.url


def agent_lines(jira: JiraSim, waldur: WaldurSim) -> list[str]:
    """Acting as a human agent at each desk: curl with the agent's own credentials, never the sidecar's
    (the simulators attribute a change to the account that made it; the sidecar's own are echoes)."""
    user = f"{jira.agent.email}:{jira.agent_token}"
    issue = f"{jira.base_url}/rest/api/3/issue/<KEY>"
    json_type = "-H 'Content-Type: application/json'"
    adf = '{"type":"doc","version":1,"content":[{"type":"paragraph","content":[{"type":"text","text":"Fixed."}]}]}'
    return [
        f"  jira agent   curl -s -u {user} -X POST {issue}/transitions {json_type} "
        """-d '{"transition":{"id":"11"}}'   # ids: GET .../transitions""",
        f"               curl -s -u {user} -X POST {issue}/comment {json_type} -d '{{\"body\":{adf}}}'",
        f"  waldur agent curl -s -X POST {waldur.api_url}/support-issues/<UUID>/comment/ "
        f"-H 'Authorization: Token {waldur.agent_token}' {json_type} "
        """-d '{"description":"Fixed.","is_public":true}'""",
    ]


def run(args: argparse.Namespace) -> int:
    """Start everything, print status until a stop signal (or the sidecar dies), then stop it all.

    Returns 0 after a clean run, 1 if the sidecar died, 128 + N after signal N (the shell's code)."""
    signals = StopSignals().install()  # first, so that no signal can leave a child behind
    watch = ParentWatch(_parent_stopping).start() if args.stop_with_parent else None
    stop = threading.Event()
    started: list[Any] = []
    sidecar: subprocess.Popen[bytes] | None = None
    code = 0
    try:
        ensure_cometbft()
        home = Path(args.home).resolve() / time.strftime("run-%Y%m%d-%H%M%S")
        home.mkdir(parents=True)
        accounts = [TestAccount.from_name(n) for n in ACCOUNTS]
        app_state = genesis_app_state(accounts, agents=[a for a in accounts if a.name in ("agent", "sidecar")])
        web, grpc_port = free_port(), free_port()
        # Each part is recorded before it starts, so a signal during its start-up still stops it.
        node = DevnetNode(app_state, chain_id=args.chain_id, home=home / "node")
        started.append(node)
        node.start()
        jira = JiraSim(
            webhook_url=f"http://127.0.0.1:{web}/webhooks/jira",
            webhook_secret=JIRA_HOOK_SECRET,
            max_attachment_bytes=ATTACHMENT_LIMIT,
        )
        started.append(jira)
        jira.start()
        waldur = WaldurSim(hook_secret=WALDUR_HOOK_SECRET, upload_limit=WALDUR_BODY_LIMIT)
        started.append(waldur)
        waldur.start()
        write_secrets(home, jira, waldur)
        config = write_config(home, node, jira, waldur, web, grpc_port)
        with (home / "sidecar.log").open("wb") as log:
            sidecar = spawn(
                [sys.executable, "-m", "sidecar", "run", "--config", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_until(lambda: _answers(web), timeout=60, what="the sidecar's health endpoint")
        prometheus = None if args.prometheus is None else start_prometheus(home, web, args.prometheus, started)
        ids = create_samples(node, args.samples)
        say(banner(node.rpc_url, node.chain_id, jira, waldur, home, web, grpc_port, prometheus=prometheus))
        say(f"created sample tickets: {', '.join(ids) or 'none'}")
        creator = threading.Thread(target=keep_creating, args=(node, args.ticket_every, stop), daemon=True)
        creator.start()
        while not stop.wait(args.status_every):
            if sidecar.poll() is not None:
                say(f"devnet: the sidecar exited with {sidecar.returncode}; see {home / 'sidecar.log'}")
                code = 1
                break
            say(status_line(node, jira, waldur, grpc_port))
    except Stopped as exc:
        say(f"\ndevnet: {exc} received, stopping everything it started")
        code = 128 + exc.signum
    finally:
        signals.stopping()  # from here on a second signal is recorded, never raised into the clean-up
        if watch is not None:
            watch.close()
        stop.set()
        shutdown(sidecar, started)
    return code


def shutdown(sidecar: subprocess.Popen[bytes] | None, started: list[Any]) -> None:
    """Stop the sidecar first (it talks to everything else), then the rest in reverse start order.
    One part that fails to stop does not keep the others running."""
    parts: list[tuple[str, Any]] = [("sidecar", lambda: stop_process(sidecar, signal.SIGTERM, timeout=20))]
    parts += [(type(item).__name__, item.stop) for item in reversed(started)]
    for name, stop in parts:
        try:
            stop()
        except Exception as exc:  # report and go on: the next part still holds ports
            say(f"devnet: stopping {name} failed: {exc!r}")
    say("devnet: stopped")


def _parent_stopping(signum: int) -> None:
    """ParentWatch callback (its own thread): stop as if the parent's signal had reached us."""
    say(f"devnet: the parent process (make) is stopping on {signal.Signals(signum).name}")
    signal_main_thread(signum)


def say(text: str) -> None:
    """print() that survives a closed terminal or pipe: a SIGHUP'd terminal answers writes with EIO,
    and the clean-up that follows must not die on its progress messages."""
    with contextlib.suppress(OSError):
        print(text, flush=True)


def _answers(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/webhooks/health", timeout=2)
    except httpx.HTTPError:
        return False
    return True


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (0 picks a free one)")
    return port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devnet", description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=os.environ.get("DEVNET_HOME", ".devnet"), help="where runs keep their files")
    parser.add_argument("--chain-id", default="virtengine-devnet-1")
    parser.add_argument("--ticket-every", type=float, default=20.0, help="seconds between periodic tickets")
    parser.add_argument("--status-every", type=float, default=10.0, help="seconds between status lines")
    parser.add_argument(
        "--samples",
        type=int,
        choices=range(len(SAMPLES) + 1),
        default=len(SAMPLES),
        help="sample tickets created at start",
    )
    parser.add_argument(
        "--prometheus",
        metavar="PORT",
        nargs="?",
        type=_port,
        const=0,
        help="also start Prometheus (Debian's `prometheus`) scraping the sidecar, on PORT or a free port",
    )
    parser.add_argument(
        "--stop-with-parent",
        action="store_true",
        help="stop when the parent dies or is stopping on a signal it does not pass on "
        "(GNU make on SIGINT/SIGHUP; `make devnet` sets this)",
    )
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
