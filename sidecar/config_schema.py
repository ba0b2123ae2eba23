"""The configuration's shape: one frozen dataclass per section, each key declared once.

Each field's metadata carries its help text, its environment variable, its accepted values and
its kind (duration, listen address...). Loading, `config check`, the flags and the README's
reference table are all derived from these declarations, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ENV_PREFIX = "VIRTENGINE_SERVICEDESK_"

Pairs = tuple[tuple[str, str], ...]
PRIORITIES = ("low", "normal", "high", "urgent")
STATUSES = ("open", "assigned", "in_progress", "waiting_customer", "waiting_support", "resolved", "closed", "archived")
CATEGORIES = ("account", "identity", "billing", "provider", "marketplace", "technical", "security", "other")

ConflictStrategy = Literal["on_chain_wins", "external_wins", "newest_wins", "manual"]
LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["json", "text"]


def key(
    default: Any,
    help: str,
    *,
    env: str | None = None,
    kind: str = "",
    bounds: tuple[float, float] | None = None,
    map_keys: tuple[str, ...] = (),
) -> Any:
    """Declare one configuration key. `env` overrides the derived variable name (guide names)."""
    meta: dict[str, Any] = {"help": help, "env": env, "kind": kind, "bounds": bounds, "map_keys": map_keys}
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for list defaults")
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class JiraConfig:
    base_url: str = key("", "Jira Cloud site URL; empty disables Jira", env="VIRTENGINE_SERVICEDESK_JIRA_URL")
    username: str = key("", "account email the API token belongs to", env="VIRTENGINE_SERVICEDESK_JIRA_USERNAME")
    project_key: str = key(
        "VESUPPORT", "project new issues are created in", env="VIRTENGINE_SERVICEDESK_JIRA_PROJECT_KEY"
    )
    issue_type: str = key("Service Request", "issue type of created issues")
    request_type_id: str = key("", "JSM request type id (with service_desk_id); empty creates plain issues")
    service_desk_id: str = key("", "JSM service desk id the request type belongs to")
    account_id: str = key("", "the sidecar's own Jira accountId, so its own changes are not synced back")
    timeout: float = key(30.0, "timeout of one Jira request", kind="duration", bounds=(0.1, 300))
    index_lag: float = key(
        60.0,
        "how long Jira search may miss a new issue; a create whose answer was lost is re-sent only after this",
        kind="duration",
        bounds=(0, 3600),
    )
    priority_map: Pairs = key(
        (("low", "Low"), ("normal", "Medium"), ("high", "High"), ("urgent", "Highest")),
        "chain priority -> Jira priority name",
        kind="map",
        map_keys=PRIORITIES,
    )
    status_map: Pairs = key(
        (
            ("open", "Open"),
            ("assigned", "In Progress"),
            ("in_progress", "In Progress"),
            ("waiting_customer", "Waiting for Customer"),
            ("waiting_support", "Waiting for Support"),
            ("resolved", "Resolved"),
            ("closed", "Closed"),
            ("archived", "Closed"),
        ),
        "chain status -> Jira status name",
        kind="map",
        map_keys=STATUSES,
    )
    default_priority: str = key("Medium", "Jira priority used for an unmapped chain priority (audited)")
    resolution: str = key(
        "Done", "Jira resolution set where a transition's screen requires one (Resolve, Cancel), by name"
    )
    assignee_map: Pairs = key(
        (), "chain agent address -> Jira accountId; an unmapped agent leaves the assignee as is (audited)", kind="map"
    )
    requests_per_second: float = key(
        10.0,
        "requests per second the sidecar sends to each Jira endpoint (one HTTP method on one path, ids aside),"
        " as Jira Cloud's burst limit counts them; a burst 429 holds back that endpoint only; 0 = no pacing",
        bounds=(0, 10_000),
    )
    max_concurrency: int = key(
        4, "jobs and re-reads run at once against Jira (each way), and its connections", bounds=(1, 64)
    )


@dataclass(frozen=True)
class WaldurConfig:
    base_url: str = key(
        "", "Waldur API URL ending in /api; empty disables Waldur", env="VIRTENGINE_SERVICEDESK_WALDUR_URL"
    )
    organization_uuid: str = key(
        "",
        "Waldur customer (organization) UUID tickets belong to",
        env="VIRTENGINE_SERVICEDESK_WALDUR_ORG_UUID",
    )
    project_uuid: str = key("", "Waldur project UUID tickets belong to (optional)")
    username: str = key("", "the sidecar's own Waldur username, so its own changes are not synced back")
    timeout: float = key(30.0, "timeout of one Waldur request", kind="duration", bounds=(0.1, 300))
    priority_map: Pairs = key(
        (),
        "chain priority -> Waldur priority name (GET /api/support-priorities/, exact); a stock Waldur has no "
        "priorities: empty (with an empty default_priority) sends none",
        kind="map",
        map_keys=PRIORITIES,
    )
    status_map: Pairs = key(
        (
            ("open", "Open"),
            ("assigned", "Open"),
            ("in_progress", "Open"),
            ("waiting_customer", "Open"),
            ("waiting_support", "Open"),
            ("resolved", "Resolved"),
            ("closed", "Resolved"),
            ("archived", "Resolved"),
        ),
        "chain status -> Waldur status (built-in backend: Open, Resolved, Canceled); set through set_status where "
        "the issue's backend allows updates, else stated in an internal note",
        kind="map",
        map_keys=STATUSES,
    )
    type_map: Pairs = key(
        tuple((category, "Service Request") for category in CATEGORIES),
        "chain category -> Waldur request type name (an active one: GET /api/support-request-types/); a name "
        "Waldur lacks falls back to its first active request type (audited)",
        kind="map",
        map_keys=CATEGORIES,
    )
    default_priority: str = key(
        "", "Waldur priority used for an unmapped chain priority (audited); empty sends no priority"
    )
    catalog_refresh: float = key(
        600.0,
        "how often the request types and priorities are read again (also read at start)",
        kind="duration",
        bounds=(10, 86400),
    )
    assignee_map: Pairs = key(
        (),
        "chain agent address -> Waldur support user UUID; an unmapped agent leaves the assignee as is (audited)",
        kind="map",
    )
    requests_per_second: float = key(
        10.0,
        "requests per second the sidecar sends to Waldur, all endpoints together (Waldur throttles no support"
        " endpoint: this protects your server); 0 = none",
        bounds=(0, 10_000),
    )
    max_concurrency: int = key(
        4, "jobs and re-reads run at once against Waldur (each way), and its connections", bounds=(1, 64)
    )


@dataclass(frozen=True)
class SyncConfig:
    sync_interval: float = key(
        30.0,
        "how often desks are polled and reconciled",
        env="VIRTENGINE_SERVICEDESK_SYNC_INTERVAL",
        kind="duration",
        bounds=(1, 86400),
    )
    batch_size: int = key(
        50,
        "chain events turned into desk jobs per transaction",
        env="VIRTENGINE_SERVICEDESK_SYNC_BATCH_SIZE",
        bounds=(1, 500),
    )
    conflict_resolution: ConflictStrategy = key(
        "on_chain_wins", "which side wins a field changed on both", env="VIRTENGINE_SERVICEDESK_CONFLICT_RESOLUTION"
    )
    enable_inbound: bool = key(True, "sync desk changes to the chain")
    enable_outbound: bool = key(True, "sync chain changes to the desks")
    sync_attachments: bool = key(True, "copy attachments between chain artifacts and desks")
    max_attachment_bytes: int = key(
        10 * 1024 * 1024,
        "largest attachment copied either way; a bigger one is withheld with a note at the desk",
        bounds=(1, 1024 * 1024 * 1024),
    )
    allowed_content_types: tuple[str, ...] = key(
        ("image/*", "application/pdf", "text/plain", "application/json", "application/zip"),
        "attachment types copied (checked by content as well as by name); others are withheld with a note",
    )
    max_pending: int = key(10_000, "pending events before the chain follower pauses", bounds=(10, 10_000_000))
    allow_insecure_http: bool = key(False, "allow http:// desk URLs (development only)")


@dataclass(frozen=True)
class RetryConfig:
    max_retries: int = key(5, "attempts before a job is dead-lettered", bounds=(0, 100))
    initial_backoff: float = key(1.0, "first retry delay", kind="duration", bounds=(0.01, 3600))
    max_backoff: float = key(300.0, "longest retry delay", kind="duration", bounds=(0.01, 86400))
    backoff_multiplier: float = key(2.0, "growth of the delay per attempt", bounds=(1.0, 10.0))


@dataclass(frozen=True)
class WebhookConfig:
    enabled: bool = key(True, "serve the webhook receivers (health and metrics are always served)")
    listen_addr: str = key(
        ":8480",
        "host:port of the public HTTP server: receivers and health (':8480' = all interfaces)",
        env="VIRTENGINE_SERVICEDESK_WEBHOOK_LISTEN",
        kind="listen",
    )
    path_prefix: str = key(
        "/webhooks", "URL prefix of receivers and health", env="VIRTENGINE_SERVICEDESK_WEBHOOK_PATH_PREFIX"
    )
    require_signature: bool = key(
        True,
        "reject webhooks without a valid signature; false only lets a desk with no webhook secret send unsigned"
        " hooks (with a secret a signature is always required)",
        env="VIRTENGINE_SERVICEDESK_WEBHOOK_REQUIRE_SIGNATURE",
    )
    rate_limit_per_second: int = key(
        100, "webhook requests accepted per second, over all sources and both desks", bounds=(1, 100_000)
    )
    rate_limit_per_source: int = key(
        50, "webhook requests accepted per second from one source address (an IPv6 /64)", bounds=(1, 100_000)
    )
    auth_failures_per_source: int = key(
        5,
        "webhook requests per second one source may fail authentication with (source, size, signature)"
        " before all its requests are answered 429",
        bounds=(1, 100_000),
    )
    max_queued_writes: int = key(
        64,
        "webhook records waiting for the database at once (written in group commits); more are answered 503",
        bounds=(1, 1000),
    )
    max_body_bytes: int = key(1_048_576, "largest webhook body accepted", bounds=(1024, 64 * 1_048_576))
    allowed_sources: tuple[str, ...] = key((), "CIDRs webhooks may come from; empty allows any", kind="cidrs")
    trusted_proxies: tuple[str, ...] = key(
        (),
        "CIDRs of reverse proxies whose X-Forwarded-For names the client (the first untrusted hop from the right); "
        "empty ignores the header",
        kind="cidrs",
    )
    read_timeout: float = key(
        10.0,
        "a request's headers, then its body, must arrive within this; slower clients are cut off (body: 408)",
        kind="duration",
        bounds=(0.5, 600),
    )
    max_connections: int = key(256, "connections served at once; requests beyond are answered 503", bounds=(1, 100_000))
    max_age: float = key(3600.0, "oldest webhook timestamp accepted", kind="duration", bounds=(60, 86400 * 7))


@dataclass(frozen=True)
class AuditConfig:
    enabled: bool = key(True, "write the audit log")
    log_level: LogLevel = key("info", "log level of the process")
    retention_days: int = key(90, "days audit rows are kept", bounds=(1, 36500))


@dataclass(frozen=True)
class ChainConfig:
    rpc_url: str = key("http://127.0.0.1:26657", "CometBFT RPC of the node", kind="url")
    ws_url: str = key("", "CometBFT websocket; empty derives ws://<rpc host>/websocket", kind="url")
    chain_id: str = key("", "expected chain id; empty adopts the node's on first start")
    start_height: int = key(0, "height a new cursor starts at; 0 = the node's head at first start", bounds=(0, 2**62))
    key_file: str = key("", "file with the signing key (hex or mnemonic), mode 0600")
    address_prefix: str = key("virtengine", "bech32 prefix of addresses")
    fee_denom: str = key("uve", "fee denomination")
    gas_price: float = key(0.025, "fee per gas unit", bounds=(0, 1e6))
    gas_multiplier: float = key(1.3, "simulated gas is multiplied by this", bounds=(1.0, 10.0))
    gas_limit_max: int = key(2_000_000, "cap on a tx's gas limit", bounds=(10_000, 100_000_000))
    gas_fallback: int = key(300_000, "gas limit used when simulation fails", bounds=(10_000, 100_000_000))
    max_msgs_per_tx: int = key(50, "Msgs batched in one tx", bounds=(1, 200))
    timeout_height_delta: int = key(20, "blocks a tx may wait before it expires", bounds=(2, 10_000))
    poll_interval: float = key(2.0, "/status poll period", kind="duration", bounds=(0.05, 600))
    no_block_alarm: float = key(
        60.0, "alarm and reconnect when no block arrives for this long", kind="duration", bounds=(1, 86400)
    )
    request_timeout: float = key(
        10.0, "a node RPC request fails after this long without progress", kind="duration", bounds=(0.1, 600)
    )
    max_lag_blocks: int = key(
        20, "the cursor may trail the node's head by this many blocks and still count as healthy", bounds=(1, 10**9)
    )


@dataclass(frozen=True)
class GrpcConfig:
    enabled: bool = key(True, "serve the gRPC control API")
    listen: str = key(
        "127.0.0.1:8481",
        "host:port or unix:///path (created 0600) of the gRPC control API; a non-loopback host:port needs TLS "
        "and client certificates or a grpc-token",
        kind="grpc_listen",
    )
    tls_cert: str = key("", "PEM certificate (chain) the control API serves TLS with")
    tls_key: str = key("", "PEM private key of tls_cert, mode 0600")
    client_ca: str = key("", "PEM CA bundle: when set, callers must present a client certificate it signed")
    allow_content: bool = key(False, "GetTicket may return decrypted ticket content when a caller asks")
    mutating_rate: float = key(
        5.0, "mutating control calls allowed per second (burst 20), over all callers", bounds=(0.01, 10_000)
    )


@dataclass(frozen=True)
class ObserveConfig:
    listen: str = key(
        "127.0.0.1:8482",
        "host:port serving /metrics and verbose health, apart from the public webhook port; "
        "empty serves both on webhook.listen_addr",
        kind="listen_or_empty",
    )


@dataclass(frozen=True)
class StoreConfig:
    path: str = key("./data/sidecar.db", "SQLite database file (WAL mode)")


@dataclass(frozen=True)
class LoggingConfig:
    format: LogFormat = key("json", "json (one object per line) or text", env="VIRTENGINE_SERVICEDESK_LOG_FORMAT")


@dataclass(frozen=True)
class S3Config:
    endpoint: str = key("", "S3-compatible endpoint URL, e.g. https://s3.eu-central-1.amazonaws.com", kind="url")
    region: str = key("us-east-1", "region the requests are signed for (SigV4)")
    bucket: str = key("", "bucket holding the artifacts")
    prefix: str = key("servicedesk/", "key prefix of the sidecar's objects in the bucket")
    timeout: float = key(30.0, "timeout of one S3 request", kind="duration", bounds=(0.1, 600))


@dataclass(frozen=True)
class ArtifactsConfig:
    backend: Literal["local", "s3"] = key("local", "where encrypted attachment objects are kept")
    dir: str = key("./data/artifacts", "directory of the local backend (objects are encrypted, mode 0600)")
    s3: S3Config = field(default_factory=S3Config)


@dataclass(frozen=True)
class VaultConfig:
    addr: str = key("", "Vault address; empty disables Vault", kind="url")
    mount: str = key("secret", "KV v2 mount point")
    path: str = key("virtengine/servicedesk", "secret path under the mount")
    token_file: str = key("", "file holding the Vault token (else VAULT_TOKEN)")
    timeout: float = key(10.0, "timeout of Vault requests", kind="duration", bounds=(0.1, 300))


@dataclass(frozen=True)
class SecretsConfig:
    dir: str = key("", "secrets directory (Kubernetes secret mount), one file per secret")
    allow_env: bool = key(True, "accept secrets from environment variables (with a warning)")
    vault: VaultConfig = field(default_factory=VaultConfig)


@dataclass(frozen=True)
class ServiceDeskConfig:
    enabled: bool = key(
        True, "run the bridge; false keeps only health and metrics", env="VIRTENGINE_SERVICEDESK_ENABLED"
    )
    jira: JiraConfig = field(default_factory=JiraConfig)
    waldur: WaldurConfig = field(default_factory=WaldurConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    chain: ChainConfig = field(default_factory=ChainConfig)
    grpc: GrpcConfig = field(default_factory=GrpcConfig)
    observe: ObserveConfig = field(default_factory=ObserveConfig)
    artifacts: ArtifactsConfig = field(default_factory=ArtifactsConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    secrets: SecretsConfig = field(default_factory=SecretsConfig)
