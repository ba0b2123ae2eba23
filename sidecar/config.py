"""Load the one typed configuration: defaults < YAML file < environment < command-line flags.

Every error names the key path, where the value came from (file and line, env var or flag) and
what is allowed; secret values never appear in errors. Secrets come from `secrets.py` sources.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from sidecar.artifacts.factory import check_artifacts
from sidecar.config_schema import ENV_PREFIX, ServiceDeskConfig
from sidecar.durations import parse_duration
from sidecar.errors import ConfigError
from sidecar.listen import missing_protection, parse_control_listen, parse_listen
from sidecar.secrets import (
    SECRET_SPECS,
    Secret,
    read_env_secrets,
    read_private_file,
    read_secrets_dir,
    read_vault,
)

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
# YAML keys that hold secrets: refused in the file, with the place they belong instead.
_SECRET_KEYS = {
    "jira.api_token": "jira_api_token",
    "jira.webhook_secret": "jira_webhook_secret",
    "waldur.token": "waldur_token",
    "waldur.webhook_secret": "waldur_webhook_secret",
    "chain.signing_key": "signing_key",
    "chain.support_private_key": "support_private_key",
    "grpc.token": "grpc_token",
    "grpc.read_token": "grpc_read_token",
}


@dataclass(frozen=True)
class KeySpec:
    """One configuration key as declared in config_schema, with its derived names."""

    path: str
    type: Any
    default: Any
    help: str
    env: str
    kind: str
    bounds: tuple[float, float] | None
    map_keys: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        """One flag per env var: VIRTENGINE_SERVICEDESK_WEBHOOK_LISTEN is --webhook-listen."""
        return "--" + self.env.removeprefix(ENV_PREFIX).lower().replace("_", "-")

    @property
    def choices(self) -> tuple[str, ...]:
        return typing.get_args(self.type) if typing.get_origin(self.type) is Literal else ()


def iter_keys(cls: type = ServiceDeskConfig, prefix: str = "") -> Iterator[KeySpec]:
    """Walk the schema, yielding every leaf key in declaration order."""
    hints = typing.get_type_hints(cls, include_extras=False)
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        ftype = hints[f.name]
        if dataclasses.is_dataclass(ftype):
            yield from iter_keys(typing.cast(type, ftype), path + ".")
            continue
        env = f.metadata.get("env") or ENV_PREFIX + path.replace(".", "_").upper()
        yield KeySpec(
            path,
            ftype,
            f.default,
            f.metadata["help"],
            env,
            f.metadata["kind"],
            f.metadata["bounds"],
            f.metadata.get("map_keys", ()),
        )


KEYS: tuple[KeySpec, ...] = tuple(iter_keys())
KEYS_BY_PATH: dict[str, KeySpec] = {k.path: k for k in KEYS}


@dataclass(frozen=True)
class Config:
    """The loaded configuration: typed settings, where each came from, secrets and warnings."""

    settings: ServiceDeskConfig
    sources: Mapping[str, str]
    secrets: Mapping[str, Secret]
    warnings: tuple[str, ...]
    file: str | None = None

    def secret(self, name: str) -> Secret | None:
        return self.secrets.get(name)

    def secret_values(self) -> list[str]:
        """Every secret value, for the log redaction filter."""
        return [s.reveal() for s in self.secrets.values()]


def _convert(spec: KeySpec, raw: object) -> Any:
    """Turn a raw value (YAML scalar or string from env/flags) into the key's type, or ValueError."""
    if spec.kind == "duration":
        value: Any = parse_duration(raw)
    elif spec.type is bool:
        if isinstance(raw, bool):
            value = raw
        elif str(raw).strip().lower() in _TRUE | _FALSE:
            value = str(raw).strip().lower() in _TRUE
        else:
            raise ValueError("true or false")
    elif spec.type is int:
        if isinstance(raw, bool) or not re.fullmatch(r"-?\d+", str(raw).strip()):
            raise ValueError("a whole number")
        value = int(str(raw).strip())
    elif spec.type is float:
        try:
            value = float(str(raw)) if not isinstance(raw, bool) else None
        except ValueError:
            value = None
        if value is None:
            raise ValueError("a number")
    elif spec.choices:
        value = str(raw).strip()
        if value not in spec.choices:
            raise ValueError("one of " + ", ".join(spec.choices))
    elif spec.kind == "map":
        value = _parse_map(raw, spec.map_keys)
    elif typing.get_origin(spec.type) is tuple:
        items = raw if isinstance(raw, list) else [p for p in str(raw).split(",")]
        value = tuple(str(p).strip() for p in items if str(p).strip())
    else:
        if isinstance(raw, (dict, list)):
            raise ValueError("a single value")
        value = "" if raw is None else str(raw)
    _check_kind(spec, value)
    return value


def _parse_map(raw: object, allowed: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """A YAML mapping, or `a=b,c=d` from env and flags; keys limited to `allowed` when given."""
    if isinstance(raw, dict):
        pairs = [(str(k).strip(), str(v).strip()) for k, v in raw.items()]
    elif isinstance(raw, str):
        pairs = []
        for item in filter(None, (p.strip() for p in raw.split(","))):
            k, sep, v = item.partition("=")
            if not sep or not k.strip():
                raise ValueError("a mapping (YAML) or key=value pairs separated by commas")
            pairs.append((k.strip(), v.strip()))
    else:
        raise ValueError("a mapping (YAML) or key=value pairs separated by commas")
    unknown = [k for k, _ in pairs if allowed and k not in allowed]
    if unknown:
        raise ValueError(f"a mapping whose keys are among {', '.join(allowed)} ({unknown[0]!r} is not)")
    return tuple(pairs)


def _check_kind(spec: KeySpec, value: Any) -> None:
    if spec.bounds is not None:
        low, high = spec.bounds
        if not low <= value <= high:
            unit = "s" if spec.kind == "duration" else ""
            raise ValueError(f"{_num(low)}{unit}..{_num(high)}{unit}")
    if spec.kind == "listen" or (spec.kind == "listen_or_empty" and value):
        parse_listen(value)
    elif spec.kind == "grpc_listen":
        # A socket's directory is checked when binding, not here: systemd's RuntimeDirectory= creates it
        # only when the service starts, after an operator's `config check`.
        parse_control_listen(value)
    elif spec.kind == "url" and value and not re.match(r"^(https?|wss?|unix)://", value):
        raise ValueError("an http:// or https:// URL")
    elif spec.kind == "cidrs":
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"a list of CIDRs such as 10.0.0.0/8 ({item!r} is not one)") from None


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _show(raw: object) -> str:
    if isinstance(raw, str) and raw and raw.strip() == raw and " " not in raw:
        text = raw
    else:
        text = repr(raw) if isinstance(raw, str) else str(raw)
    return text if len(text) <= 60 else text[:57] + "..."


def _yaml_values(path: Path) -> dict[str, tuple[object, str]]:
    """Flatten the YAML file to {key path: (value, 'file:line')}, refusing unknown keys and secrets."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("--config", f"cannot be read: {exc.strerror}", source=str(path)) from None
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        location = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError("(file)", f"is not valid YAML: {getattr(exc, 'problem', exc)}", source=location) from None
    finally:
        loader.dispose()
    if root is None:
        return {}
    out: dict[str, tuple[object, str]] = {}

    def where(node: yaml.Node) -> str:
        return f"{path}:{node.start_mark.line + 1}"

    def walk(node: yaml.Node, prefix: str) -> None:
        if not isinstance(node, yaml.MappingNode):
            raise ConfigError(prefix.rstrip(".") or "(root)", "must be a mapping", source=where(node))
        for key_node, value_node in node.value:
            name = str(key_node.value)
            full = prefix + name
            if full in _SECRET_KEYS:
                raise ConfigError(full, _secret_placement(_SECRET_KEYS[full]), source=where(key_node))
            if full in KEYS_BY_PATH:
                constructor = yaml.SafeLoader("")
                out[full] = (constructor.construct_object(value_node, deep=True), where(value_node))
            elif any(k.startswith(full + ".") for k in KEYS_BY_PATH):
                walk(value_node, full + ".")
            else:
                raise ConfigError(full, "is not a known configuration key", source=where(key_node))

    if not isinstance(root, yaml.MappingNode):
        raise ConfigError("(root)", "must be a mapping with a 'servicedesk' key", source=where(root))
    for key_node, value_node in root.value:
        if key_node.value != "servicedesk":
            raise ConfigError(
                str(key_node.value), "is not known; put settings under 'servicedesk:'", source=where(key_node)
            )
        if isinstance(value_node, yaml.ScalarNode) and value_node.value in ("", "null", "~"):
            continue
        walk(value_node, "")
    return out


def _secret_placement(name: str) -> str:
    spec = next(s for s in SECRET_SPECS if s.name == name)
    return (
        "is a secret and is refused in the config file; put it in the secrets directory as "
        f"'{spec.file_names[0]}', in Vault under the key '{name}', or in {spec.env}"
    )


def load_config(
    file: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, object] | None = None,
) -> Config:
    """Build the configuration. `flags` maps key paths to raw values given on the command line."""
    env = dict(os.environ if environ is None else environ)
    raw: dict[str, tuple[object, str]] = {}
    if file is not None:
        raw.update(_yaml_values(Path(file)))
    for spec in KEYS:
        if spec.env in env:
            raw[spec.path] = (env[spec.env], f"env:{spec.env}")
    for path, value in (flags or {}).items():
        if path not in KEYS_BY_PATH:
            raise ConfigError(path, "is not a known configuration key", source="flag")
        raw[path] = (value, f"flag:{KEYS_BY_PATH[path].flag}")

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in KEYS:
        if spec.path not in raw:
            values[spec.path] = spec.default
            sources[spec.path] = "default"
            continue
        value, source = raw[spec.path]
        try:
            values[spec.path] = _convert(spec, value)
        except ValueError as exc:
            raise ConfigError(spec.path, f"must be {exc} (got {_show(value)})", source=source) from None
        sources[spec.path] = source

    settings = _build(ServiceDeskConfig, values, "")
    warnings: list[str] = []
    secrets = _load_secrets(settings, env, warnings)
    _check_consistency(settings, sources, secrets)
    return Config(settings, sources, secrets, tuple(warnings), str(file) if file is not None else None)


def _build(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        ftype = hints[f.name]
        if dataclasses.is_dataclass(ftype):
            kwargs[f.name] = _build(typing.cast(type, ftype), values, f"{prefix}{f.name}.")
        else:
            kwargs[f.name] = values[prefix + f.name]
    return cls(**kwargs)


def _load_secrets(settings: ServiceDeskConfig, env: Mapping[str, str], warnings: list[str]) -> dict[str, Secret]:
    """Secrets dir first, then Vault, then env; a secret found twice keeps the first and warns."""
    found: dict[str, Secret] = {}

    def add(source_secrets: Mapping[str, Secret]) -> None:
        for name, secret in source_secrets.items():
            if name in found:
                warnings.append(f"secret {name} from {secret.source} ignored: already set by {found[name].source}")
            else:
                found[name] = secret

    s = settings.secrets
    if s.dir:
        add(read_secrets_dir(Path(s.dir)))
    if s.vault.addr:
        add(
            read_vault(
                s.vault.addr, s.vault.mount, s.vault.path, _vault_token(s.vault.token_file, env), s.vault.timeout
            )
        )
    env_secrets = read_env_secrets(dict(env))
    if env_secrets and not s.allow_env:
        names = ", ".join(sorted(sec.source.removeprefix("env:") for sec in env_secrets.values()))
        raise ConfigError(
            "secrets.allow_env", f"is false but secrets are set in the environment ({names})", source="env"
        )
    for secret in env_secrets.values():
        warnings.append(
            f"secret from {secret.source}: environment variables are visible to other processes; "
            "prefer secrets.dir or Vault"
        )
    add(env_secrets)
    return found


def _vault_token(token_file: str, env: Mapping[str, str]) -> Secret:
    if token_file:  # refused when group or others can read it, as every file holding a secret is
        return Secret(read_private_file(token_file, "secrets.vault.token_file").strip(), f"file:{token_file}")
    if env.get("VAULT_TOKEN"):
        return Secret(env["VAULT_TOKEN"], "env:VAULT_TOKEN")
    raise ConfigError(
        "secrets.vault.addr", "is set but there is no Vault token (token_file or VAULT_TOKEN)", source="env"
    )


def _check_consistency(settings: ServiceDeskConfig, sources: Mapping[str, str], secrets: Mapping[str, Secret]) -> None:
    """Rules that involve more than one key."""
    _check_grpc(settings, sources, secrets)
    if settings.enabled and settings.sync.sync_attachments:
        check_artifacts(settings, secrets, sources)
    retry = settings.retry
    if retry.max_backoff < retry.initial_backoff:
        raise ConfigError(
            "retry.max_backoff",
            f"must be at least retry.initial_backoff ({_num(retry.initial_backoff)}s, got {_num(retry.max_backoff)}s)",
            source=sources["retry.max_backoff"],
        )
    desks = (
        ("jira", settings.jira.base_url, "jira_api_token", "jira_webhook_secret"),
        ("waldur", settings.waldur.base_url, "waldur_token", "waldur_webhook_secret"),
    )
    for desk, url, token_name, hook_secret in desks:
        if not url:
            continue
        url_key = f"{desk}.base_url"
        if not re.match(r"^https?://[^/\s]+", url):
            raise ConfigError(url_key, f"must be an https:// URL (got {_show(url)})", source=sources[url_key])
        if url.startswith("http://") and not settings.sync.allow_insecure_http:
            raise ConfigError(
                url_key,
                "must use https:// (set sync.allow_insecure_http for local development)",
                source=sources[url_key],
            )
        if token_name not in secrets:
            raise ConfigError(
                url_key, f"is set but the secret {_secret_hint(token_name)} is missing", source=sources[url_key]
            )
        if settings.webhook.enabled and settings.webhook.require_signature and hook_secret not in secrets:
            raise ConfigError(
                "webhook.require_signature",
                f"is true but the secret {_secret_hint(hook_secret)} is missing for {desk}",
                source=sources["webhook.require_signature"],
            )
    if settings.jira.base_url and not settings.jira.username:
        raise ConfigError("jira.username", "is required when jira.base_url is set", source=sources["jira.username"])
    if bool(settings.jira.request_type_id) != bool(settings.jira.service_desk_id):
        missing = "jira.service_desk_id" if settings.jira.request_type_id else "jira.request_type_id"
        raise ConfigError(missing, "is required with its pair (JSM requests need both ids)", source=sources[missing])
    if settings.waldur.base_url:
        if not settings.waldur.base_url.rstrip("/").endswith("/api"):
            raise ConfigError("waldur.base_url", "must end in /api", source=sources["waldur.base_url"])
        if not settings.waldur.organization_uuid:
            raise ConfigError(
                "waldur.organization_uuid",
                "is required when waldur.base_url is set",
                source=sources["waldur.organization_uuid"],
            )


def _check_grpc(settings: ServiceDeskConfig, sources: Mapping[str, str], secrets: Mapping[str, Secret]) -> None:
    """The control API: TLS files in pairs and present, and a non-loopback address protected."""
    grpc = settings.grpc
    if not grpc.enabled:
        return
    for path in ("grpc.tls_cert", "grpc.tls_key", "grpc.client_ca"):
        file = getattr(grpc, path.removeprefix("grpc."))
        if file and not os.path.isfile(file):
            raise ConfigError(path, f"names no file: {file}", source=sources[path])
    if bool(grpc.tls_cert) != bool(grpc.tls_key):
        given, missing = ("grpc.tls_cert", "grpc.tls_key") if grpc.tls_cert else ("grpc.tls_key", "grpc.tls_cert")
        raise ConfigError(
            missing, f"is required with {given} (TLS needs a certificate and its key)", source=sources[given]
        )
    if grpc.client_ca and not grpc.tls_cert:
        raise ConfigError(
            "grpc.client_ca",
            "needs grpc.tls_cert and grpc.tls_key: client certificates are checked in the TLS handshake",
            source=sources["grpc.client_ca"],
        )
    full, read = secrets.get("grpc_token"), secrets.get("grpc_read_token")
    if full is not None and read is not None and full == read:
        raise ConfigError("grpc_read_token", "must differ from grpc_token (it is read-only)", source=read.source)
    address = parse_control_listen(grpc.listen)
    lacking = missing_protection(
        address, tls=bool(grpc.tls_cert), client_ca=bool(grpc.client_ca), token=full is not None
    )
    if lacking:
        token_hint = "" if "grpc_token" not in lacking else f"; the token is the secret {_secret_hint('grpc_token')}"
        raise ConfigError(
            "grpc.listen",
            f"is {_show(grpc.listen)}, reachable from other machines: it needs {lacking} "
            f"(or listen on loopback or unix:///path){token_hint}",
            source=sources["grpc.listen"],
        )


def _secret_hint(name: str) -> str:
    spec = next(s for s in SECRET_SPECS if s.name == name)
    return f"'{name}' (secrets dir file '{spec.file_names[0]}', Vault key '{name}' or {spec.env})"
