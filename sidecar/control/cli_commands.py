"""The CLI commands that steer a running sidecar over its control API: arguments, requests, output.

Each command builds one request, makes it through ControlClient.call (or .stream for `watch`) and prints
a table, or with --json one JSON document (`watch --json`: one JSON object per line).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message
from virtengine.servicedesk.v1 import control_pb2

from sidecar.control import tables
from sidecar.control.client import EXIT_CODES_HELP, EXIT_OK, EXIT_USAGE, CallFailed, ControlClient, read_token
from sidecar.control.dial import DialOptions
from sidecar.errors import ConfigError
from sidecar.observe.activity import KINDS

DEFAULT_TIMEOUT = 30.0
Handler = Callable[[ControlClient, argparse.Namespace], int]


def _common(parser: argparse.ArgumentParser, add_control_flags: Callable[[argparse.ArgumentParser], None]) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document (for scripts)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="wait this long for each answer (default 30)",
    )
    dial = parser.add_argument_group("dialing the control API")
    dial.add_argument("--tls-ca", metavar="FILE", default="", help="PEM CA that signed the sidecar's certificate")
    dial.add_argument("--tls-cert", metavar="FILE", default="", help="client certificate (mTLS)")
    dial.add_argument("--tls-key", metavar="FILE", default="", help="private key of --tls-cert")
    dial.add_argument("--tls-server-name", metavar="NAME", default="", help="TLS name to check, if not the host")
    dial.add_argument(
        "--token-file", metavar="FILE", default="", help="file holding the bearer token (mode 0600; refused otherwise)"
    )
    add_control_flags(parser)


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    add_control_flags: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Register every control command on the CLI's subcommands."""

    def command(name: str, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(
            name,
            help=f"{help} (gRPC)",
            description=f"{help[0].upper()}{help[1:]}.\nAsks the running sidecar over its gRPC control API.",
            epilog=EXIT_CODES_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        return parser

    def finish(parser: argparse.ArgumentParser) -> None:
        _common(parser, add_control_flags)

    finish(command("status", "show what a running sidecar is doing: chain, desks, signer, pauses"))

    p = command("ticket", "show one ticket as the sidecar holds it: mirror, refs, sync state, jobs, intents")
    p.add_argument("ticket_id", metavar="TICKET_ID", help="<address>/support/<n>")
    p.add_argument("--content", action="store_true", help="include subject and description (grpc.allow_content)")
    finish(p)

    p = command("sync", "queue a manual sync of one ticket")
    p.add_argument("ticket_id", metavar="TICKET_ID", help="<address>/support/<n>")
    p.add_argument("--direction", choices=("outbound", "inbound", "both"), default="outbound")
    p.add_argument("--desk", default="", help="one desk (default: every configured desk)")
    finish(p)

    p = command("reconcile", "compare the chain with the sidecar and the desks, and queue what differs")
    p.add_argument("--from", dest="from_height", type=int, default=0, metavar="HEIGHT", help="height range start")
    p.add_argument("--to", dest="to_height", type=int, default=0, metavar="HEIGHT", help="height range end")
    p.add_argument("--ticket", default="", metavar="TICKET_ID", help="one ticket (default: every ticket)")
    p.add_argument("--desk", default="", help="one desk (default: every configured desk)")
    p.add_argument("--dry-run", action="store_true", help="list the differences, queue nothing")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="page size (every page is followed)")
    finish(p)

    p = command("jobs", "list desk jobs, newest first")
    p.add_argument("--state", default="", help="pending, running, done, dead or skipped")
    p.add_argument("--desk", default="")
    p.add_argument("--ticket", default="", metavar="TICKET_ID")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="page size (default 100)")
    p.add_argument("--all", action="store_true", help="follow every page")
    finish(p)

    p = command("retry", "re-drive a dead-lettered job, or every dead job")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("job_id", type=int, nargs="?", metavar="JOB_ID", help="the job's id (see `jobs`)")
    which.add_argument("--all-dead", action="store_true", help="every dead-lettered job")
    p.add_argument("--desk", default="", help="with --all-dead: only this desk's jobs")
    finish(p)

    p = command("intents", "list the signer's chain transactions, newest first")
    p.add_argument("--state", default="", help="queued, signed, broadcast, included, failed or dead")
    p.add_argument("--ticket", default="", metavar="TICKET_ID")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="page size (default 100)")
    p.add_argument("--all", action="store_true", help="follow every page")
    finish(p)

    p = command("redrive-intent", "put a dead-lettered tx intent, or every dead one, back in the signer's queue")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("intent_id", type=int, nargs="?", metavar="INTENT_ID", help="the intent's id (see `intents`)")
    which.add_argument("--all-dead", action="store_true", help="every dead-lettered intent")
    finish(p)

    p = command("conflicts", "list field conflicts, by default the open ones")
    p.add_argument("--all", action="store_true", help="include resolved conflicts")
    p.add_argument("--desk", default="")
    p.add_argument("--ticket", default="", metavar="TICKET_ID")
    finish(p)

    p = command("resolve", "decide a parked conflict")
    p.add_argument("conflict_id", type=int, metavar="ID", help="the conflict's id (see `conflicts`)")
    p.add_argument("--keep", required=True, choices=("chain", "desk"), help="the side whose value wins")
    p.add_argument("--operator", default=os.environ.get("USER", "operator"), help="who decides (audited)")
    finish(p)

    p = command("pause", "pause a direction (default both), for one desk or all, until `resume`")
    p.add_argument("--direction", choices=("outbound", "inbound"), default="", help="default: both")
    p.add_argument("--desk", default="", help="default: every desk")
    p.add_argument("--reason", default="", help="shown in status and audited")
    finish(p)

    p = command("resume", "lift the pauses matching a direction and desk")
    p.add_argument("--direction", choices=("outbound", "inbound"), default="", help="default: both")
    p.add_argument("--desk", default="", help="default: every desk")
    finish(p)

    finish(command("resync-sequence", "make the signer read its account sequence from the chain again"))

    p = command("watch", "print what the sidecar does as it happens, until Ctrl-C")
    p.add_argument("--kind", action="append", choices=KINDS, default=[], help="only these kinds (repeatable)")
    p.add_argument("--ticket", default="", metavar="TICKET_ID")
    p.add_argument("--desk", default="")
    finish(p)


def run(args: argparse.Namespace, default_address: Callable[[], str]) -> int:
    """Run the control command `args.command`; its exit code (see client.py)."""
    try:
        options = DialOptions(
            address=args.control or default_address(),
            tls_ca=args.tls_ca,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            server_name=args.tls_server_name,
            token=read_token(args.token_file) if args.token_file else "",
        )
    except ConfigError as exc:
        print(f"servicedesk-sidecar: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with ControlClient(options, args.timeout) as control:
            return HANDLERS[args.command](control, args)
    except CallFailed as failed:
        return failed.exit_code
    except BrokenPipeError:  # the reader left (`ticket ... | head`): the answer was printed as far as wanted
        _stdout_gone()
        return EXIT_OK


def _show(answer: Message, as_json: bool, human: Callable[[dict[str, Any]], None]) -> int:
    doc = tables.as_dict(answer)
    if as_json:
        tables.print_json(doc)
    else:
        human(doc)
    return EXIT_OK


def _pages(control: ControlClient, method: str, request: Any, items: str, follow: bool, *sums: str) -> Any:
    """The first page, or with `follow` every page merged into one answer (next_page_token empty):
    the `items` lists joined, the `sums` counters added up. A token seen before ends the walk."""
    answer = control.call(method, request)
    seen: set[str] = set()
    while follow and answer.next_page_token and answer.next_page_token not in seen:
        seen.add(answer.next_page_token)
        request.page_token = answer.next_page_token
        page = control.call(method, request)
        getattr(answer, items).extend(getattr(page, items))
        for counter in sums:
            setattr(answer, counter, getattr(answer, counter) + getattr(page, counter))
        answer.next_page_token = page.next_page_token
    return answer


def _listing(title: str, columns: tuple[str, ...], *clipped: str) -> Callable[[dict[str, Any]], None]:
    def human(doc: dict[str, Any]) -> None:
        rows = doc[title]
        if rows:
            tables.print_table(rows, columns, clipped)
        else:
            print(f"no {title}")
        if doc.get("next_page_token"):
            print("(more on the next page: add --all)")

    return human


def _status(control: ControlClient, args: argparse.Namespace) -> int:
    return _show(control.call("GetStatus", control_pb2.GetStatusRequest()), args.json, tables.print_status)


def _ticket(control: ControlClient, args: argparse.Namespace) -> int:
    request = control_pb2.GetTicketRequest(ticket_id=args.ticket_id, include_content=args.content)
    return _show(control.call("GetTicket", request), args.json, tables.print_ticket)


def _sync(control: ControlClient, args: argparse.Namespace) -> int:
    request = control_pb2.SyncTicketRequest(ticket_id=args.ticket_id, direction=args.direction, desk=args.desk)

    def human(doc: dict[str, Any]) -> None:
        outbound = doc["jobs_queued"] - doc["rereads_queued"]
        if doc["jobs_queued"] == 0:
            print(f"nothing new queued for {args.ticket_id}: the same sync is still pending")
        else:
            print(f"queued for {args.ticket_id}: {outbound} outbound job(s), {doc['rereads_queued']} desk re-read(s)")
        if doc["rereads_pending"]:
            print(f"{doc['rereads_pending']} desk re-read(s) were already waiting")
        if doc["jobs"]:
            tables.print_section("outbound jobs waiting", doc["jobs"], tables.JOB_COLUMNS, "last_error")

    return _show(control.call("SyncTicket", request), args.json, human)


def _reconcile(control: ControlClient, args: argparse.Namespace) -> int:
    request = control_pb2.ReconcileRequest(
        from_height=args.from_height,
        to_height=args.to_height,
        ticket_id=args.ticket,
        desk=args.desk,
        dry_run=args.dry_run,
        limit=args.limit,
    )
    answer = _pages(control, "Reconcile", request, "differences", True, "checked", "queued")

    def human(doc: dict[str, Any]) -> None:
        if doc["differences"]:
            tables.print_table(doc["differences"], tables.DIFFERENCE_COLUMNS)
        print(f"checked {doc['checked']}, {len(doc['differences'])} difference(s), queued {doc['queued']}")
        if args.dry_run:
            print("dry run: nothing queued")

    return _show(answer, args.json, human)


def _jobs(control: ControlClient, args: argparse.Namespace) -> int:
    request = control_pb2.ListJobsRequest(
        state=args.state, desk=args.desk, ticket_id=args.ticket, limit=args.limit or (1000 if args.all else 0)
    )
    answer = _pages(control, "ListJobs", request, "jobs", args.all)
    return _show(answer, args.json, _listing("jobs", tables.JOB_COLUMNS, "last_error"))


def _retry(control: ControlClient, args: argparse.Namespace) -> int:
    request = control_pb2.RedriveJobRequest(id=args.job_id or 0, all_dead=args.all_dead, desk=args.desk)
    answer = control.call("RedriveJob", request)
    return _show(answer, args.json, lambda doc: print(f"re-drove {doc['redriven']} dead job(s)"))


def _intents(control: ControlClient, args: argparse.Namespace) -> int:
    request = control_pb2.ListTxIntentsRequest(
        state=args.state, ticket_id=args.ticket, limit=args.limit or (1000 if args.all else 0)
    )
    answer = _pages(control, "ListTxIntents", request, "intents", args.all)
    return _show(answer, args.json, _listing("intents", tables.INTENT_COLUMNS, "log"))


def _redrive_intent(control: ControlClient, args: argparse.Namespace) -> int:
    request = control_pb2.RedriveIntentRequest(id=args.intent_id or 0, all_dead=args.all_dead)
    answer = control.call("RedriveIntent", request)
    return _show(answer, args.json, lambda doc: print(f"re-drove {doc['redriven']} dead intent(s)"))


def _conflicts(control: ControlClient, args: argparse.Namespace) -> int:
    request = control_pb2.ListConflictsRequest(
        include_resolved=args.all, desk=args.desk, ticket_id=args.ticket, limit=1000
    )
    answer = _pages(control, "ListConflicts", request, "conflicts", True)
    return _show(answer, args.json, _listing("conflicts", tables.CONFLICT_COLUMNS))


def _resolve(control: ControlClient, args: argparse.Namespace) -> int:
    request = control_pb2.ResolveConflictRequest(id=args.conflict_id, winner=args.keep, operator=args.operator)

    def human(doc: dict[str, Any]) -> None:
        row = doc["conflict"]
        print(
            f"conflict {row['id']} resolved: {args.keep} kept ({row['field']} of {row['ticket_id']} at {row['desk']})"
        )

    return _show(control.call("ResolveConflict", request), args.json, human)


def _print_pauses(doc: dict[str, Any]) -> None:
    tables.print_section("paused", tables.pause_rows(doc["pauses"]), tables.PAUSE_COLUMNS, "reason")


def _pause(control: ControlClient, args: argparse.Namespace) -> int:
    request = control_pb2.PauseRequest(direction=args.direction, desk=args.desk, reason=args.reason)
    return _show(control.call("Pause", request), args.json, _print_pauses)


def _resume(control: ControlClient, args: argparse.Namespace) -> int:
    request = control_pb2.ResumeRequest(direction=args.direction, desk=args.desk)

    def human(doc: dict[str, Any]) -> None:
        print(f"resumed {doc['resumed']} pause(s)")
        _print_pauses(doc)

    return _show(control.call("Resume", request), args.json, human)


def _resync_sequence(control: ControlClient, args: argparse.Namespace) -> int:
    def human(doc: dict[str, Any]) -> None:
        print(f"signer {doc['address']}: sequence {doc['previous_sequence']} -> {doc['sequence']}")

    return _show(control.call("ResyncSequence", control_pb2.ResyncSequenceRequest()), args.json, human)


def _watch(control: ControlClient, args: argparse.Namespace) -> int:
    """Until the stream ends or Ctrl-C (exit 0); each event flushed at once, for pipes."""
    request = control_pb2.WatchEventsRequest(kinds=args.kind, ticket_id=args.ticket, desk=args.desk)
    try:
        for event in control.stream("WatchEvents", request):
            doc = tables.as_dict(event)
            print(tables.json_line(doc) if args.json else tables.event_line(doc), flush=True)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # the reader left (`watch --json | head`): done
        _stdout_gone()
    return EXIT_OK


def _stdout_gone() -> None:
    """Point stdout at /dev/null, so flushing it at exit raises no second BrokenPipeError."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


HANDLERS: dict[str, Handler] = {
    "status": _status,
    "ticket": _ticket,
    "sync": _sync,
    "reconcile": _reconcile,
    "jobs": _jobs,
    "retry": _retry,
    "intents": _intents,
    "redrive-intent": _redrive_intent,
    "conflicts": _conflicts,
    "resolve": _resolve,
    "pause": _pause,
    "resume": _resume,
    "resync-sequence": _resync_sequence,
    "watch": _watch,
}
COMMANDS = frozenset(HANDLERS)
