"""Documentation is tested against code: the names the manual and the README give exist, and the reverse.

The names come from the project's own table (tests/guide_names.py). Where ../shared holds the
operations guide the project started from, the table must cover every name that guide gave.
"""

from __future__ import annotations

import argparse
import ast
import functools
import re
from pathlib import Path
from typing import get_args

import httpx
import pytest
import yaml
from starlette.applications import Starlette
from starlette.routing import Route
from virtengine.servicedesk.v1 import control_pb2

from sidecar.cli import build_parser, reference_markdown
from sidecar.config import KEYS_BY_PATH, load_config
from sidecar.config_schema import ConflictStrategy, WebhookConfig
from sidecar.control import cli_commands
from sidecar.control.client import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE
from sidecar.observe.activity import KINDS, WATCH
from sidecar.observe.audit import Auditor
from sidecar.observe.health import HealthState
from sidecar.observe.metrics import Metrics, Service
from sidecar.secrets import SECRET_SPECS
from sidecar.store.db import Store
from sidecar.web.health import CachedFigures, health_report
from sidecar.web.server import build_observe_app, build_web_app
from sidecar.web.webhooks import WebhookReceiver
from tests import guide_names as names

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "docs" / "operations-guide.md").read_text()
README = (ROOT / "README.md").read_text()
ALERTS_FILE = ROOT / "deploy" / "prometheus" / "servicedesk-alerts.yml"
SEED_GUIDE = ROOT.parent / "shared" / "seed" / "000_c3c1b4122157ebde.txt"
NO_SEED = "the operations guide the project started from is not beside this checkout (../shared/seed)"


# (a) every name of the table exists in code


def test_table_keys_exist_and_their_variables_set_them() -> None:
    missing = [path for path in names.CONFIG_KEYS if path not in KEYS_BY_PATH]
    assert not missing, missing
    for env, path in names.KEY_ENV_VARS.items():
        assert KEYS_BY_PATH[path].env == env, (path, KEYS_BY_PATH[path].env)


def test_table_secrets_are_the_sidecars_with_their_variables_and_files() -> None:
    specs = {spec.name: spec for spec in SECRET_SPECS}
    for name, (env, file_name) in names.SECRETS.items():
        assert name in specs, name
        assert specs[name].env == env
        assert file_name in specs[name].file_names


def test_table_limits_are_the_defaults() -> None:
    for path, default in names.LIMIT_DEFAULTS.items():
        assert KEYS_BY_PATH[path].default == default, path


def test_table_conflict_strategies_are_the_accepted_values() -> None:
    assert get_args(ConflictStrategy) == names.CONFLICT_STRATEGIES


async def test_web_app_serves_exactly_the_tables_endpoints(tmp_path: Path) -> None:
    store = await Store.open(str(tmp_path / "sidecar.db"))
    try:
        metrics = Metrics()
        secrets: dict[Service, str | None] = {"jira": "jira-hook-secret", "waldur": "waldur-hook-secret"}
        receiver = WebhookReceiver(WebhookConfig(), secrets, store, Auditor(store), metrics)
        one_port = build_web_app("/webhooks", store, HealthState(), metrics, receiver)
        public = build_web_app("/webhooks", store, HealthState(), metrics, receiver, observe=False)
        observe = build_observe_app("/webhooks", store, HealthState(), metrics)
        assert _served(one_port) == set(names.ENDPOINTS)  # observe.listen empty: everything on one port
        assert _served(public) | _served(observe) == set(names.ENDPOINTS)  # split: each endpoint on one of them
        assert ("GET", "/metrics") not in _served(public)
    finally:
        await store.close()


def _served(app: Starlette) -> set[tuple[str, str]]:
    routes = [route for route in app.routes if isinstance(route, Route)]
    assert len(routes) == len(app.routes)
    return {(method, route.path) for route in routes for method in (route.methods or ()) if method != "HEAD"}


async def test_health_answer_has_the_tables_fields(tmp_path: Path) -> None:
    store = await Store.open(str(tmp_path / "sidecar.db"))
    try:
        report = await health_report(CachedFigures(store), HealthState(), Metrics())
    finally:
        await store.close()
    assert tuple(report) == names.HEALTH_FIELDS


async def test_verbose_health_has_the_tables_inbound_fields(tmp_path: Path) -> None:
    store = await Store.open(str(tmp_path / "sidecar.db"))
    try:
        app = build_observe_app("/webhooks", store, HealthState(), Metrics())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://observe") as client:
            answer = (await client.get("/webhooks/health", params={"verbose": "1"})).json()
    finally:
        await store.close()
    assert tuple(answer["inbound"]) == names.INBOUND_HEALTH_FIELDS


def _exposed(metrics: Metrics) -> dict[str, set[str] | None]:
    """Exposed metric name -> the label names its samples carry (a histogram's `le` left out); None for a
    family with no series yet (its label values are only known at run time)."""
    suffix = {"counter": "_total", "info": "_info"}
    exposed: dict[str, set[str] | None] = {}
    for family in metrics.registry.collect():
        labels = {label for sample in family.samples for label in sample.labels if label != "le"}
        exposed[family.name + suffix.get(family.type, "")] = labels if family.samples else None
    return exposed


def test_table_metrics_are_registered_with_their_labels() -> None:
    exposed = _exposed(Metrics())
    for name, labels in names.METRICS.items():
        assert name in exposed, name
        assert exposed[name] == set(labels), (name, exposed[name])  # every series exists from start


def test_alert_rules_file_holds_the_tables_alerts() -> None:
    groups = yaml.safe_load(ALERTS_FILE.read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    shipped = {r["alert"]: (r["expr"], r["for"], r["labels"]["severity"], r["annotations"]["summary"]) for r in rules}
    assert shipped == names.ALERTS
    used = {m for expr, *_ in names.ALERTS.values() for m in re.findall(r"servicedesk_[a-z_]+", expr)}
    assert used and used <= set(names.METRICS), used - set(names.METRICS)


# (b) every name of the table, and every metric the sidecar exports, is in the manual


def _guide_needles() -> list[str]:
    needles = [f"`{path}`" for path in names.CONFIG_KEYS]
    needles += sorted(names.env_vars())
    needles += [f"`{name}`" for name in names.SECRETS] + [f"`{file}`" for _, file in names.SECRETS.values()]
    needles += [f"`{method} {path}`" for method, path in names.ENDPOINTS]
    needles += [f"`{field}`" for field in names.HEALTH_FIELDS + names.INBOUND_HEALTH_FIELDS]
    needles += [f"`{name}{{{','.join(labels)}}}`" if labels else f"`{name}`" for name, labels in names.METRICS.items()]
    needles += [f"alert: {alert}" for alert in names.ALERTS] + [f"expr: {a[0]}" for a in names.ALERTS.values()]
    needles += [f"`{strategy}`" for strategy in names.CONFLICT_STRATEGIES]
    return needles


@pytest.mark.parametrize("needle", _guide_needles())
def test_the_manual_names_it(needle: str) -> None:
    assert needle in GUIDE


def test_every_exported_metric_is_in_the_manual() -> None:
    missing = sorted(name for name in _exposed(Metrics()) if not re.search(rf"`{name}[`{{]", GUIDE))
    assert not missing, missing


def test_guide_yaml_is_accepted_as_is(tmp_path: Path) -> None:
    block = re.search(r"### YAML Configuration\n.*?```yaml\n(.*?)```", GUIDE, re.S)
    assert block is not None
    path = tmp_path / "guide.yaml"
    path.write_text(block.group(1))
    secrets = {env: f"value-{name}" for name, (env, _) in names.SECRETS.items()}
    config = load_config(path, environ=secrets)
    assert config.settings.retry.max_backoff == 300.0
    assert config.settings.webhook.rate_limit_per_second == 100
    leaves = _leaf_paths(yaml.safe_load(block.group(1))["servicedesk"])
    assert set(names.CONFIG_KEYS) <= set(leaves), set(names.CONFIG_KEYS) - set(leaves)
    assert [p for p in leaves if not config.sources[p].startswith(str(path))] == []


def _leaf_paths(doc: dict[str, object], prefix: str = "") -> list[str]:
    out: list[str] = []
    for key, value in doc.items():
        if isinstance(value, dict):
            out += _leaf_paths(value, f"{prefix}{key}.")
        else:
            out.append(prefix + key)
    return out


# (c) the table covers the guide the project started from, and nothing here is a copy of it


def _seed() -> str:
    if not SEED_GUIDE.exists():
        pytest.skip(NO_SEED)
    return SEED_GUIDE.read_text()


def _found(pattern: str, text: str, flags: int = 0) -> set[str]:
    found = set(re.findall(pattern, text, flags))
    assert found, f"nothing in the seed guide matches {pattern!r}: has it changed shape?"
    return found


def test_the_table_covers_the_seed_guides_names() -> None:
    seed = _seed()
    yaml_block = re.search(r"### YAML Configuration\s+```yaml\n(.*?)```", seed, re.S)
    health_block = re.search(r"### Health Check Endpoint.*?```json\n(.*?)```", seed, re.S)
    assert yaml_block is not None and health_block is not None
    assert _found(r"\bVIRTENGINE_SERVICEDESK_[A-Z_]+\b", seed) <= names.env_vars()
    assert set(_leaf_paths(yaml.safe_load(yaml_block.group(1))["servicedesk"])) <= set(names.CONFIG_KEYS)
    assert _found(r"\bservicedesk_[a-z_]+\b", seed) <= set(names.METRICS)
    assert _found(r"- `(servicedesk_[a-z_]+\{[a-z,]+\})`", seed) <= {
        f"{n}{{{','.join(labels)}}}" for n, labels in names.METRICS.items()
    }
    assert _found(r"/webhooks/[a-z]+", seed) <= {path for _, path in names.ENDPOINTS}
    assert _found(r"\b([a-z_]+)=<", seed) <= set(names.SECRETS)
    assert _found(r"^\s+([a-z-]+): <base64>", seed, re.M) <= {file for _, file in names.SECRETS.values()}
    assert set(yaml.safe_load(health_block.group(1))) == set(names.HEALTH_FIELDS)
    assert _found(r"expr: (.+)", seed) <= {expr for expr, *_ in names.ALERTS.values()}
    assert _found(r"alert: (\w+)", seed) <= set(names.ALERTS)
    assert _found(r"^\| `(\w+)` \|", seed, re.M) == set(names.CONFLICT_STRATEGIES)
    assert _found(r'^grep "([^"]+)" ', seed, re.M) == {*names.LOG_GREPS, names.AUDIT_GREP}


SKIP_DIRS = {".git", ".venv", ".devnet", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", "node_modules"}


def test_no_file_in_the_checkout_is_a_copy_of_the_seed_guide() -> None:
    seed = _seed().encode()
    copies = []
    for path in ROOT.rglob("*"):
        if SKIP_DIRS.intersection(path.relative_to(ROOT).parts) or not path.is_file() or path.is_symlink():
            continue
        if path.stat().st_size == len(seed) and path.read_bytes() == seed:
            copies.append(str(path.relative_to(ROOT)))
    assert copies == []


def _prose(markdown: str) -> list[str]:
    """Sentences outside code blocks and tables, list markers and emphasis removed, of six words or more."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.S)
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith(("|", "#"))]
    lines = [re.sub(r"^(?:[-*]|\d+\.)\s+", "", line).replace("**", "") for line in lines]
    sentences = [s.strip() for line in lines for s in re.split(r"(?<=[.:!?])\s+|\s+-\s+", line)]
    return [s for s in sentences if len(s.split()) >= 6]


def test_the_manual_is_in_its_own_words() -> None:
    seed_sentences = _prose(_seed())
    assert seed_sentences
    guide = " ".join(GUIDE.split()).replace("**", "")
    borrowed = [s for s in seed_sentences if " ".join(s.split()) in guide]
    assert borrowed == []


# README


def test_readme_reference_is_generated_from_the_schema() -> None:
    block = re.search(r"<!-- config-reference:start -->\n(.*?)<!-- config-reference:end -->", README, re.S)
    assert block is not None
    assert block.group(1).strip() == reference_markdown().strip(), "README is stale: run `make docs`"


def test_readme_names_the_commands_and_endpoints() -> None:
    for needle in (
        "make devnet",
        "make test",
        "make run",
        "/webhooks/health",
        "/metrics",
        "127.0.0.1:8481",
        "config check",
        "examples/servicedesk-sidecar.service",
    ):
        assert needle in README


def test_the_example_configuration_is_valid(tmp_path: Path) -> None:
    """examples/config.yaml is what operators copy: it must pass `config check` once the secrets exist."""
    for name in ("jira-api-token", "jira-webhook-secret", "waldur-token", "waldur-webhook-secret"):
        (tmp_path / name).write_text(f"example-{name}\n")
        (tmp_path / name).chmod(0o600)  # a secret file others can read is refused
    config = load_config(ROOT / "examples" / "config.yaml", environ={}, flags={"secrets.dir": str(tmp_path)})
    settings = config.settings
    assert settings.jira.base_url and settings.waldur.base_url and settings.webhook.require_signature
    assert settings.jira.assignee_map and settings.waldur.assignee_map


# The control API and its CLI (issue #14): every command and call documented, each with an example


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(subparsers) == 1
    return dict(subparsers[0].choices)


def _long_options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings if option.startswith("--")}


COMMANDS = _subcommands(build_parser())
# A control command dials the sidecar (--control); `status` has no options of its own, so what it takes
# every control command takes (--json, --timeout, the dial options).
CONTROL_COMMANDS = sorted(name for name, sub in COMMANDS.items() if "--control" in _long_options(sub))
CONTROL_COMMON = _long_options(COMMANDS["status"])
CONTROL_METHODS = set(control_pb2.DESCRIPTOR.services_by_name["Control"].methods_by_name)
# README rows of the steering table: | `servicedesk-sidecar <name> <usage>` | `<Call>` | what it does |
STEERING_ROW = re.compile(r"^\| `servicedesk-sidecar ([a-z-]+)([^`]*)` \| `([A-Za-z]+)` \|", re.M)


def test_the_parsers_control_commands_are_the_handled_ones() -> None:
    assert sorted(cli_commands.COMMANDS) == CONTROL_COMMANDS


def test_readme_table_has_a_row_per_control_command_with_its_options_and_call() -> None:
    rows = {name: (usage, call) for name, usage, call in STEERING_ROW.findall(README)}
    assert sorted(rows) == CONTROL_COMMANDS
    assert {call for _, call in rows.values()} == CONTROL_METHODS  # every call of the service has its command
    for name, (usage, _) in rows.items():
        own = _long_options(COMMANDS[name]) - CONTROL_COMMON
        assert {option for option in own if option not in usage} == set(), name


@pytest.mark.parametrize("name", CONTROL_COMMANDS)
def test_readme_shows_an_example_of_each_control_command(name: str) -> None:
    assert re.search(rf"^\$ servicedesk-sidecar {re.escape(name)}( |$)", README, re.M), name


def test_readme_shows_make_sync_and_the_db_commands() -> None:
    assert "make sync TICKET=" in README and re.search(r"^\$ make sync TICKET=", README, re.M)
    for sub in _subcommands(COMMANDS["db"]):
        assert re.search(rf"^\$ servicedesk-sidecar db {sub}( |$)", README, re.M), sub


def test_readme_documents_the_control_exit_codes() -> None:
    for code in (EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE):
        assert f"\n| {code} | " in README, code


def test_the_manual_names_every_control_call_with_its_command() -> None:
    rows = dict(re.findall(r"^\| `([A-Za-z]+)` \| `([a-z-]+)[ `]", GUIDE, re.M))
    assert {call for call in rows if call in CONTROL_METHODS} == CONTROL_METHODS
    assert {rows[call] for call in CONTROL_METHODS} == set(CONTROL_COMMANDS)


def test_the_manual_lists_every_watch_kind() -> None:
    for kind in (*KINDS, WATCH):
        assert f"| `{kind}` |" in GUIDE, kind
        assert f"`{kind}`" in README or kind == WATCH, kind


def test_the_manual_names_every_audit_event_the_control_calls_write() -> None:
    source = "\n".join(path.read_text() for path in (ROOT / "sidecar" / "control").glob("*.py"))
    events = set(re.findall(r'AuditEntry\(\s*"([a-z_]+)"', source))
    assert {"paused", "resumed", "manual_sync", "reconciled", "control_refused"} <= events
    assert sorted(event for event in events if f"`{event}`" not in GUIDE) == []


# Attachments (issue #15): every audit row, detail key and reason code the engines write is in the manual

ATTACH_ENGINES = [ROOT / "sidecar" / "sync" / f"{name}.py" for name in ("attach_out", "attach_in", "artifact_gc")]
# Where reason codes come from: the engines, the content checks, the desk clients' refusals and the note texts.
REASON_SOURCES = [
    *ATTACH_ENGINES,
    ROOT / "sidecar" / "sync" / "withheld.py",
    ROOT / "sidecar" / "artifacts" / "content.py",
    ROOT / "sidecar" / "desks" / "files.py",
    ROOT / "sidecar" / "desks" / "waldur_files.py",
]
REASON_PATTERNS = (
    r'(?:_Withhold|Refused|_Retry)\(\s*"([a-z_]+)"',  # withheld / refused / retried with a code
    r'\breason="([a-z_]+)"',  # a row finished with a code
    r'^[A-Z_]+ = "([a-z_]+)"  # AttachmentRefused\.reason',  # desks/files.py constants
)


def _reason_codes() -> set[str]:
    """Every reason code written in the sources: the desk note's table (withheld.py _WHY), the intake's final
    refusals (attach_in.py REFUSALS) and Waldur's refusals (waldur_files.py _refusal_reason) included."""
    codes: set[str] = set()
    for path in REASON_SOURCES:
        text = path.read_text()
        for pattern in REASON_PATTERNS:
            codes |= set(re.findall(pattern, text, re.M))
        for table in re.findall(r"^(?:_WHY|REFUSALS) = (?:frozenset\(\s*)?\{\n(.*?)^\s*\}", text, re.S | re.M):
            codes |= set(re.findall(r'^\s+"([a-z_]+)"[:,]', table, re.M))
        refusals = re.search(r"^def _refusal_reason\(.*?(?=^def |\Z)", text, re.S | re.M)  # Waldur's 400 texts
        if refusals is not None:
            codes |= set(re.findall(r'return "([a-z_]+)"', refusals.group(0)))
    return codes


def _attachments_section() -> str:
    section = re.search(r"^### Attachments\n(.*?)^## ", GUIDE, re.S | re.M)
    assert section is not None
    return section.group(1)


def test_the_manual_names_every_attachment_audit_event_with_its_details() -> None:
    source = "\n".join(path.read_text() for path in ATTACH_ENGINES)
    written = set(re.findall(r'"((?:attachment|artifacts)_[a-z_]+)"', source))
    assert written == set(names.ATTACHMENT_AUDIT)  # a new event needs its row in the manual's table
    section = _attachments_section()
    for event, keys in names.ATTACHMENT_AUDIT.items():
        assert f"| `{event}` |" in section, event
        assert f"`{event}`" in GUIDE.split("## How tickets move")[0], event  # and in the audit log chapter
        for key in keys:
            assert f'"{key}"' in source, (event, key)  # the key is one the code writes
            assert f"`{key}`" in section, (event, key)


def test_the_manual_names_every_attachment_reason_code() -> None:
    codes = _reason_codes()
    assert {"too_large", "type_not_allowed", "type_mismatch", "hash_mismatch", "missing", "corrupt"} <= codes
    assert {"recipient_key_unknown", "response_cap_reached", "ticket_gone", "deleted_at_desk", "empty"} <= codes
    section = _attachments_section()
    assert sorted(code for code in codes if f"`{code}`" not in section) == []


def test_the_docs_say_how_attachments_are_set_up_and_tested() -> None:
    for text in (README, GUIDE):
        assert not re.search(r"not (?:built|used) yet[^\n]*\n?[^\n]*attachment", text, re.I)
        assert "attachment_created" in text  # Waldur's hook must be subscribed to it
    for needle in ("## Attachments", "make seaweedfs", "SIDECAR_REQUIRE_SEAWEEDFS=1", "`attachment_path`"):
        assert needle in README, needle
    for key in (k.path for k in KEYS_BY_PATH.values() if k.path.startswith("artifacts.")):
        assert f"`{key}`" in README and f"`{key}`" in GUIDE, key


def test_the_example_configuration_keeps_attachments_local(tmp_path: Path) -> None:
    for name in ("jira-api-token", "jira-webhook-secret", "waldur-token", "waldur-webhook-secret"):
        (tmp_path / name).write_text(f"example-{name}\n")
        (tmp_path / name).chmod(0o600)
    config = load_config(ROOT / "examples" / "config.yaml", environ={}, flags={"secrets.dir": str(tmp_path)})
    settings = config.settings
    assert settings.sync.sync_attachments and settings.artifacts.backend == "local"
    assert settings.artifacts.dir == "/var/lib/servicedesk-sidecar/artifacts"
    assert config.sources["artifacts.backend"].startswith(str(ROOT / "examples"))  # set there, not defaulted


def test_readme_benchmark_figures_are_the_latest_results() -> None:
    from bench.readme import BLOCK, render

    block = BLOCK.search((ROOT / "README.md").read_text())
    assert block is not None, "README has no bench-figures block"
    assert block.group(1) == render(), "README's benchmark figures are stale: run `python -m bench.readme`"


# Log lines: the messages the manual names are the ones the code logs


LOG_LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}


@functools.cache
def logged_messages() -> frozenset[str]:
    """The literal first argument of every `log.<level>(...)` call in sidecar/ (parsed once per run)."""
    found: set[str] = set()
    for path in (ROOT / "sidecar").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in {"log", "logger"}
            ):
                continue
            # log.info(msg, ...) and the like; log.log(level, msg, ...)
            position = 0 if node.func.attr in LOG_LEVELS else 1 if node.func.attr == "log" else None
            if position is None or len(node.args) <= position:
                continue
            message = node.args[position]
            if isinstance(message, ast.Constant) and isinstance(message.value, str):
                found.add(message.value)
    return frozenset(found)


def is_logged(line: str, logged: frozenset[str]) -> bool:
    """`line` is a message logged (its %-placeholders filled), or a prefix of one when it ends in "..."."""
    prefix = line.endswith("...")
    stem = line[:-3].rstrip() if prefix else line
    for message in logged:
        pattern = re.escape(message).replace("%s", ".+").replace("%d", "[0-9]+")
        if re.fullmatch(pattern, stem) or (prefix and message.startswith(stem)):
            return True
    return False


def _ticked(text: str) -> list[str]:
    return [" ".join(name.split()) for name in re.findall(r"`([^`]+)`", text)]


def listed_sync_failures() -> set[str]:
    """The log lines of the manual's list under "logs a line with `sync failed` in it"."""
    section = GUIDE.split("logs a line with `sync failed` in it", 1)[1].split("\n\n", 2)[1]
    return {_ticked(line)[0] for line in section.splitlines() if line.startswith("- ")}


def inbound_log_table() -> set[str]:
    """The log lines of the manual's inbound table (its first column)."""
    table = GUIDE.split("| log line | when |", 1)[1].split("\n\n", 1)[0]
    return {line for row in table.splitlines()[2:] for line in _ticked(row.split(" | ", 1)[0])}


def documented_log_lines() -> set[str]:
    """Every log message the manual names: in jq filters, after "log" or "log line", in the inbound log table,
    in the list of sync failures and in the attachments' "Log lines:" paragraph. A name ending in "..." is
    a prefix."""
    lines = set(re.findall(r'\.msg == "([^"]+)"', GUIDE))
    lines |= {f"{prefix} ..." for prefix in re.findall(r'startswith\("([^"]+)"\)', GUIDE)}
    for match in re.finditer(r"\blog(?: line)? ((?:`[^`]+`(?: / | or )?)+)", GUIDE):
        lines.update(_ticked(match.group(1)))
    lines.update(inbound_log_table())
    lines.update(listed_sync_failures())
    attachments = GUIDE.split("\nLog lines: ", 1)[1].split("There is no attachment metric", 1)[0]
    lines.update(_ticked(attachments))
    return lines


def test_every_log_line_the_manual_names_is_logged() -> None:
    logged = logged_messages()
    documented = documented_log_lines()
    assert {"webhook rejections", "external callback recorded", "attachment sync failed"} <= documented  # each source
    assert sorted(line for line in documented if not is_logged(line, logged)) == []


def test_the_guides_log_greps_find_what_it_says() -> None:
    """`grep "sync failed"` finds every failed sync: each message of the manual's list of them, and no message
    that is not about a failure; `grep "external callback"` finds the inbound table's lines and no other."""
    logged = logged_messages()
    listed = listed_sync_failures()
    assert listed == {m for m in logged if "sync failed" in m}
    table = inbound_log_table()
    assert {m for m in logged if "external callback" in m} == {line for line in table if "external callback" in line}
    for pattern in names.LOG_GREPS:
        assert f'grep "{pattern}"' in GUIDE, pattern
    assert "audit export" in GUIDE
