"""What the control calls need from the running sidecar, gathered once by app.py."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import grpc

from sidecar.chain.envelope import EnvelopeKey
from sidecar.chain.rpc import CometRpc
from sidecar.chain.signer import Signer
from sidecar.control.caller import caller
from sidecar.desks.base import ReadsChanges
from sidecar.observe.activity import ActivityFeed
from sidecar.observe.audit import Auditor
from sidecar.observe.health import HealthState
from sidecar.store.audit import AuditEntry
from sidecar.store.db import Store
from sidecar.store.pauses import PauseBook
from sidecar.sync.content import ContentOpener


@dataclass
class ControlDeps:
    store: Store
    health: HealthState
    auditor: Auditor | None = None
    outbound_desks: list[str] = field(default_factory=list)  # desks served outbound (jobs are queued for them)
    inbound_desks: list[str] = field(default_factory=list)  # desks the inbound engine reads
    signer: Signer | None = None
    rpc: CometRpc | None = None
    opener: ContentOpener | None = None
    allow_content: bool = False  # grpc.allow_content: GetTicket may return decrypted content
    fee_denom: str = "uve"
    pauses: PauseBook | None = None  # the engines' view of the pauses; Pause/Resume update it after the store
    activity: ActivityFeed | None = None  # what WatchEvents streams; the control calls publish to it too
    # The desk clients Reconcile reads issues from (name -> client; JiraDesk and WaldurDesk read changes).
    desk_readers: dict[str, ReadsChanges] = field(default_factory=dict)  # Reconcile reads the desks with them
    support_key: EnvelopeKey | None = None  # Reconcile checks the events it takes in as the follower does

    @property
    def configured_desks(self) -> list[str]:
        return sorted(set(self.outbound_desks) | set(self.inbound_desks))

    @staticmethod
    def by_caller(entry: AuditEntry) -> AuditEntry:
        """The entry with the caller the auth layer identified as its actor."""
        return replace(entry, actor=caller())

    async def audit(self, entry: AuditEntry) -> None:
        """Record a mutating call, with its caller as the actor."""
        if self.auditor is not None:
            await self.auditor.record(self.by_caller(entry))


async def abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, detail: str) -> None:
    """context.abort, typed: it always raises."""
    await context.abort(code, detail)
