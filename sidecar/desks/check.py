"""What `servicedesk-sidecar desk check` reports: for each configured desk, each thing the sidecar
needs from it (credentials and role, project or organisation, request type, the mapped statuses,
priorities and types, the web hook) and whether the desk has it, with a hint where it does not.

Read-only: nothing is created, edited or moved. The desk halves are jira_check.py and waldur_check.py;
this module holds the result types and runs them. Details name configuration values and desk ids
only, never secrets or ticket content.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from sidecar.config_schema import ServiceDeskConfig
from sidecar.desks.base import DeskName
from sidecar.errors import DeskError
from sidecar.observe.metrics import Metrics
from sidecar.secrets import Secret
from sidecar.urls import public_url


@dataclass(frozen=True)
class Check:
    """One thing the sidecar needs from a desk: `ok`, what was found, and what to do about it."""

    name: str
    ok: bool
    detail: str
    hint: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "hint": self.hint}


@dataclass(frozen=True)
class DeskReport:
    desk: DeskName
    url: str
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    def as_json(self) -> dict[str, Any]:
        return {"desk": self.desk, "url": self.url, "ok": self.ok, "checks": [c.as_json() for c in self.checks]}


async def check_desks(
    settings: ServiceDeskConfig,
    secrets: Mapping[str, Secret],
    *,
    public_base: str = "",
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[DeskReport]:
    """A report per configured desk (none configured: an empty list). Config loading has made sure each
    configured desk has its token."""
    from sidecar.desks.jira import JiraDesk  # the desk modules import Check from here
    from sidecar.desks.jira_check import JiraCheck, jira_webhook
    from sidecar.desks.waldur import WaldurDesk
    from sidecar.desks.waldur_check import WaldurCheck

    metrics = Metrics()
    insecure = settings.sync.allow_insecure_http
    base = public_base.rstrip("/") or "https://<public name>"
    hook_base = f"{base}{settings.webhook.path_prefix.rstrip('/')}"
    reports: list[DeskReport] = []
    if settings.jira.base_url:
        jira = JiraDesk(
            settings.jira,
            secrets["jira_api_token"].reveal(),
            metrics=metrics,
            allow_insecure_http=insecure,
            transport=transport,
        )
        try:
            checks = await JiraCheck(jira, settings).run()
        finally:
            await jira.aclose()
        checks.append(jira_webhook(settings, "jira_webhook_secret" in secrets, f"{hook_base}/jira"))
        reports.append(DeskReport("jira", public_url(settings.jira.base_url), tuple(checks)))
    if settings.waldur.base_url:
        waldur = WaldurDesk(
            settings.waldur,
            secrets["waldur_token"].reveal(),
            metrics=metrics,
            allow_insecure_http=insecure,
            transport=transport,
        )
        try:
            checks = await WaldurCheck(waldur, settings, "waldur_webhook_secret" in secrets, hook_base).run()
        finally:
            await waldur.aclose()
        reports.append(DeskReport("waldur", public_url(settings.waldur.base_url), tuple(checks)))
    return reports


async def guarded(name: str, hint: str, step: Callable[[], Awaitable[Check]]) -> Check:
    """A step whose desk call failed becomes a failing check naming the error (already redacted)."""
    try:
        return await step()
    except DeskError as exc:
        return Check(name, False, f"cannot read it: {exc}", hint)


def unmatched(pairs: list[tuple[str, str]], available: set[str], fold: bool = False) -> list[str]:
    """`key: chain value -> 'desk value'` for each mapped value the desk lacks."""
    have = {v.lower() if fold else v for v in available}
    return [f"{key} -> {value!r}" for key, value in pairs if (value.lower() if fold else value) not in have]


def items(value: Any) -> list[Any]:
    """A JSON array of a desk answer; anything else (a malformed answer) reads as empty."""
    return value if isinstance(value, list) else []


def listing(values: list[str] | set[str] | tuple[str, ...]) -> str:
    shown = sorted(values) if isinstance(values, set) else list(values)
    return ", ".join(repr(v) for v in shown[:30]) or "none"
