"""The one protocol every desk implements, and the values that cross it.

Outbound sync (sidecar/sync) drives desks only through `Desk`; a desk never sees the chain package.
Every method raises DeskError (retryable or not, with the desk's status and Retry-After) and
nothing else; messages name the desk, the operation and the status, never ticket content.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from sidecar.errors import DeskError

if TYPE_CHECKING:  # files.py imports this module
    from sidecar.desks.files import DeskAttachment

DeskName = Literal["jira", "waldur"]


@dataclass(frozen=True)
class TicketSnapshot:
    """What a desk is told about an on-chain ticket. subject/description are plaintext, in memory only."""

    ticket_id: str
    ticket_number: str
    submitter: str
    category: str
    priority: str
    status: str
    assigned_agent: str | None = None
    related_entity: dict[str, Any] | None = None
    subject: str = ""
    description: str = ""
    content_available: bool = True  # False: the desk gets a placeholder and the reason
    content_reason: str | None = None
    last_sequence: int = 0


@dataclass(frozen=True)
class ExternalTicket:
    """A ticket at a desk: Jira issue id + key, or Waldur uuid + key."""

    desk: DeskName
    external_id: str
    key: str
    url: str


@dataclass(frozen=True)
class DeskComment:
    """A response to mirror as a comment. `marker` (the response id) makes a retried post detectable."""

    marker: str
    author: str
    is_agent: bool
    body: str
    internal: bool = False


@dataclass(frozen=True)
class DeskTicketState:
    """The desk's current view of a ticket, as re-fetched for inbound sync and stale-event checks."""

    ref: ExternalTicket
    status: str  # the desk's status name
    priority: str | None
    updated: str  # desk timestamp, ISO-8601
    labels: tuple[str, ...] = field(default_factory=tuple)
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UnmappedValue:
    """A chain value with no entry in a mapping table; `used` is the default sent instead (None: nothing)."""

    desk: DeskName
    field: str  # "priority", "status", "type", "assignee"
    chain_value: str
    used: str | None


@dataclass(frozen=True)
class DeskNote:
    """Something a desk did differently from what was asked and the job still succeeded (a field skipped
    because it is not on the desk's screen): the worker audits it as `event` with these ids-only details."""

    event: str
    details: Mapping[str, Any]


class DeskOutcome(DeskError):
    """A part of a job the desk cannot do for a reason no retry changes (no transition path reaches the
    mapped status): the job finishes with this outcome audited as `event`, instead of retrying or dying."""

    def __init__(self, message: str, *, event: str, details: Mapping[str, Any]) -> None:
        super().__init__(message, retryable=False)
        self.event = event
        self.details = dict(details)


_notes: ContextVar[list[DeskNote] | None] = ContextVar("desk_notes", default=None)


@contextmanager
def collecting_notes() -> Iterator[list[DeskNote]]:
    """Collect the notes desks make in this task (the worker wraps each job in it)."""
    notes: list[DeskNote] = []
    token = _notes.set(notes)
    try:
        yield notes
    finally:
        _notes.reset(token)


def note(entry: DeskNote) -> None:
    """Report a note to the job running in this task; outside a job (a direct call) it is dropped."""
    notes = _notes.get()
    if notes is not None:
        notes.append(entry)


# The issue as the running job last saw it, per (desk, issue id): its own read, or the answer of a write that
# returns the issue (Jira's edit with returnIssue, Waldur's PATCH and set_status). None outside a job.
_seen: ContextVar[dict[tuple[str, str], dict[str, Any]] | None] = ContextVar("desk_seen", default=None)


@contextmanager
def remembering_reads() -> Iterator[None]:
    """Within one job, a read of an issue the job has already seen (and not written since without an answer
    showing it) is answered from what it saw: the read before the writes, or the last write's answer, is the
    state a read moments later would show, short of an agent's change in between, which inbound decides."""
    token = _seen.set({})
    try:
        yield
    finally:
        _seen.reset(token)


def seen_issue(desk: DeskName, issue_id: str) -> dict[str, Any] | None:
    """The issue as this job last saw it, or None (not seen, forgotten by a write, or outside a job)."""
    seen = _seen.get()
    return None if seen is None else seen.get((desk, issue_id))


def saw_issue(desk: DeskName, issue_id: str, issue: dict[str, Any] | None) -> None:
    """Record the issue as a read or a write's answer shows it; None forgets it (a write that changed the
    issue answered without showing it, so the next read must ask the desk)."""
    seen = _seen.get()
    if seen is None:
        return
    if issue is None:
        seen.pop((desk, issue_id), None)
    else:
        seen[(desk, issue_id)] = issue


MARKER_PREFIX = "ve-response:"  # the last line of every comment the sidecar posts: "ve-response:<id>"


def author_prefix(comment: DeskComment) -> str:
    who = "Agent" if comment.is_agent else "Customer"
    return f"{who} {comment.author} wrote:"


def marker_line(marker: str) -> str:
    return f"{MARKER_PREFIX}{marker}"


def comment_plain_text(comment: DeskComment, limit: int | None = None) -> str:
    """Author line, body, and the marker as the last line: how a comment reads where a desk takes text."""
    return f"{author_prefix(comment)}\n\n{comment.body[:limit]}\n\n{marker_line(comment.marker)}"


def text_marker(text: str) -> str | None:
    """The marker on a plain-text comment's last line, if it carries one."""
    last = text.rstrip().rsplit("\n", 1)[-1].strip()
    return last[len(MARKER_PREFIX) :] if last.startswith(MARKER_PREFIX) else None


SYNCED_FIELDS = frozenset({"priority", "assignee"})  # what update_fields may leave out (`only`)


class Desk(Protocol):
    name: DeskName
    # Seconds after a create during which the desk's lookup may still miss the new ticket (Jira's
    # search index); 0 where the lookup is consistent. A create is re-sent only after this bound.
    index_lag: float
    # True where the desk itself refuses a second create for the same chain ticket (Waldur: remote_id is
    # unique), answering with DeskError.already_exists: then no lookup is needed before a create.
    unique_creates: bool

    def unmapped(self, ticket: TicketSnapshot) -> tuple[UnmappedValue, ...]:
        """The ticket's values this desk can only map to a default; the caller audits them (no I/O)."""
        ...

    async def find(self, ticket: TicketSnapshot, known_ids: tuple[str, ...] = ()) -> ExternalTicket | None:
        """The desk's ticket for this chain ticket, if one exists (the idempotency lookup before a create).

        `known_ids`: desk ids the caller already knows of, for read-after-write (Jira reconcileIssues).
        """
        ...

    def ref_problem(self, external_id: str) -> str | None:
        """Why an id registered on chain cannot name one of this desk's tickets (None: it can). No I/O."""
        ...

    async def claimed(self, ticket: TicketSnapshot, external_id: str) -> ExternalTicket | None:
        """The desk ticket behind a ref the sidecar did not record itself, only if it carries the sidecar's
        claim for this chain ticket (Jira: the issue property; Waldur: `remote_id`); None otherwise."""
        ...

    async def create(self, ticket: TicketSnapshot) -> ExternalTicket:
        """Create the desk ticket; the caller records the answer at once."""
        ...

    async def fetch(self, ref: ExternalTicket) -> DeskTicketState: ...

    async def update_fields(
        self, ref: ExternalTicket, ticket: TicketSnapshot, only: frozenset[str] = SYNCED_FIELDS
    ) -> None:
        """Priority, category (labels/type) and assignee as the chain has them now; of priority and assignee,
        only those in `only` (a field the desk already holds, or one an agent changed, is not written)."""
        ...

    async def set_status(self, ref: ExternalTicket, chain_status: str) -> None:
        """Move the desk ticket to the mapped status (Jira: through a path of transitions); a status the
        desk's workflow does not let it reach raises DeskOutcome (`status_unreachable`)."""
        ...

    async def has_comment(self, ref: ExternalTicket, marker: str) -> bool: ...

    async def add_comment(self, ref: ExternalTicket, comment: DeskComment) -> None: ...

    async def close(self, ref: ExternalTicket, reason: str) -> None:
        """Close the desk ticket (archive/purge on chain), saying why in a comment."""
        ...

    async def check(self) -> None:
        """A cheap authenticated call for health; raises DeskError when the desk does not answer well."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class FinishesCreates(Protocol):
    """A desk whose create leaves steps for after its answer is recorded (JSM: the labels, claim and
    priority a request form cannot take). The worker records the ref first, so a failed follow-up is
    retried against the same desk ticket; the create mark stays until `finish_create` succeeds."""

    finishes_creates: bool

    async def finish_create(self, ref: ExternalTicket, ticket: TicketSnapshot) -> None: ...


# inbound (desk -> chain) -------------------------------------------------------------------------
# The fields inbound sync reads back from a desk, in the desk's own vocabulary (status and priority
# names, the assignee's accountId / support-user UUID). sidecar/sync maps them to chain values.
INBOUND_FIELDS = ("status", "priority", "assignee")


@dataclass(frozen=True)
class FieldChange:
    """A field's current value at the desk and the desk's record of its last change.

    `change_id` identifies that change at the desk (Jira: the changelog history id; Waldur, which keeps no
    changelog: the issue's `modified` stamp); with the issue and field it makes inbound's idempotency key.
    `changed_at` (unix seconds) is when the desk says it changed (changelog `created`, else the issue's
    `updated`/`modified`), used by `newest_wins`. `actor`: the desk account that changed it, when known."""

    value: str | None
    change_id: str
    changed_at: float | None
    actor: str | None = None


@dataclass(frozen=True)
class DeskCommentView:
    """One comment as read back from a desk. `text` is plain text (Jira's ADF flattened) and is ticket
    content: memory only, never logged. `author_name` is the display name, never an email address.
    `marker`: the sidecar's marker line when the comment carries one (the sidecar posted it)."""

    comment_id: str
    author_id: str | None
    author_name: str
    public: bool
    text: str
    created_at: float | None
    marker: str | None = None


@dataclass(frozen=True)
class DeskIssueView:
    """An issue re-fetched for inbound sync: what the desk holds now (webhooks are only hints).

    `fields` has an entry for each of INBOUND_FIELDS the desk reports (an assignee of None: unassigned).
    `comments`: every comment, oldest first. `claim`: the chain ticket id the issue carries as the
    sidecar's claim (Jira's `virtengine` property, Waldur's `remote_id` without its prefix), if any.
    `attachments`: the issue's files as the desk lists them (#15: inbound records the new ones)."""

    ref: ExternalTicket
    updated_at: float | None
    fields: Mapping[str, FieldChange]
    comments: tuple[DeskCommentView, ...]
    claim: str | None
    attachments: tuple[DeskAttachment, ...] = ()


@dataclass(frozen=True)
class ChangedIssue:
    """A hit of a sweep: an issue the desk says changed at or after the asked time."""

    external_id: str
    key: str
    updated_at: float | None


@runtime_checkable
class ReadsChanges(Protocol):
    """What inbound sync asks of a desk (both JiraDesk and WaldurDesk implement it)."""

    name: DeskName

    def own_account(self) -> str | None:
        """The sidecar's own account at the desk (Jira accountId, Waldur user/support-user UUID), for echo
        suppression; None while unknown (Jira learns it from `check` when jira.account_id is empty)."""
        ...

    async def changed_since(self, since: float) -> list[ChangedIssue]:
        """Every issue of the sidecar's project/organization changed at or after `since` (unix seconds),
        all pages read (Jira: JQL on `updated` paged by nextPageToken; Waldur: issues newest-modified
        first until older than `since`), oldest change first."""
        ...

    async def comments_since(self, since: float) -> list[tuple[str, DeskCommentView]]:
        """(issue external id, comment) for every comment created at or after `since`, but the sidecar's own
        (its account's, or carrying its marker: echoes, which a re-read would skip). Jira: [] (a comment
        bumps the issue's `updated`, so changed_since finds it); Waldur sends no comment events and a
        comment leaves the issue's `modified` as it is, so its comment listing is polled."""
        ...

    async def attachments_since(self, since: float) -> list[str]:
        """External ids of the issues with an attachment created at or after `since` (#15: a lost
        `attachment_created` hook). Jira: [] (an attachment is an issue update, so changed_since finds it);
        Waldur saves only the attachment and leaves the issue's `modified` as it is, so its attachment listing
        is polled. The sweep re-reads those issues; `read_issue` lists their attachments."""
        ...

    async def read_issue(self, ref: ExternalTicket) -> DeskIssueView:
        """The issue's inbound fields (with their last change) and all its comments."""
        ...
