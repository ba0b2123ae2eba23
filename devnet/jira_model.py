"""Jira simulator data: the workflow, ADF helpers and the issue records it keeps.

Kept apart from the HTTP layer so the workflow can be configured per test and the ADF checks are
reusable by the contract checker.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

CATEGORIES = {
    "new": {"id": 2, "key": "new", "name": "To Do", "colorName": "blue-gray"},
    "indeterminate": {"id": 4, "key": "indeterminate", "name": "In Progress", "colorName": "yellow"},
    "done": {"id": 3, "key": "done", "name": "Done", "colorName": "green"},
}


@dataclass(frozen=True)
class Status:
    id: str
    name: str
    category: str  # a key of CATEGORIES


@dataclass(frozen=True)
class Transition:
    id: str
    name: str
    to: str
    sources: tuple[str, ...] | None = None  # None: a global transition, available from any status
    # Fields on the transition's screen, and those of them it requires. Jira refuses a field set on a
    # transition without it on its screen, and a transition that leaves a required one out (rules 3-4
    # in devnet/jira_rules.py); the REST transition request documents both 400s.
    screen: tuple[str, ...] = ()
    required: tuple[str, ...] = ()


@dataclass
class Workflow:
    """Statuses and the transitions between them; the only way an issue's status changes."""

    statuses: list[Status]
    transitions: list[Transition]
    initial: str

    def status(self, name: str) -> Status:
        for status in self.statuses:
            if status.name.lower() == name.lower():
                return status
        raise KeyError(f"unknown status {name!r}")

    def available(self, current: str) -> list[Transition]:
        return [t for t in self.transitions if t.to != current and (t.sources is None or current in t.sources)]

    def path(self, current: str, target: str, max_steps: int = 4) -> list[Transition]:
        """A shortest transition path from `current` to `target` (empty if already there or unreachable)."""
        frontier: list[tuple[str, list[Transition]]] = [(current, [])]
        seen = {current.lower()}
        for _ in range(max_steps):
            nxt: list[tuple[str, list[Transition]]] = []
            for status, steps in frontier:
                for t in self.available(status):
                    if t.to.lower() == target.lower():
                        return [*steps, t]
                    if t.to.lower() not in seen:
                        seen.add(t.to.lower())
                        nxt.append((t.to, [*steps, t]))
            frontier = nxt
        return []

    @classmethod
    def default(cls) -> Workflow:
        """The simulator's default: the JSM service-request-like workflow."""
        return cls.service_request()

    @classmethod
    def service_request(cls) -> Workflow:
        """A JSM service-request-like workflow, NOT fully connected, with resolution screens.

        Modelled on the ITSM Service Request workflow of JSM's IT support template, where requests move
        through set steps and only Resolved or Cancelled lead on to Closed
        (https://blog.isostech.com/atlassian/jira-workflow-resolutions-resolved-closed-done): here work
        starts before it can wait for the customer or be resolved, and "Resolve this issue" / "Cancel
        request" show a resolve screen whose Resolution is required, the case integrations meet as
        "Field Resolution is required." (see devnet/jira_rules.py, rule 3). Open -> Resolved and
        Open -> Waiting for Customer therefore take two transitions.
        """
        statuses = _service_desk_statuses()
        working = ("In Progress", "Waiting for Support", "Waiting for Customer")
        res = ("resolution",)
        transitions = [
            Transition("11", "Start progress", "In Progress", ("Open", "Waiting for Support", "Waiting for Customer")),
            Transition("21", "Wait for customer", "Waiting for Customer", ("In Progress", "Waiting for Support")),
            Transition("31", "Respond to support", "Waiting for Support", ("Waiting for Customer",)),
            Transition("41", "Resolve this issue", "Resolved", working, screen=res, required=res),
            Transition("51", "Close", "Closed", ("Resolved",)),
            Transition("61", "Cancel request", "Closed", ("Open", "Waiting for Support"), screen=res, required=res),
            Transition("71", "Reopen", "Open", ("Resolved", "Closed")),
        ]
        return cls(statuses, transitions, "Open")

    @classmethod
    def connected(cls) -> Workflow:
        """A lenient flow: every status the sidecar maps is one screenless transition away."""
        statuses = _service_desk_statuses()
        transitions = [Transition(str(11 + 10 * i), f"To {s.name}", s.name) for i, s in enumerate(statuses)]
        return cls(statuses, transitions, "Open")

    @classmethod
    def from_config(cls, statuses: dict[str, str], transitions: list[dict[str, Any]], initial: str) -> Workflow:
        """Build from {status name: category} and
        [{"name", "to", "from": [..] or "*", "screen": [..], "required": [..]}]."""
        built = [Status(str(i + 1), name, cat) for i, (name, cat) in enumerate(statuses.items())]
        trans = [
            Transition(
                str(11 + 10 * i),
                t["name"],
                t["to"],
                None if t.get("from", "*") == "*" else tuple(t["from"]),
                tuple(t.get("screen", ())),
                tuple(t.get("required", ())),
            )
            for i, t in enumerate(transitions)
        ]
        return cls(built, trans, initial)


# ADF -------------------------------------------------------------------------------------------
BLOCK_NODES = {
    "paragraph",
    "heading",
    "bulletList",
    "orderedList",
    "listItem",
    "codeBlock",
    "blockquote",
    "rule",
    "panel",
    "table",
    "tableRow",
    "tableCell",
    "tableHeader",
    "mediaSingle",
    "mediaGroup",
    "media",
    "expand",
    "nestedExpand",
    "taskList",
    "taskItem",
    "decisionList",
    "decisionItem",
}
INLINE_NODES = {"text", "hardBreak", "mention", "emoji", "inlineCard", "date", "status", "inlineExtension"}


def text_to_adf(text: str) -> dict[str, Any]:
    """Plain text to an ADF document, one paragraph per line."""
    paragraphs = []
    for line in text.split("\n"):
        node: dict[str, Any] = {"type": "paragraph", "content": []}
        if line:
            node["content"] = [{"type": "text", "text": line}]
        paragraphs.append(node)
    return {"type": "doc", "version": 1, "content": paragraphs}


def adf_to_text(doc: Any) -> str:
    """The text of an ADF document, block nodes separated by newlines."""
    if not isinstance(doc, dict):
        return "" if doc is None else str(doc)
    if doc.get("type") == "text":
        return str(doc.get("text", ""))
    if doc.get("type") == "hardBreak":
        return "\n"
    parts = [adf_to_text(child) for child in doc.get("content", []) or []]
    joiner = "\n" if doc.get("type") in ("doc", "bulletList", "orderedList", "table", "tableRow") else ""
    return joiner.join(parts)


def adf_problems(doc: Any, where: str) -> list[str]:
    """Structural ADF check: the spec types rich text as free-form, so Jira's rules live here."""
    if not isinstance(doc, dict):
        return [f"{where}: expected an ADF document object, got {type(doc).__name__}"]
    problems: list[str] = []
    if doc.get("type") != "doc":
        problems.append(f"{where}: top-level node type must be 'doc'")
    if doc.get("version") != 1:
        problems.append(f"{where}: ADF version must be 1")
    content = doc.get("content")
    if not isinstance(content, list):
        return [*problems, f"{where}: 'content' must be a list"]
    for i, node in enumerate(content):
        problems += _node_problems(node, f"{where}.content[{i}]", top=True)
    return problems


def _node_problems(node: Any, where: str, *, top: bool) -> list[str]:
    if not isinstance(node, dict) or not isinstance(node.get("type"), str):
        return [f"{where}: a node must be an object with a string 'type'"]
    kind = node["type"]
    if kind not in BLOCK_NODES and kind not in INLINE_NODES:
        return [f"{where}: unknown node type {kind!r}"]
    if top and kind in INLINE_NODES:
        return [f"{where}: inline node {kind!r} at the top level"]
    problems: list[str] = []
    if kind == "text":
        if not isinstance(node.get("text"), str) or not node["text"]:
            problems.append(f"{where}: a text node needs a non-empty string 'text'")
        marks = node.get("marks", [])
        if not isinstance(marks, list) or any(not isinstance(m, dict) or "type" not in m for m in marks):
            problems.append(f"{where}: 'marks' must be a list of objects with 'type'")
    children = node.get("content")
    if children is not None:
        if not isinstance(children, list):
            return [*problems, f"{where}: 'content' must be a list"]
        for i, child in enumerate(children):
            problems += _node_problems(child, f"{where}.content[{i}]", top=False)
    return problems


# records ---------------------------------------------------------------------------------------
def jira_time(moment: datetime) -> str:
    """Jira's timestamp format, e.g. 2026-11-26T10:03:20.000+0000."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Comment:
    id: str
    author: str
    body: dict[str, Any]
    public: bool
    created: datetime
    updated: datetime


@dataclass
class History:
    """One changelog entry: who changed which fields, and when (GET issue with expand=changelog)."""

    id: str
    author: str  # an account id
    created: datetime
    items: list[dict[str, Any]]


@dataclass
class Attachment:
    id: str
    filename: str
    mime_type: str
    content: bytes
    author: str
    created: datetime


@dataclass
class Issue:
    """One issue; `versions` is what search sees, each version becoming visible at its time."""

    id: str
    key: str
    project: str
    issuetype: str
    summary: str
    description: dict[str, Any] | None
    labels: list[str]
    priority: str
    status: str
    reporter: str
    assignee: str | None = None  # an account id
    resolution: str | None = None  # set by a transition screen, cleared when the issue leaves "done"
    request_type_id: str | None = None  # set when created as a JSM customer request
    created: datetime = field(default_factory=now)
    updated: datetime = field(default_factory=now)
    comments: list[Comment] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    histories: list[History] = field(default_factory=list)  # the changelog, oldest first
    versions: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    counted_labels: set[str] = field(default_factory=set)  # labels this issue has added to creates_by_label

    def snapshot(self) -> dict[str, Any]:
        """The searchable view of the issue at this moment."""
        return {
            "id": self.id,
            "key": self.key,
            "project": self.project,
            "issuetype": self.issuetype,
            "summary": self.summary,
            "description": copy.deepcopy(self.description),
            "labels": list(self.labels),
            "priority": self.priority,
            "status": self.status,
            "assignee": self.assignee,
            "resolution": self.resolution,
            "created": self.created,
            "updated": self.updated,
        }

    def indexed(self, at: float) -> dict[str, Any] | None:
        """The newest version visible to search at monotonic time `at`, if any."""
        for when, snap in reversed(self.versions):
            if when <= at:
                return snap
        return None

    def add_version(self, visible_at: float, snap: dict[str, Any], now: float) -> None:
        """A new version for search, dropping those no search can find again: every version written before
        the newest one visible at `now` (searches run at the clock's now, which only moves forward). A long
        run's issues kept every version they ever had (an hour's soak: gigabytes of snapshots)."""
        self.versions.append((visible_at, snap))
        newest_visible = max((i for i, (when, _) in enumerate(self.versions) if when <= now), default=0)
        del self.versions[:newest_visible]


def _service_desk_statuses() -> list[Status]:
    """The statuses of a service-desk project, the same for the lenient and the realistic workflow."""
    return [
        Status("1", "Open", "new"),
        Status("3", "In Progress", "indeterminate"),
        Status("10001", "Waiting for Customer", "indeterminate"),
        Status("10002", "Waiting for Support", "indeterminate"),
        Status("5", "Resolved", "done"),
        Status("6", "Closed", "done"),
    ]
