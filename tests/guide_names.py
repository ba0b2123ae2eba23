"""The names the product promises operators, kept by the project: tests/test_docs.py checks each one
exists in code and is in docs/operations-guide.md, and that this table covers every name of the
operations guide the project started from (where ../shared holds it)."""

from __future__ import annotations

# Configuration keys (paths under `servicedesk:`).
CONFIG_KEYS = (
    "enabled",
    "jira.base_url",
    "jira.username",
    "jira.project_key",
    "jira.issue_type",
    "jira.timeout",
    "waldur.base_url",
    "waldur.organization_uuid",
    "waldur.timeout",
    "sync.sync_interval",
    "sync.batch_size",
    "sync.conflict_resolution",
    "sync.enable_inbound",
    "sync.enable_outbound",
    "sync.sync_attachments",
    "sync.max_attachment_bytes",
    "sync.allowed_content_types",
    "sync.max_pending",
    "retry.max_retries",
    "retry.initial_backoff",
    "retry.max_backoff",
    "retry.backoff_multiplier",
    "webhook.enabled",
    "webhook.listen_addr",
    "webhook.path_prefix",
    "webhook.require_signature",
    "webhook.rate_limit_per_second",
    "audit.enabled",
    "audit.log_level",
    "audit.retention_days",
    "artifacts.backend",
    "artifacts.dir",
)

# Environment variable -> the configuration key it sets.
KEY_ENV_VARS = {
    "VIRTENGINE_SERVICEDESK_JIRA_URL": "jira.base_url",
    "VIRTENGINE_SERVICEDESK_JIRA_USERNAME": "jira.username",
    "VIRTENGINE_SERVICEDESK_JIRA_PROJECT_KEY": "jira.project_key",
    "VIRTENGINE_SERVICEDESK_WALDUR_URL": "waldur.base_url",
    "VIRTENGINE_SERVICEDESK_WALDUR_ORG_UUID": "waldur.organization_uuid",
    "VIRTENGINE_SERVICEDESK_SYNC_INTERVAL": "sync.sync_interval",
    "VIRTENGINE_SERVICEDESK_SYNC_BATCH_SIZE": "sync.batch_size",
    "VIRTENGINE_SERVICEDESK_CONFLICT_RESOLUTION": "sync.conflict_resolution",
    "VIRTENGINE_SERVICEDESK_WEBHOOK_LISTEN": "webhook.listen_addr",
    "VIRTENGINE_SERVICEDESK_WEBHOOK_PATH_PREFIX": "webhook.path_prefix",
    "VIRTENGINE_SERVICEDESK_WEBHOOK_REQUIRE_SIGNATURE": "webhook.require_signature",
}

# Secret (canonical and Vault name) -> (its environment variable, its file in a secrets directory).
SECRETS = {
    "jira_api_token": ("VIRTENGINE_SERVICEDESK_JIRA_API_TOKEN", "jira-api-token"),
    "jira_webhook_secret": ("VIRTENGINE_SERVICEDESK_JIRA_WEBHOOK_SECRET", "jira-webhook-secret"),
    "waldur_token": ("VIRTENGINE_SERVICEDESK_WALDUR_TOKEN", "waldur-token"),
    "waldur_webhook_secret": ("VIRTENGINE_SERVICEDESK_WALDUR_WEBHOOK_SECRET", "waldur-webhook-secret"),
    "s3_access_key_id": ("VIRTENGINE_SERVICEDESK_S3_ACCESS_KEY_ID", "s3-access-key-id"),
    "s3_secret_access_key": ("VIRTENGINE_SERVICEDESK_S3_SECRET_ACCESS_KEY", "s3-secret-access-key"),
}

# HTTP routes with the default webhook.path_prefix: (method, path).
ENDPOINTS = (
    ("GET", "/webhooks/health"),
    ("GET", "/metrics"),
    ("POST", "/webhooks/jira"),
    ("POST", "/webhooks/waldur"),
)

# The health answer's keys, in order.
HEALTH_FIELDS = ("healthy", "jira_status", "waldur_status", "last_sync", "pending_events", "failed_events")

# Verbose health's (`?verbose=1`) "inbound" object: its keys, in order.
INBOUND_HEALTH_FIELDS = ("pending_rereads", "dead_rereads", "conflicts_open")

# Metric name as exposed -> its labels (histograms also carry `le` on their buckets).
METRICS: dict[str, tuple[str, ...]] = {
    "servicedesk_sync_events_total": ("direction", "status"),
    "servicedesk_sync_latency_seconds": ("direction", "service"),
    "servicedesk_api_requests_total": ("service", "method", "status"),
    "servicedesk_queue_pending": (),
    "servicedesk_queue_failed": (),
    "servicedesk_health_check": (),
    "servicedesk_desk_auth_failed": ("desk",),
    "servicedesk_sync_conflicts_total": ("desk", "field", "rule"),
    "servicedesk_sync_conflicts_open": (),
    "servicedesk_inbound_queue": ("desk", "state"),
    "servicedesk_jobs": ("desk", "state"),
    "servicedesk_desk_rate_limit_waits_total": ("desk", "cause"),
    "servicedesk_desk_rate_limit_wait_seconds_total": ("desk", "cause"),
}

# Alert name -> (expression, for, severity, summary), as deploy/prometheus/servicedesk-alerts.yml holds them.
ALERTS = {
    "ServiceDeskSyncFailed": (
        'increase(servicedesk_sync_events_total{status="failed"}[5m]) > 5',
        "5m",
        "warning",
        "Service desk sync failures detected",
    ),
    "ServiceDeskQueueBacklog": ("servicedesk_queue_pending > 100", "10m", "warning", "Service desk sync queue backlog"),
    "ServiceDeskUnhealthy": ("servicedesk_health_check != 1", "5m", "critical", "Service desk bridge unhealthy"),
    "ServiceDeskAuthFailed": (
        "servicedesk_desk_auth_failed == 1",
        "2m",
        "critical",
        "Service desk refuses the sidecar's credentials",
    ),
}

# What the guide's log analysis greps for -> what it finds: every failed sync in either direction, and the
# webhook deliveries with each stage of inbound sync. (Its third grep, "audit", is `audit export`: the
# audit history is a hash-chained table, not log lines.)
LOG_GREPS = {
    "sync failed": "every failed sync",
    "external callback": "webhook deliveries and the stages of inbound sync",
}
AUDIT_GREP = "audit"

CONFLICT_STRATEGIES = ("on_chain_wins", "external_wins", "newest_wins", "manual")

# Limits of the capacity table: configuration key -> its default.
LIMIT_DEFAULTS: dict[str, float] = {
    "sync.sync_interval": 30.0,
    "sync.batch_size": 50,
    "sync.max_pending": 10_000,
    "webhook.rate_limit_per_second": 100,
    "sync.max_attachment_bytes": 10 * 1024 * 1024,
}

# Attachments (#15): each audit event the engines write -> the detail keys the manual's table gives it.
ATTACHMENT_AUDIT: dict[str, tuple[str, ...]] = {
    "attachment_synced": (
        "direction",
        "job_id",
        "row_id",
        "desk_attachment_id",
        "adopted",
        "sha256",
        "size",
        "intent_id",
    ),
    "attachment_withheld": ("direction", "job_id", "row_id", "reason", "desk_attachment_id", "attempts", "note"),
    "attachment_failed": ("desk_attachment_id", "reason", "attempts"),
    "artifacts_collected": ("count", "backend", "stored_before", "refs"),
}


def env_vars() -> set[str]:
    """Every environment variable of the table, configuration and secrets alike."""
    return set(KEY_ENV_VARS) | {env for env, _ in SECRETS.values()}
