"""Configuration: precedence, sources, every validation error path, secret sources."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from sidecar.config import KEYS, KEYS_BY_PATH, load_config
from sidecar.durations import parse_duration
from sidecar.errors import ConfigError
from sidecar.secrets import Secret


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_need_no_file_and_no_env() -> None:
    config = load_config(environ={})
    assert config.settings.enabled is True
    assert config.settings.grpc.listen == "127.0.0.1:8481"
    assert config.settings.store.path == "./data/sidecar.db"
    assert config.settings.webhook.listen_addr == ":8480"
    assert config.settings.sync.sync_interval == 30.0
    assert config.settings.retry.max_backoff == 300.0
    assert config.sources and all(source == "default" for source in config.sources.values())


def test_precedence_default_file_env_flag(tmp_path: Path) -> None:
    path = write(tmp_path, "servicedesk:\n  sync:\n    batch_size: 70\n    sync_interval: 45s\n")
    from_file = load_config(path, environ={})
    assert from_file.settings.sync.batch_size == 70
    assert from_file.sources["sync.batch_size"] == f"{path}:3"

    env = {"VIRTENGINE_SERVICEDESK_SYNC_BATCH_SIZE": "80"}
    from_env = load_config(path, environ=env)
    assert from_env.settings.sync.batch_size == 80
    assert from_env.sources["sync.batch_size"] == "env:VIRTENGINE_SERVICEDESK_SYNC_BATCH_SIZE"
    assert from_env.settings.sync.sync_interval == 45.0  # untouched keys keep the file's value

    from_flag = load_config(path, environ=env, flags={"sync.batch_size": "90"})
    assert from_flag.settings.sync.batch_size == 90
    assert from_flag.sources["sync.batch_size"] == "flag:--sync-batch-size"


@pytest.mark.parametrize(
    ("text", "durations"),
    [("30s", 30.0), ("5m", 300.0), ("500ms", 0.5), ("2h", 7200.0), ("1d", 86400.0), ("12", 12.0), ("1.5s", 1.5)],
)
def test_durations(text: str, durations: float) -> None:
    assert parse_duration(text) == durations


def test_guide_environment_variables_all_work() -> None:
    env = {
        "VIRTENGINE_SERVICEDESK_JIRA_URL": "https://company.atlassian.net",
        "VIRTENGINE_SERVICEDESK_JIRA_USERNAME": "service-account",
        "VIRTENGINE_SERVICEDESK_JIRA_API_TOKEN": "jira-token-value-123",
        "VIRTENGINE_SERVICEDESK_JIRA_PROJECT_KEY": "VESUPPORT",
        "VIRTENGINE_SERVICEDESK_JIRA_WEBHOOK_SECRET": "jira-hook-secret-456",
        "VIRTENGINE_SERVICEDESK_WALDUR_URL": "https://waldur.example.com/api",
        "VIRTENGINE_SERVICEDESK_WALDUR_TOKEN": "waldur-token-789",
        "VIRTENGINE_SERVICEDESK_WALDUR_ORG_UUID": "6a9f0c8e-1f4e-4d55-9d5f-1a2b3c4d5e6f",
        "VIRTENGINE_SERVICEDESK_WALDUR_WEBHOOK_SECRET": "waldur-hook-secret-000",
        "VIRTENGINE_SERVICEDESK_SYNC_INTERVAL": "30s",
        "VIRTENGINE_SERVICEDESK_SYNC_BATCH_SIZE": "50",
        "VIRTENGINE_SERVICEDESK_CONFLICT_RESOLUTION": "newest_wins",
        "VIRTENGINE_SERVICEDESK_WEBHOOK_LISTEN": ":9480",
        "VIRTENGINE_SERVICEDESK_WEBHOOK_PATH_PREFIX": "/hooks",
        "VIRTENGINE_SERVICEDESK_WEBHOOK_REQUIRE_SIGNATURE": "true",
    }
    s = load_config(environ=env)
    assert s.settings.jira.base_url == "https://company.atlassian.net"
    assert s.settings.jira.username == "service-account"
    assert s.settings.waldur.organization_uuid.startswith("6a9f0c8e")
    assert s.settings.sync.conflict_resolution == "newest_wins"
    assert s.settings.webhook.listen_addr == ":9480"
    assert s.settings.webhook.path_prefix == "/hooks"
    assert set(s.secrets) == {"jira_api_token", "jira_webhook_secret", "waldur_token", "waldur_webhook_secret"}
    assert s.secret("waldur_token") is not None
    assert any("environment variables are visible" in w for w in s.warnings)


def test_every_key_has_a_documented_env_var_and_flag() -> None:
    envs = [k.env for k in KEYS]
    flags = [k.flag for k in KEYS]
    assert len(set(envs)) == len(envs)
    assert len(set(flags)) == len(flags)
    assert KEYS_BY_PATH["grpc.listen"].env == "VIRTENGINE_SERVICEDESK_GRPC_LISTEN"
    assert KEYS_BY_PATH["store.path"].env == "VIRTENGINE_SERVICEDESK_STORE_PATH"
    assert KEYS_BY_PATH["chain.rpc_url"].env == "VIRTENGINE_SERVICEDESK_CHAIN_RPC_URL"
    assert KEYS_BY_PATH["logging.format"].flag == "--log-format"


BAD_VALUES = [
    ("sync.batch_size", "0", "sync.batch_size must be 1..500 (got 0)"),
    ("sync.batch_size", "many", "sync.batch_size must be a whole number (got many)"),
    ("sync.sync_interval", "soon", "sync.sync_interval must be a duration such as 30s, 5m or 500ms"),
    ("sync.sync_interval", "0.5s", "sync.sync_interval must be 1s..86400s (got 0.5s)"),
    ("sync.conflict_resolution", "coin_flip", "must be one of on_chain_wins, external_wins, newest_wins, manual"),
    ("webhook.require_signature", "maybe", "webhook.require_signature must be true or false"),
    ("webhook.listen_addr", "8480", "webhook.listen_addr must be host:port"),
    ("webhook.listen_addr", ":99999", "webhook.listen_addr must be host:port"),
    ("webhook.allowed_sources", "10.0.0.0/8,not-a-net", "'not-a-net' is not one"),
    ("chain.rpc_url", "localhost:26657", "chain.rpc_url must be an http:// or https:// URL"),
    ("retry.backoff_multiplier", "0.5", "retry.backoff_multiplier must be 1..10 (got 0.5)"),
    ("audit.log_level", "loud", "audit.log_level must be one of debug, info, warning, error"),
]


@pytest.mark.parametrize(("path", "raw", "message"), BAD_VALUES)
def test_bad_values_name_key_source_and_allowed(path: str, raw: str, message: str) -> None:
    env_name = KEYS_BY_PATH[path].env
    with pytest.raises(ConfigError) as info:
        load_config(environ={env_name: raw})
    text = str(info.value)
    assert message in text
    assert f"[env:{env_name}]" in text
    assert info.value.path == path


def test_bad_value_in_file_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "servicedesk:\n  enabled: true\n  sync:\n    batch_size: 0\n")
    with pytest.raises(ConfigError, match=r"sync.batch_size must be 1..500 \(got 0\) \[.*config.yaml:4\]"):
        load_config(path, environ={})


def test_bad_flag_names_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"\[flag:--grpc-listen\]"):
        load_config(environ={}, flags={"grpc.listen": "nowhere"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("servicedesk:\n  jira:\n    base_ur1: x\n", "jira.base_ur1 is not a known configuration key"),
        ("servicedesk:\n  synk: {}\n", "synk is not a known configuration key"),
        ("jira:\n  base_url: x\n", "jira is not known; put settings under 'servicedesk:'"),
        ("servicedesk:\n  sync: [1, 2]\n", "sync must be a mapping"),
        ("servicedesk:\n  sync:\n    batch_size: [1\n", "is not valid YAML"),
        ("- a\n- b\n", "(root) must be a mapping"),
        ("servicedesk:\n  jira:\n    project_key: {a: 1}\n", "jira.project_key must be a single value"),
    ],
)
def test_malformed_files(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path / "absent.yaml", environ={})


@pytest.mark.parametrize(
    ("key", "secret_name"),
    [
        ("jira:\n    api_token", "jira-api-token"),
        ("waldur:\n    token", "waldur-token"),
        ("jira:\n    webhook_secret", "jira-webhook-secret"),
        ("waldur:\n    webhook_secret", "waldur-webhook-secret"),
    ],
)
def test_secret_in_file_is_refused_with_where_to_put_it(tmp_path: Path, key: str, secret_name: str) -> None:
    path = write(tmp_path, f"servicedesk:\n  {key}: hunter2-secret-value\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    text = str(info.value)
    assert "is a secret and is refused in the config file" in text
    assert f"secrets directory as '{secret_name}'" in text
    assert "hunter2-secret-value" not in text
    assert f"{path}:3" in text


def test_cross_key_rules() -> None:
    with pytest.raises(ConfigError, match=r"retry.max_backoff must be at least retry.initial_backoff \(10s, got 5s\)"):
        load_config(
            environ={
                "VIRTENGINE_SERVICEDESK_RETRY_INITIAL_BACKOFF": "10s",
                "VIRTENGINE_SERVICEDESK_RETRY_MAX_BACKOFF": "5s",
            }
        )


def jira_env(**extra: str) -> dict[str, str]:
    env = {
        "VIRTENGINE_SERVICEDESK_JIRA_URL": "https://x.atlassian.net",
        "VIRTENGINE_SERVICEDESK_JIRA_USERNAME": "bot@example.org",
        "VIRTENGINE_SERVICEDESK_JIRA_API_TOKEN": "tok-tok-tok",
        "VIRTENGINE_SERVICEDESK_JIRA_WEBHOOK_SECRET": "sec-sec-sec",
    }
    env.update(extra)
    return {k: v for k, v in env.items() if v}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (jira_env(VIRTENGINE_SERVICEDESK_JIRA_API_TOKEN=""), "jira.base_url is set but the secret 'jira_api_token'"),
        (jira_env(VIRTENGINE_SERVICEDESK_JIRA_WEBHOOK_SECRET=""), "secret 'jira_webhook_secret'"),
        (jira_env(VIRTENGINE_SERVICEDESK_JIRA_USERNAME=""), "jira.username is required"),
        (jira_env(VIRTENGINE_SERVICEDESK_JIRA_URL="http://x.atlassian.net"), "must use https://"),
        (jira_env(VIRTENGINE_SERVICEDESK_JIRA_URL="ftp://x"), "jira.base_url must be an https:// URL"),
        (
            {
                "VIRTENGINE_SERVICEDESK_WALDUR_URL": "https://w.example.com/",
                "VIRTENGINE_SERVICEDESK_WALDUR_TOKEN": "t0ken",
                "VIRTENGINE_SERVICEDESK_WEBHOOK_REQUIRE_SIGNATURE": "false",
            },
            "waldur.base_url must end in /api",
        ),
        (
            {
                "VIRTENGINE_SERVICEDESK_WALDUR_URL": "https://w.example.com/api",
                "VIRTENGINE_SERVICEDESK_WALDUR_TOKEN": "t0ken",
                "VIRTENGINE_SERVICEDESK_WEBHOOK_REQUIRE_SIGNATURE": "false",
            },
            "waldur.organization_uuid is required",
        ),
        (jira_env(VIRTENGINE_SERVICEDESK_SECRETS_ALLOW_ENV="false"), "secrets.allow_env is false"),
        (jira_env(VIRTENGINE_SERVICEDESK_JIRA_REQUEST_TYPE_ID="10"), "jira.service_desk_id is required with its pair"),
        (jira_env(VIRTENGINE_SERVICEDESK_JIRA_SERVICE_DESK_ID="2"), "jira.request_type_id is required with its pair"),
    ],
)
def test_desk_rules(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(environ=env)
    assert message in str(info.value)
    for secret in ("tok-tok-tok", "sec-sec-sec", "t0ken"):
        assert secret not in str(info.value)


def test_http_allowed_only_with_the_development_flag() -> None:
    env = jira_env(
        VIRTENGINE_SERVICEDESK_JIRA_URL="http://127.0.0.1:9999", VIRTENGINE_SERVICEDESK_SYNC_ALLOW_INSECURE_HTTP="true"
    )
    assert load_config(environ=env).settings.jira.base_url == "http://127.0.0.1:9999"


def test_secrets_dir_takes_guide_and_underscore_names(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "jira-api-token").write_text("from-dir-token\n")
    (secrets / "waldur_token").write_text("from-dir-waldur")
    for file in secrets.iterdir():
        file.chmod(0o600)
    env = {
        "VIRTENGINE_SERVICEDESK_SECRETS_DIR": str(secrets),
        "VIRTENGINE_SERVICEDESK_JIRA_API_TOKEN": "from-env-token",
    }
    config = load_config(environ=env)
    token = config.secret("jira_api_token")
    assert token is not None and token.reveal() == "from-dir-token"
    assert token.source == f"secrets-dir:{secrets / 'jira-api-token'}"
    waldur = config.secret("waldur_token")
    assert waldur is not None and waldur.reveal() == "from-dir-waldur"
    assert any("ignored: already set by secrets-dir" in w for w in config.warnings)
    assert all("from-env-token" not in w and "from-dir-token" not in w for w in config.warnings)


def test_secrets_dir_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="secrets.dir is not a directory"):
        load_config(environ={"VIRTENGINE_SERVICEDESK_SECRETS_DIR": str(tmp_path / "nope")})


def test_vault_without_token_is_refused() -> None:
    with pytest.raises(ConfigError, match="no Vault token"):
        load_config(environ={"VIRTENGINE_SERVICEDESK_SECRETS_VAULT_ADDR": "http://127.0.0.1:1"})


def test_secret_never_shows_its_value() -> None:
    secret = Secret("super-secret-value", "env:X")
    for shown in (
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!r}",
        "%s" % secret,  # noqa: UP031 - the %-operator is a way secrets leak
        repr([secret]),
        repr({"k": secret}),
    ):
        assert "super-secret-value" not in shown
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    assert secret == Secret("super-secret-value", "elsewhere")
    assert secret.reveal() == "super-secret-value"


def test_config_repr_hides_secrets() -> None:
    config = load_config(environ=jira_env())
    assert "tok-tok-tok" not in repr(config)
    assert "sec-sec-sec" not in repr(config)


def test_assignee_maps_take_addresses_to_desk_users(tmp_path: Path) -> None:
    path = write(tmp_path, """
servicedesk:
  jira:
    assignee_map:
      virtengine1agentaddress: 5b10ac8d82e05b22cc7d4ef5
  waldur:
    assignee_map: {virtengine1agentaddress: 0f6b3c9a2f8e4a51b3c2d1e0f9a8b7c6}
""")
    settings = load_config(path, environ={}).settings
    assert settings.jira.assignee_map == (("virtengine1agentaddress", "5b10ac8d82e05b22cc7d4ef5"),)
    assert settings.waldur.assignee_map == (("virtengine1agentaddress", "0f6b3c9a2f8e4a51b3c2d1e0f9a8b7c6"),)


# the control API (grpc.*): where it listens, and what protects an address other machines reach


def pem_files(tmp_path: Path) -> tuple[str, str]:
    """Files where TLS expects them (the rules check presence; the server reads them at start)."""
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    key.chmod(0o600)
    return str(cert), str(key)


@pytest.mark.parametrize(
    "listen",
    ["127.0.0.1:8481", "localhost:0", "[::1]:8481", "unix:///tmp/servicedesk-control.sock"],
)
def test_grpc_listen_on_loopback_or_a_unix_socket_needs_no_protection(listen: str) -> None:
    assert load_config(environ={}, flags={"grpc.listen": listen}).settings.grpc.listen == listen


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("unix://control.sock", "unix:///absolute/path"),
        ("unix:///", "unix:///absolute/path"),
        ("unix:///" + "d" * 120 + "/c.sock", "at most 107 bytes"),
        ("8481", "host:port"),
    ],
)
def test_grpc_listen_malformed_is_refused(listen: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(environ={}, flags={"grpc.listen": listen})
    assert exc.value.path == "grpc.listen" and message in exc.value.problem


def test_grpc_non_loopback_needs_tls_and_a_client_ca_or_a_token(tmp_path: Path) -> None:
    cert, key = pem_files(tmp_path)
    with pytest.raises(ConfigError) as bare:
        load_config(environ={}, flags={"grpc.listen": ":8481"})
    assert bare.value.path == "grpc.listen"
    assert "needs TLS (grpc.tls_cert and grpc.tls_key) and client certificates" in bare.value.problem
    assert bare.value.source == "flag:--grpc-listen"
    tls = {"grpc.listen": "10.0.0.5:8481", "grpc.tls_cert": cert, "grpc.tls_key": key}
    with pytest.raises(ConfigError) as tls_only:
        load_config(environ={}, flags=tls)
    assert tls_only.value.path == "grpc.listen" and "TLS" not in tls_only.value.problem.split("needs")[1]
    assert "client certificates (grpc.client_ca) or the secret grpc_token" in tls_only.value.problem
    token = {"VIRTENGINE_SERVICEDESK_GRPC_TOKEN": "tok-grpc-1"}
    with pytest.raises(ConfigError) as token_only:
        load_config(environ=token, flags={"grpc.listen": "10.0.0.5:8481"})
    assert "TLS (grpc.tls_cert" in token_only.value.problem and "client certificates" not in token_only.value.problem
    assert "tok-grpc-1" not in str(token_only.value)

    with_token = load_config(environ=token, flags=tls)
    secret = with_token.secret("grpc_token")
    assert secret is not None and secret.reveal() == "tok-grpc-1"
    with_ca = load_config(environ={}, flags={**tls, "grpc.client_ca": cert})
    assert with_ca.settings.grpc.client_ca == cert
    assert (
        load_config(environ={}, flags={"grpc.listen": ":8481", "grpc.enabled": "false"}).settings.grpc.enabled is False
    )


def test_grpc_tls_files_come_in_pairs_and_must_exist(tmp_path: Path) -> None:
    cert, key = pem_files(tmp_path)
    for flags, path, message in (
        ({"grpc.tls_cert": cert}, "grpc.tls_key", "is required with grpc.tls_cert"),
        ({"grpc.tls_key": key}, "grpc.tls_cert", "is required with grpc.tls_key"),
        ({"grpc.client_ca": cert}, "grpc.client_ca", "needs grpc.tls_cert and grpc.tls_key"),
        ({"grpc.tls_cert": str(tmp_path / "absent.pem"), "grpc.tls_key": key}, "grpc.tls_cert", "names no file"),
    ):
        with pytest.raises(ConfigError) as exc:
            load_config(environ={}, flags=flags)
        assert (exc.value.path, message in exc.value.problem) == (path, True), exc.value


def test_grpc_tokens_come_from_the_secret_sources_and_differ(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name, value in (("grpc-token", "full-tok-2"), ("grpc-read-token", "read-tok-2")):
        (secrets / name).write_text(value + "\n")
        (secrets / name).chmod(0o600)
    config = load_config(environ={"VIRTENGINE_SERVICEDESK_SECRETS_DIR": str(secrets)})
    full, read = config.secret("grpc_token"), config.secret("grpc_read_token")
    assert full is not None and read is not None and (full.reveal(), read.reveal()) == ("full-tok-2", "read-tok-2")
    same = {"VIRTENGINE_SERVICEDESK_GRPC_TOKEN": "same-3", "VIRTENGINE_SERVICEDESK_GRPC_READ_TOKEN": "same-3"}
    with pytest.raises(ConfigError) as exc:
        load_config(environ=same)
    assert exc.value.path == "grpc_read_token" and "same-3" not in str(exc.value)
    path = write(tmp_path, "servicedesk:\n  grpc:\n    token: in-the-file\n")
    with pytest.raises(ConfigError) as in_file:
        load_config(path, environ={})
    assert in_file.value.path == "grpc.token" and "'grpc-token'" in in_file.value.problem
