"""Build the configured artifact store; what is missing or unsafe is a ConfigError naming the key."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

from sidecar.artifacts.base import ArtifactStore
from sidecar.artifacts.local import LocalStore
from sidecar.artifacts.s3 import Credentials, S3Store
from sidecar.config_schema import ServiceDeskConfig
from sidecar.errors import ConfigError
from sidecar.secrets import Secret
from sidecar.urls import public_url

# Path-style bucket names as S3 allows them (3-63 lowercase letters, digits, dots, hyphens).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
_SECRET_FILES = {"s3_access_key_id": "s3-access-key-id", "s3_secret_access_key": "s3-secret-access-key"}


def open_store(
    settings: ServiceDeskConfig, secrets: Mapping[str, Secret], sources: Mapping[str, str] | None = None
) -> ArtifactStore:
    """The store `artifacts.backend` names. `sources` (Config.sources) lets errors say where a value came from."""
    checked = check_artifacts(settings, secrets, sources)
    if checked is None:
        return LocalStore(Path(settings.artifacts.dir))
    return checked()


def check_artifacts(
    settings: ServiceDeskConfig, secrets: Mapping[str, Secret], sources: Mapping[str, str] | None = None
) -> Callable[[], S3Store] | None:
    """Every artifacts.* rule, as a ConfigError naming the key (`config check` runs it too); for the s3
    backend, a maker of the store (nothing is opened here). An http:// endpoint is refused unless
    sync.allow_insecure_http is set, as for the desks."""
    artifacts = settings.artifacts

    def source(path: str) -> str:
        return (sources or {}).get(path, "default")

    if artifacts.backend == "local":
        if not artifacts.dir:
            raise ConfigError(
                "artifacts.dir", "is required by the local artifact backend", source=source("artifacts.dir")
            )
        return None
    s3 = artifacts.s3
    for key, value in (("artifacts.s3.endpoint", s3.endpoint), ("artifacts.s3.bucket", s3.bucket)):
        if not value:
            raise ConfigError(key, "is required when artifacts.backend is s3", source=source(key))
    if not re.match(r"^https?://[^/\s?#@]+(/[^\s?#]*)?$", s3.endpoint):
        raise ConfigError(
            "artifacts.s3.endpoint",
            f"must be an https:// URL without credentials, query or fragment (got {public_url(s3.endpoint)})",
            source=source("artifacts.s3.endpoint"),
        )
    if s3.endpoint.startswith("http://") and not settings.sync.allow_insecure_http:
        raise ConfigError(
            "artifacts.s3.endpoint",
            "must use https:// (set sync.allow_insecure_http for local development)",
            source=source("artifacts.s3.endpoint"),
        )
    if not _BUCKET.fullmatch(s3.bucket) or ".." in s3.bucket:
        raise ConfigError(
            "artifacts.s3.bucket",
            "must be an S3 bucket name (3-63 of a-z 0-9 . -)",
            source=source("artifacts.s3.bucket"),
        )
    if s3.prefix.startswith("/"):
        raise ConfigError("artifacts.s3.prefix", "must not start with '/'", source=source("artifacts.s3.prefix"))
    values: dict[str, str] = {}
    for name, file_name in _SECRET_FILES.items():
        secret = secrets.get(name)
        if secret is None or not secret.reveal():
            raise ConfigError(
                "artifacts.backend",
                f"is s3 but the secret {name} is missing (file {file_name} in secrets.dir, Vault key {name}, "
                f"or env VIRTENGINE_SERVICEDESK_{name.upper()})",
                source=source("artifacts.backend"),
            )
        values[name] = secret.reveal()
    credentials = Credentials(values["s3_access_key_id"], values["s3_secret_access_key"])
    return lambda: S3Store(
        endpoint=s3.endpoint,
        region=s3.region,
        bucket=s3.bucket,
        prefix=s3.prefix,
        credentials=credentials,
        timeout=s3.timeout,
    )
