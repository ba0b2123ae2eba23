"""Atlassian Document Format for what the sidecar writes to Jira, and a structural check.

Jira's OpenAPI spec types rich text as any object, so nothing upstream catches a malformed
document; `check` runs on every document before it is sent. Comments end with a footer paragraph
carrying the response marker, which is how a retried post is recognised (`footer_marker`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sidecar.desks.base import (
    MARKER_PREFIX,
    DeskComment,
    TicketSnapshot,
    author_prefix,
    comment_plain_text,
    marker_line,
    text_marker,
)

Node = dict[str, Any]
_BLOCKS = frozenset({"paragraph", "heading", "bulletList", "listItem", "rule", "codeBlock", "blockquote"})
_INLINE = frozenset({"text", "hardBreak"})
_MARKS = frozenset({"strong", "em", "code", "subsup", "textColor"})
MAX_TEXT = 30_000  # stay well under Jira's 32,767-character limit of a rich-text field


def text(value: str, *marks: str) -> Node:
    node: Node = {"type": "text", "text": value}
    if marks:
        node["marks"] = [{"type": m} for m in marks]
    return node


def paragraph(*inline: Node) -> Node:
    return {"type": "paragraph", "content": [n for n in inline if n.get("type") != "text" or n.get("text")]}


def doc(blocks: Iterable[Node]) -> Node:
    return {"type": "doc", "version": 1, "content": list(blocks)}


def text_blocks(value: str) -> list[Node]:
    """Plain text as paragraphs (blank lines separate them, single newlines become hard breaks)."""
    value = value[:MAX_TEXT]
    blocks: list[Node] = []
    for chunk in value.replace("\r\n", "\n").split("\n\n"):
        inline: list[Node] = []
        for i, line in enumerate(chunk.split("\n")):
            if i:
                inline.append({"type": "hardBreak"})
            if line:
                inline.append(text(line))
        blocks.append(paragraph(*inline))
    return blocks


def _field(label: str, value: str) -> Node:
    return {"type": "listItem", "content": [paragraph(text(f"{label}: ", "strong"), text(value or "-"))]}


def _facts(ticket: TicketSnapshot, priority: str) -> list[tuple[str, str]]:
    entity = ticket.related_entity or {}
    related = ", ".join(f"{k}={v}" for k, v in sorted(entity.items())) if entity else "-"
    return [
        ("Ticket", ticket.ticket_number),
        ("Ticket ID", ticket.ticket_id),
        ("Category", ticket.category),
        ("Priority", f"{ticket.priority} ({priority})"),
        ("Submitter", ticket.submitter),
        ("Related entity", related),
    ]


def _unavailable(ticket: TicketSnapshot) -> str:
    reason = ticket.content_reason or "the content is encrypted and not available to the desk"
    return f"Content not available: {reason}."


def describe_ticket(ticket: TicketSnapshot, priority: str) -> Node:
    """The issue description: the ticket's identity and routing fields, then its description."""
    facts = [_field(name, value) for name, value in _facts(ticket, priority)]
    blocks: list[Node] = [{"type": "bulletList", "content": facts}, {"type": "rule"}]
    if ticket.content_available:
        blocks += text_blocks(ticket.description) if ticket.description else [paragraph(text("(no description)"))]
    else:
        blocks.append(paragraph(text(_unavailable(ticket), "em")))
    return doc(blocks)


def describe_ticket_text(ticket: TicketSnapshot, priority: str) -> str:
    """The same description as plain text, for JSM request fields (which take no ADF)."""
    lines = [f"- {name}: {value}" for name, value in _facts(ticket, priority)]
    body = (ticket.description or "(no description)") if ticket.content_available else _unavailable(ticket)
    return "\n".join([*lines, "", body])


def comment_doc(comment: DeskComment) -> Node:
    """Author prefix, body, and the marker footer (small, last paragraph)."""
    blocks = [paragraph(text(author_prefix(comment), "strong")), *text_blocks(comment.body)]
    return doc([*blocks, paragraph(text(marker_line(comment.marker), "code"))])


def comment_text(comment: DeskComment) -> str:
    """The plain-text form for JSM's comment endpoint, which takes a string; the marker is its last line."""
    return comment_plain_text(comment, MAX_TEXT)


def footer_marker(body: Any) -> str | None:
    """The marker in a comment body's last paragraph, if it carries one (ADF or plain text)."""
    if isinstance(body, str):
        return text_marker(body)
    if not isinstance(body, dict) or not isinstance(body.get("content"), list) or not body["content"]:
        return None
    words = "".join(_texts(body["content"][-1])).strip()
    return words[len(MARKER_PREFIX) :] if words.startswith(MARKER_PREFIX) else None


def _texts(node: Any) -> list[str]:
    if not isinstance(node, dict):
        return []
    if node.get("type") == "text":
        return [str(node.get("text", ""))]
    out: list[str] = []
    children = node.get("content")
    for child in children if isinstance(children, list) else []:
        out += _texts(child)
    return out


def check(document: Any) -> list[str]:
    """Structural problems of an ADF document (empty list: fine)."""
    if not isinstance(document, dict) or document.get("type") != "doc" or document.get("version") != 1:
        return ["root must be {'type': 'doc', 'version': 1}"]
    content = document.get("content")
    if not isinstance(content, list):
        return ["doc.content must be a list"]
    problems: list[str] = []
    for i, node in enumerate(content):
        problems += _check_node(node, f"content[{i}]", block=True)
    return problems


def _check_node(node: Any, where: str, *, block: bool) -> list[str]:
    if not isinstance(node, dict) or not isinstance(node.get("type"), str):
        return [f"{where}: not a node"]
    kind = node["type"]
    if kind not in (_BLOCKS if block else _INLINE):
        return [f"{where}: {kind!r} not allowed here"]
    problems: list[str] = []
    if kind == "text":
        if not isinstance(node.get("text"), str) or not node["text"]:
            problems.append(f"{where}: text must be a non-empty string")
        for mark in node.get("marks", []):
            if not isinstance(mark, dict) or mark.get("type") not in _MARKS:
                problems.append(f"{where}: unknown mark {mark!r}")
        return problems
    children = node.get("content", [])
    if not isinstance(children, list):
        return [f"{where}: content must be a list"]
    inline_parent = kind in ("paragraph", "heading", "codeBlock")
    for i, child in enumerate(children):
        problems += _check_node(child, f"{where}.content[{i}]", block=not inline_parent)
    if kind == "bulletList" and any(isinstance(c, dict) and c.get("type") != "listItem" for c in children):
        problems.append(f"{where}: a list holds listItem nodes only")
    return problems


# reading ------------------------------------------------------------------------------------------
MAX_READ_TEXT = 100_000  # characters of a comment read back; a longer one is cut (the chain's limit is far lower)
_MAX_NODES = 20_000  # nodes visited in one document: a hostile answer cannot make flattening slow
_BLOCK_SEPARATOR = "\n\n"


def plain_text(body: Any) -> str:
    """A comment body as plain text: top-level blocks separated by blank lines, nested blocks (list items,
    table cells) by newlines, hard breaks as newlines; a node this does not know (a mention, a panel, a
    future node type) gives the text inside it. A plain-text body (API v2, JSM) is taken as it is."""
    if isinstance(body, str):
        return body[:MAX_READ_TEXT]
    if not isinstance(body, dict) or not isinstance(body.get("content"), list):
        return ""
    budget = [_MAX_NODES]
    blocks = [_flatten(node, budget) for node in body["content"]]
    return _BLOCK_SEPARATOR.join(block for block in blocks if block.strip())[:MAX_READ_TEXT].strip()


def _flatten(node: Any, budget: list[int]) -> str:
    """The text of one node. `budget` counts the nodes still allowed; past it, nothing more is read."""
    budget[0] -= 1
    if budget[0] < 0 or not isinstance(node, dict):
        return ""
    kind = node.get("type")
    if kind == "text":
        value = node.get("text")
        return value if isinstance(value, str) else ""
    if kind == "hardBreak":
        return "\n"
    attrs = node.get("attrs")
    if kind in ("mention", "emoji", "status") and isinstance(attrs, dict):
        label = attrs.get("text") or attrs.get("shortName")
        return label if isinstance(label, str) else ""
    children = node.get("content")
    if not isinstance(children, list):
        return ""
    parts = [_flatten(child, budget) for child in children]
    inline = all(not isinstance(c, dict) or c.get("type") in _INLINE_READ for c in children)
    return "".join(parts) if inline else "\n".join(part for part in parts if part)


# nodes whose text runs on within a line; any other node's children are blocks, one per line
_INLINE_READ = frozenset({"text", "hardBreak", "mention", "emoji", "status", "inlineCard", "date"})
