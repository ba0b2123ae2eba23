"""The servicedesk-sidecar command. The only place that maps errors to exit codes.

Exit codes: 0 ok, 1 runtime failure, 2 invalid configuration or usage, 3 the running sidecar cannot be
reached (commands that talk to it over gRPC).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

import sidecar
from sidecar.config import KEYS, Config, load_config
from sidecar.control import cli_commands
from sidecar.control.tables import print_table
from sidecar.errors import ConfigError, SidecarError, StoreError
from sidecar.observe.audit import export_lines, parse_time_arg
from sidecar.observe.logs import setup_logging
from sidecar.secrets import SECRET_SPECS
from sidecar.store.audit import open_audit_reader, verify_audit
from sidecar.store.export import CONTENT_HELP, QueryRefused, ReadOnlyStore, write_rows

log = logging.getLogger("sidecar")


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="FILE", help="YAML configuration file")
    group = parser.add_argument_group("settings (each overrides its VIRTENGINE_SERVICEDESK_* variable)")
    for spec in KEYS:
        group.add_argument(spec.flag, dest=f"key:{spec.path}", metavar="VALUE", help=f"{spec.path}: {spec.help}")


def _add_control_flags(parser: argparse.ArgumentParser) -> None:
    """--control, or the config whose grpc.listen it defaults to (read only when --control is not given)."""
    parser.add_argument(
        "--control",
        metavar="ADDRESS",
        help="the sidecar's control address: host:port or unix:///path (default: grpc.listen of --config, "
        "or of VIRTENGINE_SERVICEDESK_GRPC_LISTEN, else 127.0.0.1:8481)",
    )
    parser.add_argument("--config", "-c", metavar="FILE", help="YAML configuration file of the sidecar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="servicedesk-sidecar",
        description="Sync VirtEngine support tickets with Jira and Waldur.",
        epilog="exit codes: 0 ok, 1 failed (a check failed, the sidecar refused a call), 2 invalid configuration "
        "or usage, 3 the running sidecar cannot be reached (control commands; see `COMMAND --help`)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {sidecar.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="run the sidecar until SIGINT/SIGTERM")
    _add_config_flags(run)
    config = commands.add_parser("config", help="inspect the configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    check = config_commands.add_parser("check", help="validate and print the effective configuration")
    check.add_argument("--format", choices=("text", "json"), default="text")
    _add_config_flags(check)
    config_commands.add_parser("reference", help="print the configuration reference as a Markdown table")
    audit = commands.add_parser("audit", help="check and export the audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="SUBCOMMAND")
    verify = audit_commands.add_parser("verify", help="check the hash chain; exit 1 naming the first bad row")
    _add_config_flags(verify)
    export = audit_commands.add_parser("export", help="write audit rows as JSON lines")
    export.add_argument("--since", required=True, help="a duration back from now (24h, 7d) or an ISO-8601 time")
    export.add_argument("--until", help="a duration back from now or an ISO-8601 time (default: now)")
    export.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of standard output")
    _add_config_flags(export)
    desk = commands.add_parser("desk", help="check the configured desks")
    desk_commands = desk.add_subparsers(dest="desk_command", required=True, metavar="SUBCOMMAND")
    desk_check = desk_commands.add_parser(
        "check", help="report what the sidecar needs from each configured desk; exit 2 when one is not usable"
    )
    desk_check.add_argument("--json", action="store_true", help="print one JSON document (for scripts)")
    desk_check.add_argument(
        "--public-url", metavar="URL", default="", help="the sidecar's public base URL, for the webhook URLs"
    )
    _add_config_flags(desk_check)
    cli_commands.add_commands(commands, _add_control_flags)
    _add_db_commands(commands)
    keys = commands.add_parser("keys", help="inspect the chain signing key")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="SUBCOMMAND")
    show = keys_commands.add_parser("show", help="print the signer's address and public key (never the private key)")
    _add_config_flags(show)
    return parser


def _flags(args: argparse.Namespace) -> dict[str, object]:
    return {
        name.removeprefix("key:"): value
        for name, value in vars(args).items()
        if name.startswith("key:") and value is not None
    }


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config, flags=_flags(args))


def describe(config: Config) -> dict[str, Any]:
    """The effective configuration with the source of each value; secrets show only where they came from."""
    values: dict[str, Any] = {}
    settings: Any = config.settings
    for spec in KEYS:
        value: Any = settings
        for part in spec.path.split("."):
            value = getattr(value, part)
        values[spec.path] = {
            "value": list(value) if isinstance(value, tuple) else value,
            "source": config.sources[spec.path],
        }
    secrets = {
        spec.name: {
            "value": "<redacted>" if spec.name in config.secrets else None,
            "source": config.secrets[spec.name].source if spec.name in config.secrets else "unset",
        }
        for spec in SECRET_SPECS
    }
    return {"file": config.file, "settings": values, "secrets": secrets, "warnings": list(config.warnings)}


def _print_check(config: Config, fmt: str) -> None:
    doc = describe(config)
    if fmt == "json":
        print(json.dumps(doc, indent=2))
        return
    print(f"configuration OK ({config.file or 'no file'})")
    width = max(len(k) for k in doc["settings"]) + 1
    for path, item in doc["settings"].items():
        print(f"  {path:<{width}} = {json.dumps(item['value']):<28} [{item['source']}]")
    print("secrets:")
    for name, item in doc["secrets"].items():
        shown = "<redacted>" if item["value"] else "(unset)"
        print(f"  {name:<{width}} = {shown:<28} [{item['source']}]")
    for warning in doc["warnings"]:
        print(f"warning: {warning}")


def reference_markdown() -> str:
    """Every key, its variable, flag and default: the README's configuration reference."""
    rows = ["| key (under `servicedesk:`) | environment variable | flag | default | meaning |", "|---|---|---|---|---|"]
    for spec in KEYS:
        default = json.dumps(list(spec.default) if isinstance(spec.default, tuple) else spec.default)
        if spec.kind == "map":
            default = ",".join(f"{k}={v}" for k, v in spec.default)
        elif spec.kind == "duration":
            default = f"{spec.default:g}s"
        allowed = f" ({', '.join(spec.choices)})" if spec.choices else ""
        rows.append(f"| `{spec.path}` | `{spec.env}` | `{spec.flag}` | `{default}` | {spec.help}{allowed} |")
    rows += [
        "",
        "| secret | secrets-dir file | Vault key | environment variable (warned) | meaning |",
        "|---|---|---|---|---|",
    ]
    for secret in SECRET_SPECS:
        rows.append(
            f"| `{secret.name}` | `{secret.file_names[0]}` | `{secret.name}` | `{secret.env}` | {secret.help} |"
        )
    return "\n".join(rows)


def _audit(args: argparse.Namespace, config: Config) -> int:
    """`audit verify` and `audit export`: read-only, safe next to a running sidecar."""
    now = time.time()
    try:
        since = parse_time_arg(args.since, now) if args.audit_command == "export" else None
        until = parse_time_arg(args.until, now) if args.audit_command == "export" and args.until else None
    except ValueError as exc:
        print(f"servicedesk-sidecar: {exc}", file=sys.stderr)
        return 2
    try:
        conn = open_audit_reader(config.settings.store.path)
    except SidecarError as exc:
        print(f"servicedesk-sidecar: {exc}", file=sys.stderr)
        return 1
    try:
        conn.execute("BEGIN")  # one snapshot, even while the sidecar appends
        if args.audit_command == "verify":
            verdict = verify_audit(conn)
            if not verdict.ok:
                print(f"audit chain broken at row {verdict.bad_id}: {verdict.reason}", file=sys.stderr)
                return 1
            print(f"audit chain intact: {verdict.checked} rows")
            return 0
        count = 0
        with _private_output(args.output) if args.output else contextlib.nullcontext(sys.stdout) as out:
            for line in export_lines(conn, since, until):
                out.write(line + "\n")
                count += 1
        print(f"exported {count} audit rows", file=sys.stderr)
        return 0
    except OSError as exc:
        print(f"servicedesk-sidecar: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return 1
    except sqlite3.DatabaseError as exc:
        print(f"servicedesk-sidecar: cannot read the audit log: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()


def _add_db_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = commands.add_parser(
        "db",
        help="read the store file directly (read-only; safe while the sidecar runs)",
        description="Read the SQLite store (store.path) read-only: tables, one SELECT, or a table's rows. "
        f"Columns that can hold ticket content or secrets ({CONTENT_HELP}) are left out of exports and "
        "refused in queries unless --include-content is given.",
    )
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="SUBCOMMAND")
    tables = db_commands.add_parser("tables", help="every table and its row count")
    tables.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    query = db_commands.add_parser("query", help="run one read-only SELECT; exit 2 for anything else")
    query.add_argument("sql", metavar="SQL", help='e.g. "SELECT state, count(*) FROM jobs GROUP BY state"')
    query.add_argument("--format", choices=("table", "json", "jsonl", "csv"), default="table")
    export = db_commands.add_parser("export", help="write one table's rows as JSON, JSON lines or CSV")
    export.add_argument("table", metavar="TABLE", help="a table name (see `db tables`)")
    export.add_argument("--format", choices=("json", "jsonl", "csv"), default="json")
    export.add_argument("--where", metavar="SQL", help="a filter, e.g. \"state = 'dead'\"")
    export.add_argument("--output", "-o", metavar="FILE", help="write to FILE (created 0600) instead of stdout")
    for parser in (tables, query, export):
        if parser is not tables:
            parser.add_argument(
                "--include-content", action="store_true", help=f"also read {CONTENT_HELP} (ticket content, secrets)"
            )
        _add_config_flags(parser)


def _db(args: argparse.Namespace, config: Config) -> int:
    """`db tables|query|export`: exit 2 for a refused statement or table, 1 when the file cannot be read."""
    try:
        store = ReadOnlyStore(config.settings.store.path, getattr(args, "include_content", False))
    except StoreError as exc:
        print(f"servicedesk-sidecar: {exc}", file=sys.stderr)
        return 1
    try:
        if args.db_command == "tables":
            counts = store.tables()
            if args.json:
                print(json.dumps([{"name": t.name, "rows": t.rows} for t in counts], indent=2))
            else:
                print_table([{"name": t.name, "rows": t.rows} for t in counts], ("name", "rows"))
            return 0
        if args.db_command == "query":
            columns, rows = store.query(args.sql)
            if args.format == "table":
                print_table(list(rows), columns)
            else:
                write_rows(columns, rows, args.format, sys.stdout)
            return 0
        columns, rows = store.export(args.table, args.where)
        with _private_output(args.output) if args.output else contextlib.nullcontext(sys.stdout) as out:
            count = write_rows(columns, rows, args.format, out)
        print(f"exported {count} rows of {args.table}", file=sys.stderr)
        return 0
    except QueryRefused as exc:
        print(f"servicedesk-sidecar: refused: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"servicedesk-sidecar: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return 1
    except sqlite3.DatabaseError as exc:
        print(f"servicedesk-sidecar: cannot read the store: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _private_output(path: str) -> TextIO:
    """The export file, created 0600 (and tightened to 0600 if it existed): audit rows name tickets and desks."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    return os.fdopen(fd, "w", encoding="utf-8")


def _keys_show(config: Config) -> int:
    """`keys show`: the address and compressed public key; the private part never leaves keys.py."""
    from sidecar.chain.keys import key_info, load_signing_key

    try:
        info = key_info(load_signing_key(config.settings.chain, config.secrets))
    except ConfigError as exc:
        print(f"servicedesk-sidecar: invalid configuration: {exc}", file=sys.stderr)
        return 2
    print(f"address: {info.address}")
    print(f"public key (secp256k1, compressed, hex): {info.public_key_hex}")
    print(f"source: {info.source}")
    return 0


def _desk_check(config: Config, as_json: bool, public: str) -> int:
    """`desk check`: exit 0 when every configured desk is usable, 2 when one is not or none is configured."""
    from sidecar.desks.check import check_desks

    logging.getLogger("sidecar").addHandler(logging.NullHandler())  # the report says it all, nothing stray
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    reports = asyncio.run(check_desks(config.settings, config.secrets, public_base=public))
    usable = bool(reports) and all(report.ok for report in reports)
    if as_json:
        print(json.dumps({"ok": usable, "desks": [report.as_json() for report in reports]}, indent=2))
    else:
        for report in reports:
            print(f"{report.desk} {report.url}: {'usable' if report.ok else 'NOT USABLE'}")
            for check in report.checks:
                print(f"  {'ok' if check.ok else 'FAIL':<4}  {check.name}: {check.detail}")
                if check.hint:
                    print(f"        {'note' if check.ok else 'hint'}: {check.hint}")
    if not reports:
        print("servicedesk-sidecar: no desk configured (jira.base_url and waldur.base_url are empty)", file=sys.stderr)
    return 0 if usable else 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("run", "audit", "db"):
        os.umask(0o077)  # the database, its WAL/SHM and exports are private to the service account
    if args.command == "config" and args.config_command == "reference":
        print(reference_markdown())
        return 0
    if args.command in cli_commands.COMMANDS:  # the config is read only when --control is not given
        return cli_commands.run(args, lambda: _load(args).settings.grpc.listen)
    try:
        config = _load(args)
    except ConfigError as exc:
        print(f"servicedesk-sidecar: invalid configuration: {exc}", file=sys.stderr)
        return 2
    if args.command == "config":
        _print_check(config, args.format)
        return 0
    if args.command == "audit":
        return _audit(args, config)
    if args.command == "keys":
        return _keys_show(config)
    if args.command == "desk":
        return _desk_check(config, args.json, args.public_url)
    if args.command == "db":
        return _db(args, config)
    settings = config.settings
    setup_logging(settings.audit.log_level, settings.logging.format, config.secret_values())
    for warning in config.warnings:
        log.warning(warning)
    ignored = sorted(name for name in os.environ if name.startswith("SIDECAR_TEST_"))
    if ignored:  # test seams are installed by the test harness only, never by the environment
        log.warning("test seam variables ignored", extra={"variables": ignored})
    try:
        from sidecar.app import run_until_signalled

        return asyncio.run(run_until_signalled(config))
    except SidecarError as exc:
        log.error("fatal: %s", exc)
        return 1
    except BaseExceptionGroup as group:  # a component of the TaskGroup failed: say which, exit non-zero
        for failure in group.exceptions:
            if isinstance(failure, SidecarError):
                log.error("fatal: %s", failure)
            else:
                log.error("fatal: a component failed", exc_info=failure)
        return 1
    except KeyboardInterrupt:
        return 0
