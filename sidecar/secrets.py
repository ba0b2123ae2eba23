"""Secret values: a type that never shows its value, and the sources secrets come from.

Sources, in order of preference: a secrets directory (a Kubernetes secret mount, one file per
key), HashiCorp Vault (KV v2), then the environment (accepted with a warning).
A file holding a secret (secrets-dir file, Vault token file, chain key file) is refused when group or
others can access it, and loading any secret makes the process undumpable (no core file holds it).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hmac
import logging
import os
import resource
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from sidecar.errors import ConfigError
from sidecar.urls import public_url

log = logging.getLogger(__name__)
_PR_SET_DUMPABLE = 4
_undumpable = False


class Secret:
    """A secret string. repr/str/format print a mask; only reveal() gives the value."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self.source = source

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(<redacted>, source={self.source!r})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self.source)

    def __reduce__(self) -> NoReturn:
        raise TypeError("secrets are not picklable")


@dataclass(frozen=True)
class SecretSpec:
    """One secret the sidecar knows: its canonical name, file names and env var."""

    name: str  # canonical, as in Vault: jira_api_token
    env: str
    help: str

    @property
    def file_names(self) -> tuple[str, str]:
        """Names accepted in a secrets directory: the guide's dashed form and the underscore form."""
        return (self.name.replace("_", "-"), self.name)


SECRET_SPECS: tuple[SecretSpec, ...] = (
    SecretSpec("jira_api_token", "VIRTENGINE_SERVICEDESK_JIRA_API_TOKEN", "Jira API token of jira.username"),
    SecretSpec("jira_webhook_secret", "VIRTENGINE_SERVICEDESK_JIRA_WEBHOOK_SECRET", "HMAC secret of Jira webhooks"),
    SecretSpec("waldur_token", "VIRTENGINE_SERVICEDESK_WALDUR_TOKEN", "Waldur API token"),
    SecretSpec(
        "waldur_webhook_secret", "VIRTENGINE_SERVICEDESK_WALDUR_WEBHOOK_SECRET", "shared secret of Waldur hooks"
    ),
    SecretSpec(
        "signing_key",
        "VIRTENGINE_SERVICEDESK_SIGNING_KEY",
        "chain signing key (hex or BIP-39 mnemonic); chain.key_file is preferred",
    ),
    SecretSpec(
        "support_private_key",
        "VIRTENGINE_SERVICEDESK_SUPPORT_PRIVATE_KEY",
        "X25519 private key (base64) that decrypts ticket payloads addressed to the support desk",
    ),
    SecretSpec("grpc_token", "VIRTENGINE_SERVICEDESK_GRPC_TOKEN", "bearer token of control API callers (every call)"),
    SecretSpec(
        "grpc_read_token", "VIRTENGINE_SERVICEDESK_GRPC_READ_TOKEN", "bearer token of the control API's read-only calls"
    ),
    SecretSpec("s3_access_key_id", "VIRTENGINE_SERVICEDESK_S3_ACCESS_KEY_ID", "access key id of artifacts.s3"),
    SecretSpec(
        "s3_secret_access_key", "VIRTENGINE_SERVICEDESK_S3_SECRET_ACCESS_KEY", "secret access key of artifacts.s3"
    ),
)

SECRET_NAMES = frozenset(spec.name for spec in SECRET_SPECS)


def forbid_core_dumps() -> bool:
    """Make this process undumpable (no core file, no ptrace by peers); True when prctl applied too.

    Called wherever a secret or key is loaded, not at import: importing a module should not change the
    process. Idempotent; the rlimit is inherited by children, the prctl flag is reset by their exec."""
    global _undumpable
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if _undumpable:
        return True
    if not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return False
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        _undumpable = bool(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        log.warning("prctl(PR_SET_DUMPABLE) unavailable: relying on RLIMIT_CORE=0 only")
    return _undumpable


def read_private_file(file: str | Path, key_path: str) -> str:
    """The text of a file holding a secret, refusing one that group or others can read, write or run.

    Errors name `key_path`, the file and the fix, never the content. The one permission check for the
    secrets dir, the Vault token file and chain.key_file; a symlink (a Kubernetes mount) is judged by
    its target."""
    path = Path(file)
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(key_path, f"cannot be read: {file} ({exc.strerror})", source=key_path) from None
    if not stat.S_ISREG(mode):
        raise ConfigError(key_path, f"is not a regular file: {file}", source=key_path)
    if mode & 0o077:
        raise ConfigError(
            key_path,
            f"{file} is accessible by group or others (mode {stat.S_IMODE(mode):03o}); fix: chmod 600 {file}",
            source=key_path,
        )
    forbid_core_dumps()
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise ConfigError(key_path, f"cannot be read as UTF-8 text: {file}", source=key_path) from None


def read_secrets_dir(directory: Path) -> dict[str, Secret]:
    """Read every known secret present in `directory`; trailing newlines are stripped."""
    if not directory.is_dir():
        raise ConfigError("secrets.dir", f"is not a directory: {directory}", source="secrets.dir")
    found: dict[str, Secret] = {}
    for spec in SECRET_SPECS:
        for file_name in spec.file_names:
            path = directory / file_name
            if path.exists():
                value = read_private_file(path, "secrets.dir").strip()
                if value:
                    found[spec.name] = Secret(value, f"secrets-dir:{path}")
                break
    return found


def read_vault(addr: str, mount: str, path: str, token: Secret, timeout: float) -> dict[str, Secret]:
    """Read the KV v2 secret at mount/path; keys named like SECRET_SPECS become secrets."""
    import hvac  # imported here: only deployments that use Vault pay for it

    forbid_core_dumps()
    try:
        client = hvac.Client(url=addr, token=token.reveal(), timeout=timeout)
        answer: dict[str, Any] = client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=mount, raise_on_deleted_version=True
        )
    except Exception as exc:  # hvac raises many types; translate at this one edge
        raise ConfigError(
            "secrets.vault",
            f"could not read {mount}/{path} from Vault at {public_url(addr)}: {type(exc).__name__}",
            source="secrets.vault.addr",
        ) from None
    data = answer.get("data", {}).get("data", {})
    return {
        name: Secret(str(value), f"vault:{mount}/{path}#{name}")
        for name, value in data.items()
        if name in SECRET_NAMES and value
    }


def read_env_secrets(environ: dict[str, str] | os._Environ[str]) -> dict[str, Secret]:
    """Secrets given as environment variables (discouraged: the caller warns)."""
    found = {spec.name: Secret(environ[spec.env], f"env:{spec.env}") for spec in SECRET_SPECS if environ.get(spec.env)}
    if found:
        forbid_core_dumps()
    return found
