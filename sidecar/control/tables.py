"""How the CLI shows control answers: messages as plain dicts, aligned tables, key/value blocks, JSON.

JSON keeps the .proto's field names and prints every field, defaults included; unlike the proto3 JSON
mapping, 64-bit integers stay numbers so scripts can compare them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, MutableSequence, Sequence
from typing import Any

from google.protobuf.message import Message

CLIP = 60  # free-text cells (errors, logs) are cut to this width in tables; --json has them whole
ZERO_IS_UNSET = frozenset({"height", "code"})


def as_dict(message: Message) -> dict[str, Any]:
    """Every field of `message` by its .proto name, nested messages as dicts, lists as lists."""
    doc: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if isinstance(value, MutableSequence):  # a repeated field
            doc[field.name] = [as_dict(v) if isinstance(v, Message) else v for v in value]
        elif isinstance(value, Message):
            doc[field.name] = as_dict(value) if message.HasField(field.name) else None
        else:
            doc[field.name] = value
    return doc


def print_json(doc: object) -> None:
    print(json.dumps(doc, indent=2))


def cell(value: object, clip: bool = False) -> str:
    """A value as a table shows it: empty for unset, yes/no for booleans, long text cut."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = " ".join(str(value).split())  # a newline in an error would break the row
    return text[: CLIP - 1] + "…" if clip and len(text) > CLIP else text


def print_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str], clipped: Iterable[str] = ()) -> None:
    """Columns aligned by their widest cell; headers are the column names in capitals."""
    clip = set(clipped)
    cells = [[cell(_unset_zero(c, row.get(c)), c in clip) for c in columns] for row in rows]
    widths = [max([len(c), *(len(line[i]) for line in cells)]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for line in cells:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


def _unset_zero(column: str, value: object) -> object:
    """0 in a column where proto3 means "none yet" (no height, no result code) shows as empty."""
    return None if column in ZERO_IS_UNSET and value == 0 else value


def print_fields(pairs: Sequence[tuple[str, object]]) -> None:
    """A key/value block: one `key  value` line each, keys aligned."""
    width = max((len(k) for k, _ in pairs), default=0)
    for key, value in pairs:
        print(f"{key.ljust(width)}  {cell(value)}".rstrip())


def print_section(title: str, rows: Sequence[Mapping[str, object]], columns: Sequence[str], *clipped: str) -> None:
    """A titled table, or `title: none` when there is nothing to show."""
    if not rows:
        print(f"{title}: none")
        return
    print(f"{title}:")
    print_table(rows, columns, clipped)


JOB_COLUMNS = ("id", "state", "kind", "desk", "ticket_id", "attempts", "next_run_at", "last_error")
INTENT_COLUMNS = ("id", "state", "msg_type", "ticket_id", "attempts", "tx_hash", "height", "code", "log")
CONFLICT_COLUMNS = ("id", "ticket_id", "desk", "field", "chain_value", "desk_value", "strategy", "state", "detected_at")
PAUSE_COLUMNS = ("direction", "desk", "since", "by", "reason")
DIFFERENCE_COLUMNS = (
    "kind",
    "ticket_id",
    "desk",
    "field",
    "height",
    "event_type",
    "chain_value",
    "mirror_value",
    "desk_value",
    "action",
)


def pause_rows(pauses: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Pauses with the empty desk spelled out (an empty desk pauses every desk)."""
    return [{**p, "desk": p["desk"] or "(every desk)"} for p in pauses]


def print_status(doc: Mapping[str, Any]) -> None:
    lag = doc["lag_blocks"] or max(0, doc["head_height"] - doc["cursor_height"])
    signer = doc["signer"] or {}
    pairs: list[tuple[str, object]] = [
        ("health", "healthy" if doc["healthy"] else "UNHEALTHY"),
        ("version", doc["version"]),
        ("chain", f"{doc['chain_id'] or '?'} ({'reachable' if doc['chain_reachable'] else 'UNREACHABLE'})"),
        ("cursor", f"{doc['cursor_height']} (head {doc['head_height']}, lag {lag})"),
        ("events", f"{doc['pending_events']} pending, {doc['failed_events']} failed"),
        ("conflicts", f"{doc['open_conflicts']} open"),
        ("last sync", doc["last_sync"] or "never"),
    ]
    if signer.get("enabled"):
        line = (
            f"{signer['address']} sequence {signer['sequence']}, balance {signer['balance'] or '?'}, "
            f"intents {signer['pending_intents']} pending, {signer['dead_intents']} dead, "
            f"{signer['in_flight']} in flight"
        )
        pairs.append(("signer", line))
        if signer["paused"]:
            pairs.append(("signer waits", signer["paused"]))
        if signer["last_error"]:
            pairs.append(("signer error", signer["last_error"]))
    else:
        pairs.append(("signer", "off"))
    print_fields(pairs)
    print()
    desk_columns = ("name", "status", "outbound", "inbound", "last_success", "pending_jobs", "dead_jobs")
    print_section("desks", doc["desks"], (*desk_columns, "swept_to", "inbound_queued", "detail"), "detail")
    print_section("paused", pause_rows(doc["pauses"]), PAUSE_COLUMNS, "reason")
    print_list("problems", doc["problems"])


def print_ticket(doc: Mapping[str, Any]) -> None:
    ticket = doc["ticket"] or {}
    print_fields(
        [
            ("ticket", ticket.get("ticket_id")),
            ("customer", ticket.get("customer")),
            ("status", ticket.get("status")),
            ("priority", ticket.get("priority")),
            ("category", ticket.get("category")),
            ("assignee", ticket.get("assignee")),
            ("sequence", ticket.get("sequence")),
            ("heights", f"created {ticket.get('created_height')}, updated {ticket.get('updated_height')}"),
            ("chain updated", ticket.get("chain_updated_at")),
            ("mirror updated", ticket.get("updated_at")),
            ("content", ticket.get("content_state")),
        ]
    )
    content = doc["content"]
    if content is not None:
        print(f"subject: {content['subject']}")
        print("description:")
        for line in content["description"].splitlines() or [""]:
            print(f"  {line}")
    print()
    print_section("refs", doc["refs"], ("desk", "external_id", "url", "verified", "state", "created_at"))
    fields = [{**f, "base_sha256": f["base_sha256"][:12]} for f in doc["fields"]]
    field_columns = ("desk", "field", "synced_from", "synced_at", "base_sha256", "desk_change_id")
    print_section("fields", fields, field_columns)
    print_section("conflicts", doc["conflicts"], CONFLICT_COLUMNS)
    print_section("jobs", doc["jobs"], JOB_COLUMNS, "last_error")
    print_section("intents", doc["intents"], INTENT_COLUMNS, "log")
    print_list("last errors", doc["last_errors"])


def print_list(title: str, items: Sequence[str]) -> None:
    """`title:` and one `  - item` line each (each item on one line), or nothing when empty."""
    if items:
        print(f"{title}:")
        for item in items:
            print(f"  - {cell(item)}")


def event_line(event: Mapping[str, Any]) -> str:
    """One ControlEvent as `watch` prints it: time, sequence, kind and action, then what is set."""
    named = ("ticket_id", "desk", "direction", "height", "id")
    parts = [event["at"], f"#{event['seq']}", event["kind"], event["action"]]
    parts += [f"{name}={event[name]}" for name in named if event[name]]
    if event["detail"]:
        parts.append(cell(event["detail"]))
    return " ".join(p for p in parts if p)


def json_line(doc: object) -> str:
    """One JSON document on one line (JSON lines, for `watch --json`)."""
    return json.dumps(doc, separators=(",", ":"))
