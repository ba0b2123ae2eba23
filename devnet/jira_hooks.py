"""Jira webhook payloads and their signed delivery, shaped like tests/vectors/jira_webhooks.json."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import TYPE_CHECKING, Any

from devnet.jira_model import Comment, Issue, adf_to_text, jira_time
from devnet.sim_webhooks import WebhookSender

if TYPE_CHECKING:
    from devnet.jira_sim import Account, JiraSim


def sign_jira_body(secret: str, body: bytes) -> str:
    """X-Hub-Signature value: sha256=<hex HMAC-SHA256 of the exact body bytes>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def changelog_item(field: str, old: str | None, new: str | None) -> dict[str, Any]:
    """A changelog item as Jira webhooks carry it."""
    return {
        "field": field,
        "fieldtype": "jira",
        "fieldId": field.lower(),
        "from": None,
        "fromString": old,
        "to": None,
        "toString": new,
    }


def hook_issue(sim: JiraSim, issue: Issue) -> dict[str, Any]:
    """The issue as webhooks carry it: a few fields only (clients re-fetch over REST)."""
    status = sim.workflow.status(issue.status)
    return {
        "id": issue.id,
        "key": issue.key,
        "self": f"{sim._root()}/rest/api/3/issue/{issue.id}",
        "fields": {
            "summary": issue.summary,
            "labels": list(issue.labels),
            "status": {"name": status.name, "id": status.id},
            "priority": {"name": issue.priority},
            "issuetype": {"name": issue.issuetype},
            "project": {"key": issue.project, "id": sim.projects[issue.project]},
            "created": jira_time(issue.created),
            "updated": jira_time(issue.updated),
        },
    }


def issue_event(
    sim: JiraSim,
    event: str,
    issue: Issue,
    actor: Account,
    items: list[dict[str, Any]],
    kind: str,
    changelog_id: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"timestamp": int(time.time() * 1000), "webhookEvent": event}
    body["issue_event_type_name"] = kind
    body["user"] = {"accountId": actor.account_id, "displayName": actor.display_name}
    body["issue"] = hook_issue(sim, issue)
    if items:
        body["changelog"] = {"id": changelog_id, "items": items}
    return body


def comment_event(sim: JiraSim, event: str, issue: Issue, comment: Comment) -> dict[str, Any]:
    return {
        "timestamp": int(time.time() * 1000),
        "webhookEvent": event,
        "comment": {
            "id": comment.id,
            "self": f"{sim._root()}/rest/api/3/issue/{issue.id}/comment/{comment.id}",
            "author": sim.user_json(comment.author),
            "body": adf_to_text(comment.body),
            "jsdPublic": comment.public,
            "created": jira_time(comment.created),
            "updated": jira_time(comment.updated),
        },
        "issue": {"id": issue.id, "key": issue.key, "fields": {"summary": issue.summary}},
    }


def deliver(
    sender: WebhookSender, url: str, secret: str | None, identifier: str, event: str, payload: dict[str, Any]
) -> None:
    """Serialise once (compact, like Jira) and sign those exact bytes on every attempt."""
    body = json.dumps(payload, separators=(",", ":")).encode()

    def headers_for(retry: int) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "X-Atlassian-Webhook-Identifier": identifier,
            "X-Atlassian-Webhook-Flow": "Primary" if retry == 0 else "Secondary",
            "X-Atlassian-Webhook-Retry": str(retry),
        }
        if secret:
            headers["X-Hub-Signature"] = sign_jira_body(secret, body)
        return headers

    sender.submit(url, identifier, event, body, headers_for)
