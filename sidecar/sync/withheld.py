"""The desk note that says an attachment was not copied, and why, in plain words (#15).

One note per withheld file: its marker (`withheld:<direction>:<attachment row id>`) lets the sync check
`has_comment` before posting, so a retried job never posts twice. The file name may appear here (the desk
holds the ticket's content anyway); it never reaches logs, metrics or audit details.
"""

from __future__ import annotations

from sidecar.desks.base import DeskComment

AUTHOR = "VirtEngine"
# Reason code -> why, in words an agent reads at the desk. Codes not listed get the generic text.
_WHY = {
    "too_large": "it is larger than the limit of {limit}",
    "type_not_allowed": "its file type is not allowed to be copied",
    "type_mismatch": "its content does not match the kind of file its name claims",
    "hash_mismatch": "its content does not match the checksum the ticket recorded for it",
    "size_mismatch": "its size does not match the size the ticket recorded for it",
    "missing": "the file is missing from the artifact store",
    "corrupt": "the stored file is damaged and cannot be read safely",
    "not_a_recipient": "the file is not encrypted for the support desk",
    "malformed": "the ticket's description of the file is invalid",
    "disabled": "the desk does not accept attachments",
    "empty": "the file is empty",
}
_WHERE = {
    "outbound": "from the VirtEngine ticket to this desk",
    "inbound": "from this desk to the VirtEngine ticket",
}


def withheld_marker(direction: str, row_id: int) -> str:
    """The marker of the note for one attachment row (what has_comment looks for)."""
    return f"withheld:{direction}:{row_id}"


def _size(limit_bytes: int) -> str:
    if limit_bytes >= 1024 * 1024 and limit_bytes % (1024 * 1024) == 0:
        return f"{limit_bytes // (1024 * 1024)} MiB"
    if limit_bytes >= 1024 and limit_bytes % 1024 == 0:
        return f"{limit_bytes // 1024} KiB"
    return f"{limit_bytes} bytes"


def withheld_note(direction: str, reason: str, file_name: str, limit_bytes: int, row_id: int = 0) -> DeskComment:
    """An agents-only note saying the file `file_name` was withheld (`direction`: outbound/inbound) and why.

    `row_id` names the attachment row, so the marker is unique per file (see withheld_marker)."""
    why = _WHY.get(reason, "it failed the sidecar's checks ({reason})").format(limit=_size(limit_bytes), reason=reason)
    where = _WHERE.get(direction, "")
    name = file_name.strip() or "(unnamed)"
    body = f'An attachment was not copied {where}: "{name}" was withheld because {why}. (reason: {reason})'
    return DeskComment(
        marker=withheld_marker(direction, row_id),
        author=AUTHOR,
        is_agent=True,
        body=body.replace("  ", " "),
        internal=True,
    )
