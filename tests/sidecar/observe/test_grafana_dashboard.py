"""The Grafana dashboard in deploy/grafana/: every panel's expression, run by a real Prometheus scraping
the sidecar of a real devnet (`python -m devnet --prometheus`, as `make devnet` starts it).

Each target must parse and return series, and every metric, label and label value it names must be in
the sidecar's live /metrics (or be a scrape target's `job`/`instance`), so no panel can show "No data"
because of a name that does not exist. One devnet serves the whole module. Its sidecar is paused for
inbound sync (one desk, and every desk) over the control API first: `servicedesk_paused` has series
only while a pause holds, and the pause panel is checked like any other.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from virtengine.servicedesk.v1 import control_pb2, control_pb2_grpc

from devnet.children import python_env
from devnet.waiting import wait_until
from sidecar.observe.metrics import Metrics
from tests.sidecar.observe.support import require_tool
from tests.sidecar.process import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "servicedesk-sidecar.json"
START_TIMEOUT = 240.0  # a cold devnet start on a busy 2-core machine
TARGET_LABELS = frozenset({"job", "instance"})  # added by Prometheus to every scraped series
SCRAPE_SERIES = {"up": TARGET_LABELS}  # series Prometheus makes itself for each target
GRAFANA_BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}


# --- the dashboard --------------------------------------------------------------------------------
def load_dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def all_panels(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Top-level panels and those inside collapsed rows."""
    out: list[dict[str, Any]] = []
    for panel in doc["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def panel_targets() -> list[tuple[str, str, dict[str, Any]]]:
    """(panel title, refId, target) of every query the dashboard runs."""
    return [(p["title"], t["refId"], t) for p in all_panels(load_dashboard()) for t in p.get("targets", [])]


def query_variables(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in doc["templating"]["list"] if v["type"] == "query"]


VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def substitute(expr: str, values: dict[str, str]) -> str:
    """Grafana's template variables replaced as it would; an unknown one fails the test."""

    def one(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        merged = {**GRAFANA_BUILTINS, **values}
        assert name in merged, f"unknown template variable ${name} in {expr}"
        return merged[name]

    return VARIABLE.sub(one, expr)


def regex_value(value: str) -> str:
    """A variable's value in a `=~` matcher: Grafana regex-escapes it; PromQL strings escape backslashes."""
    return re.escape(value).replace("\\", "\\\\")


# --- names a PromQL expression uses ---------------------------------------------------------------
TOKEN = re.compile(
    r"""(?P<space>\s+)
      |(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      |(?P<range>\[[^\]]*\])
      |(?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
      |(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
      |(?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=,(){}])""",
    re.X,
)
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"bool", "and", "or", "unless", "atan2", "inf", "nan"}


@dataclass
class Names:
    """What an expression refers to: selectors as (metric, [(label, op, value)]) and grouping labels."""

    selectors: list[tuple[str, list[tuple[str, str, str]]]] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)


def tokens(expr: str) -> list[tuple[str, str]]:
    """(kind, text) of each token; strings stay whole, and a range `[...]` is one token."""
    out, pos = [], 0
    while pos < len(expr):
        match = TOKEN.match(expr, pos)
        assert match, f"cannot read {expr[pos:]!r} in {expr}"
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            out.append((kind, match.group()))
        pos = match.end()
    return out


def names_of(expr: str) -> Names:
    """A small PromQL reader, enough for dashboard queries; what it cannot read fails the test loudly."""
    found, toks, i = Names(), tokens(expr), 0
    while i < len(toks):
        kind, text = toks[i]
        after = toks[i + 1][1] if i + 1 < len(toks) else ""
        if kind == "ident" and text in GROUPING and after == "(":
            i += 2
            while toks[i][1] != ")":
                if toks[i][0] == "ident":
                    found.grouping.add(toks[i][1])
                i += 1
        elif kind == "ident" and (text in GROUPING | KEYWORDS or after in ("(", "by", "without")):
            pass  # an operator keyword, a function, or an aggregation (`sum by (x) (...)`)
        elif kind == "ident":
            matchers: list[tuple[str, str, str]] = []
            if after == "{":
                i += 2
                while toks[i][1] != "}":
                    if toks[i][1] != ",":
                        (_, label), (_, op), (skind, value) = toks[i : i + 3]
                        assert skind == "string", f"label {label} compared with {value} in {expr}"
                        matchers.append((label, op, ast.literal_eval(value)))
                        i += 2
                    i += 1
            found.selectors.append((text, matchers))
        elif text == "{":
            raise AssertionError(f"a selector without a metric name in {expr}")
        i += 1
    return found


class Exposition:
    """Sample names of a /metrics text, with the labels and label values each one carries."""

    def __init__(self, text: str) -> None:
        self.labels: dict[str, set[str]] = {name: set(labels) for name, labels in SCRAPE_SERIES.items()}
        self.values: dict[tuple[str, str], set[str]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.labels.setdefault(sample.name, set(TARGET_LABELS)).update(sample.labels)
                for label, value in sample.labels.items():
                    self.values.setdefault((sample.name, label), set()).add(value)

    def problems(self, expr: str) -> list[str]:
        """Every metric, label, label value and grouping label of `expr` that the exposition lacks."""
        names, out = names_of(expr), []
        known: set[str] = set()
        for metric, matchers in names.selectors:
            if metric not in self.labels:
                out.append(f"no metric {metric}")
                continue
            known |= self.labels[metric]
            for label, op, value in matchers:
                if label not in self.labels[metric]:
                    out.append(f"{metric} has no label {label}")
                elif label not in TARGET_LABELS and op in ("=", "=~") and re.fullmatch(r"[\w|]+", value):
                    missing = set(value.split("|")) - self.values.get((metric, label), set())
                    out += [f"{metric} never has {label}={v}" for v in sorted(missing)]
        out += [f"no metric of the expression has label {g}" for g in sorted(names.grouping - known)]
        return out


# --- a devnet with Prometheus ---------------------------------------------------------------------
@dataclass
class Devnet:
    proc: subprocess.Popen[str]
    home: Path
    output: list[str] = field(default_factory=list)
    prometheus: str = ""
    metrics: str = ""

    def read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.output)

    def query(self, promql: str) -> dict[str, Any]:
        answer = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": promql}, timeout=10)
        doc: dict[str, Any] = answer.json()
        assert answer.status_code == 200 and doc["status"] == "success", (promql, doc)
        data: dict[str, Any] = doc["data"]
        return data

    def api(self, path: str, **params: str) -> Any:
        answer = httpx.get(f"{self.prometheus}/api/v1/{path}", params=params, timeout=10)
        doc = answer.json()
        assert answer.status_code == 200 and doc["status"] == "success", (path, params, doc)
        return doc["data"]


def pause_inbound(net: Devnet) -> None:
    """Two operators' pauses over the sidecar's gRPC control API: inbound at jira, and inbound at every desk.
    Inbound only, so the sample tickets still reach the desks (outbound events and latency)."""
    port = re.search(r"gRPC 127\.0\.0\.1:(\d+) ", net.text)
    assert port, net.text
    with grpc.insecure_channel(f"127.0.0.1:{port.group(1)}") as channel:
        stub = control_pb2_grpc.ControlStub(channel)
        for desk in ("jira", ""):
            stub.Pause(control_pb2.PauseRequest(direction="inbound", desk=desk, reason="dashboard test"), timeout=10)


@pytest.fixture(scope="module")
def devnet(cometbft_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    """`python -m devnet --prometheus` with two sample tickets and inbound paused (for one desk and for
    every desk), up until Prometheus has scraped a few times and sees both pauses."""
    require_tool("prometheus")
    home = tmp_path_factory.mktemp("devnet")
    argv = [
        sys.executable,
        "-m",
        "devnet",
        "--home",
        str(home),
        "--prometheus",
        "--samples",
        "2",
        "--ticket-every",
        "3600",
        "--status-every",
        "3600",
    ]
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=python_env({**os.environ}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    net = Devnet(proc, home)
    reader = threading.Thread(target=net.read, daemon=True)
    reader.start()
    try:
        wait_until(
            lambda: proc.poll() is not None or "created sample tickets" in net.text,
            timeout=START_TIMEOUT,
            what="the devnet's banner",
            interval=0.2,
        )
        assert proc.poll() is None, f"the devnet exited during start-up:\n{net.text}"
        prometheus = re.search(r"^  prometheus +(http://127\.0\.0\.1:\d+) ", net.text, re.M)
        metrics = re.search(r"metrics (http://127\.0\.0\.1:\d+/metrics)", net.text)
        assert prometheus and metrics, net.text
        net.prometheus, net.metrics = prometheus.group(1), metrics.group(1)
        pause_inbound(net)

        def scraped() -> bool:  # rate() needs two samples in its window; three leave a margin
            result = net.query('count_over_time(servicedesk_health_check{job="servicedesk"}[1m])')["result"]
            return bool(result) and float(result[0]["value"][1]) >= 3

        wait_until(scraped, timeout=60, what="Prometheus to scrape the sidecar three times", interval=0.25)

        def paused() -> bool:  # the health loop sets the gauge every 2 s, then the next scrape reads it
            return len(net.query('servicedesk_paused{job="servicedesk"} == 1')["result"]) == 2

        wait_until(paused, timeout=30, what="Prometheus to see both pauses", interval=0.25)
        yield net
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
            reader.join(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()
    assert "devnet: stopped" in net.text and not re.search(r"devnet: stopping \S+ failed", net.text), net.text
    if net.prometheus:
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{net.prometheus}/-/ready", timeout=2)  # stopped with everything else


@pytest.fixture(scope="module")
def live(devnet: Devnet) -> Exposition:
    """The sidecar's own /metrics, as Prometheus scrapes it."""
    answer = httpx.get(devnet.metrics, timeout=10)
    assert answer.status_code == 200
    return Exposition(answer.text)


@pytest.fixture(scope="module")
def variables(devnet: Devnet) -> dict[str, dict[str, str]]:
    """Values of the dashboard's variables: "one" picks a real value of each, "all" is Grafana's All."""
    one = {"datasource": "prometheus", "job": "servicedesk"}
    one["instance"] = regex_value(devnet.api("query", query="up")["result"][0]["metric"]["instance"])
    one["desk"] = sorted(devnet.api("label/desk/values", **{"match[]": "servicedesk_desk_auth_failed"}))[0]
    every = {v["name"]: v["allValue"] for v in query_variables(load_dashboard())}
    return {"one": one, "all": {"datasource": "prometheus", **every}}


# --- the tests ------------------------------------------------------------------------------------
def test_the_dashboard_is_a_well_formed_grafana_model() -> None:
    doc = load_dashboard()
    assert doc["uid"] and doc["title"] and doc["schemaVersion"] >= 36
    datasource = next(v for v in doc["templating"]["list"] if v["name"] == "datasource")
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    assert {v["name"] for v in query_variables(doc)} >= {"desk", "instance"}
    panels = all_panels(doc)
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    titles = [p["title"] for p in panels if p["type"] != "row"]
    assert len(set(titles)) == len(titles), "panel titles must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("h", "w", "x", "y")), panel["title"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {(grid["x"] + dx, grid["y"] + dy) for dx in range(grid["w"]) for dy in range(grid["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
        if panel["type"] == "row":
            assert "targets" not in panel
            continue
        uses_variable = {"type": "prometheus", "uid": "${datasource}"}
        assert panel["datasource"] == uses_variable, panel["title"]
        assert panel["targets"], panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == uses_variable and target["expr"].strip(), panel["title"]


def test_the_name_check_catches_what_does_not_exist() -> None:
    """The check the panels pass: on the registry's own exposition it flags each kind of wrong name."""
    exposition = Exposition(Metrics().render().decode())
    good = 'sum by (direction, le) (rate(servicedesk_sync_latency_seconds_bucket{service="jira"}[1m]))'
    assert exposition.problems(good) == []
    assert exposition.problems("servicedesk_sync_event_total") == ["no metric servicedesk_sync_event_total"]
    assert exposition.problems('servicedesk_sync_events_total{desk="jira"}') == [
        "servicedesk_sync_events_total has no label desk"
    ]
    assert exposition.problems('servicedesk_api_requests_total{status=~"4xx|429"}') == [
        "servicedesk_api_requests_total never has status=429"
    ]
    assert exposition.problems("sum by (service) (servicedesk_sync_events_total)") == [
        "no metric of the expression has label service"
    ]
    with pytest.raises(AssertionError, match="unknown template variable"):
        substitute("servicedesk_queue_pending[$__nonsense]", {})


@pytest.mark.node
def test_the_variables_find_values(devnet: Devnet) -> None:
    """Each query variable's label_values() (what Grafana asks /api/v1/label/.../values) has values."""
    for variable in query_variables(load_dashboard()):
        match = re.fullmatch(r"label_values\((.+), *(\w+)\)", variable["query"])
        assert match, variable["query"]
        selector = substitute(match.group(1), {"job": ".+", "instance": ".+"})
        values = devnet.api(f"label/{match.group(2)}/values", **{"match[]": selector})
        assert values, variable["name"]
        if variable["name"] == "desk":
            assert set(values) == {"jira", "waldur"}


@pytest.mark.node
@pytest.mark.parametrize(("title", "ref", "target"), panel_targets(), ids=[f"{t}/{r}" for t, r, _ in panel_targets()])
def test_panel_target_runs_on_names_the_sidecar_exports(
    devnet: Devnet, live: Exposition, variables: dict[str, dict[str, str]], title: str, ref: str, target: dict[str, Any]
) -> None:
    for choice in ("one", "all"):
        expr = substitute(target["expr"], variables[choice])
        result = devnet.query(expr)
        assert result["resultType"] == "vector" and result["result"], f"{title}/{ref} shows no data: {expr}"
        for series in result["result"]:
            for label in re.findall(r"\{\{ *(\w+) *\}\}", target.get("legendFormat", "")):
                assert label in series["metric"], f"legend {{{{{label}}}}} is not a label of {series['metric']}"
    assert live.problems(substitute(target["expr"], variables["one"])) == []


@pytest.mark.node
def test_the_sync_panels_show_the_sample_tickets_reaching_the_desks(
    devnet: Devnet, variables: dict[str, dict[str, str]]
) -> None:
    """Not only names that exist: the devnet's sample tickets move the sync, latency and desk API panels, and
    the pauses made at start show on the pause panel."""
    targets = {title: t for title, _, t in panel_targets()}

    def seen(title: str, **labels: str) -> bool:
        expr = substitute(targets[title]["expr"], {**variables["all"], "__rate_interval": "5m"})
        series = devnet.query(expr)["result"]
        return any(labels.items() <= s["metric"].items() and float(s["value"][1]) > 0 for s in series)

    wait_until(
        lambda: seen("Sync events by direction", direction="outbound", status="success"),
        timeout=60,
        what="outbound sync successes on the dashboard",
        interval=0.5,
    )
    assert seen("Desk API requests by status", service="jira", status="2xx")
    assert seen("Desk API requests by status", service="waldur", status="2xx")
    wait_until(  # observed with the success it belongs to; Prometheus may not have scraped both together
        lambda: seen("Sync latency by direction", direction="outbound"),
        timeout=30,
        what="outbound sync latency on the dashboard",
        interval=0.5,
    )
    assert seen("Paused", direction="inbound", desk="all")
    assert seen("Paused", direction="inbound", desk="jira")
    assert not seen("Paused", direction="outbound")


@pytest.mark.node
def test_the_devnets_prometheus_scrapes_the_sidecar_and_keeps_its_files_in_the_run(devnet: Devnet) -> None:
    (run,) = devnet.home.glob("run-*")
    assert (run / "prometheus" / "prometheus.yml").is_file()
    assert (run / "prometheus" / "data").is_dir()
    targets = devnet.api("targets")["activeTargets"]
    assert [(t["scrapeUrl"], t["health"]) for t in targets] == [(devnet.metrics, "up")]
    rules = {r["name"] for g in devnet.api("rules")["groups"] for r in g["rules"]}
    assert "ServiceDeskUnhealthy" in rules  # deploy/prometheus's alert rules are loaded
