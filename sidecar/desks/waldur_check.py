"""The Waldur half of `desk check`: token and role, organization and project, request types,
priorities, the statuses `set_status` offers, and the web hook registered for the sidecar; read-only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from sidecar.config_schema import ServiceDeskConfig
from sidecar.desks.check import Check, guarded, items, listing, unmatched
from sidecar.desks.waldur import WaldurDesk
from sidecar.errors import DeskError

WALDUR_EVENTS = ("issue_creation_succeeded", "issue_update_succeeded", "issue_deletion_succeeded")
AUTH_HINT_WALDUR = "check the waldur_token secret (Waldur: user menu > API token) and waldur.base_url (ends in /api)"


class WaldurCheck:
    def __init__(self, desk: WaldurDesk, settings: ServiceDeskConfig, has_secret: bool, hook_base: str) -> None:
        self.desk = desk
        self.config = settings.waldur
        self.settings = settings
        self.has_secret = has_secret
        self.hook_url = f"{hook_base}/waldur"
        self.hook_path = f"{settings.webhook.path_prefix.rstrip('/')}/waldur"
        self.priority_names: set[str] = set()

    async def get(self, op: str, path: str, params: Mapping[str, str] | None = None) -> Any:
        return self.desk.http.json(op, await self.desk.http.request(op, "GET", path, params=params))

    async def run(self) -> list[Check]:
        try:
            me = await self.get("check: who am I", "/users/me/")
        except DeskError as exc:
            return [Check("waldur.auth", False, f"cannot read it: {exc}", AUTH_HINT_WALDUR), self.webhook_hint()]
        me = me if isinstance(me, dict) else {}
        checks = [Check("waldur.auth", True, f"authenticated as user {me.get('uuid', '?')!s}"), _role(me)]
        checks.append(await guarded("waldur.organization", "", self.organization))
        if self.config.project_uuid:
            checks.append(await guarded("waldur.project", "", self.project))
        checks.append(await guarded("waldur.request_types", "", self.catalog))
        if self.desk.catalog is not None:  # read, whatever it holds
            checks.append(self.priorities())
        checks.append(await guarded("waldur.statuses", "", self.statuses))
        checks.append(await self.webhook())
        return checks

    async def organization(self) -> Check:
        uuid = self.config.organization_uuid
        try:
            answer = await self.get("check organization", f"/customers/{quote(uuid, safe='')}/")
        except DeskError as exc:
            if exc.status != 404:
                raise
            return Check(
                "waldur.organization",
                False,
                f"no organization {uuid} visible to this user",
                "set waldur.organization_uuid to the UUID of the customer (organization) tickets belong to",
            )
        name = answer.get("name", "?") if isinstance(answer, dict) else "?"
        return Check("waldur.organization", True, f"organization {uuid} ({name})")

    async def project(self) -> Check:
        uuid = self.config.project_uuid
        hint = "set waldur.project_uuid to a project of the organization, or leave it empty"
        try:
            answer = await self.get("check project", f"/projects/{quote(uuid, safe='')}/")
        except DeskError as exc:
            if exc.status != 404:
                raise
            return Check("waldur.project", False, f"no project {uuid} visible to this user", hint)
        owner = str(answer.get("customer_uuid", "")) if isinstance(answer, dict) else ""
        if owner.replace("-", "").lower() != self.config.organization_uuid.replace("-", "").lower():
            return Check("waldur.project", False, f"project {uuid} belongs to another organization", hint)
        return Check("waldur.project", True, f"project {uuid} of the organization")

    async def catalog(self) -> Check:
        catalog = await self.desk.refresh_catalog()
        self.priority_names = set(catalog.priorities)
        unknown = unmatched([(f"waldur.type_map: {k}", v) for k, v in self.config.type_map], set(catalog.types))
        if not catalog.types or unknown:
            return Check(
                "waldur.request_types",
                False,
                f"not an active request type: {'; '.join(unknown) or 'Waldur has none'}",
                f"map to one of: {listing(catalog.types)} (GET /api/support-request-types/)",
            )
        return Check(
            "waldur.request_types", True, f"every mapped type is an active request type ({len(catalog.types)})"
        )

    def priorities(self) -> Check:
        pairs = [(f"waldur.priority_map: {k}", v) for k, v in self.config.priority_map]
        if self.config.default_priority:
            pairs.append(("waldur.default_priority", self.config.default_priority))
        if not pairs:
            return Check("waldur.priorities", True, "priorities are not synced (waldur.priority_map is empty)")
        unknown = unmatched(pairs, self.priority_names)
        if unknown:
            return Check(
                "waldur.priorities",
                False,
                f"not a Waldur priority: {'; '.join(unknown)}",
                f"map to one of: {listing(self.priority_names)} (exact names), or empty the map to send none",
            )
        return Check("waldur.priorities", True, "every mapped priority exists")

    async def statuses(self) -> Check:
        """The statuses Waldur offers (`available_statuses` plus the current one) on its newest issues."""
        params = {"customer_uuid": self.config.organization_uuid, "page_size": "50"}
        issues = [i for i in items(await self.get("check statuses", "/support-issues/", params)) if isinstance(i, dict)]
        if not issues:
            return Check("waldur.statuses", True, "not verified: no issue of the organization yet")
        if not any(issue.get("update_is_available") is True for issue in issues):
            return Check(
                "waldur.statuses",
                True,
                "this Waldur's support backend does not allow status updates: the sidecar states each status "
                "change in an internal note instead",
            )
        offered: set[str] = set()
        for issue in issues:
            offered |= {s for s in items(issue.get("available_statuses")) if isinstance(s, str)}
            if isinstance(issue.get("status"), str):
                offered.add(issue["status"])
        unknown = unmatched([(f"waldur.status_map: {k}", v) for k, v in self.config.status_map], offered)
        if unknown:
            return Check(
                "waldur.statuses",
                False,
                f"not a status Waldur offers on its newest issues: {'; '.join(unknown)}",
                f"map to one of: {listing(offered)}",
            )
        return Check("waldur.statuses", True, "every mapped status can be set (set_status)")

    def webhook_hint(self, found: str = "", ok: bool = True) -> Check:
        if not self.settings.webhook.enabled:
            return Check("waldur.webhook", True, "webhook receivers are off (webhook.enabled is false)")
        secret = "waldur_webhook_secret is set" if self.has_secret else "no waldur_webhook_secret"
        return Check(
            "waldur.webhook",
            ok,
            f"{found or f'register {self.hook_url}'}; {secret}",
            f"POST /api/hooks-web/ with destination_url {self.hook_url}, event_types {', '.join(WALDUR_EVENTS)} "
            "and content_type json (Waldur sends form-encoded bodies otherwise); have the proxy in front add "
            "the shared secret as X-Webhook-Secret, since Waldur sends none",
        )

    async def webhook(self) -> Check:
        try:
            hooks = await self.get("check hooks", "/hooks-web/")
        except DeskError as exc:
            return self.webhook_hint(f"cannot list web hooks ({exc})")
        ours = [
            h
            for h in items(hooks)
            if isinstance(h, dict) and str(h.get("destination_url", "")).rstrip("/").endswith(self.hook_path)
        ]
        if not ours:
            return self.webhook_hint()
        form = [h for h in ours if h.get("content_type") != "json"]
        if form:
            return self.webhook_hint(
                "a web hook to the sidecar is form-encoded: the sidecar refuses its deliveries", ok=False
            )
        events = {e for h in ours for e in items(h.get("event_types")) if isinstance(e, str)}
        lacking = [e for e in WALDUR_EVENTS if e not in events]
        found = "a JSON web hook to the sidecar is registered" + (f", without {', '.join(lacking)}" if lacking else "")
        return self.webhook_hint(found)


def _role(me: Mapping[str, Any]) -> Check:
    """Waldur refuses priorities and status changes from a user neither staff nor support, and creates
    from one without an email or full name (support/views.py)."""
    role = "staff" if me.get("is_staff") is True else "support" if me.get("is_support") is True else ""
    lacking = [label for key, label in (("email", "an email"), ("full_name", "a full name")) if not me.get(key)]
    if not role or lacking:
        problems = ([] if role else ["neither staff nor support"]) + [f"has no {x.split(' ', 1)[1]}" for x in lacking]
        return Check(
            "waldur.role",
            False,
            f"the token's user is {' and '.join(problems)}",
            "give the sidecar's Waldur user the support (or staff) role, an email and a full name",
        )
    return Check("waldur.role", True, f"the token's user has the {role} role, an email and a full name")
