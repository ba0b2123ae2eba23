"""Secrets from Vault (KV v2 through hvac) against a loopback stand-in of Vault's API."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.config import load_config
from sidecar.errors import ConfigError
from tests.sidecar.fake_vault import fake_vault


def test_secrets_come_from_vault_and_beat_env(tmp_path: Path) -> None:
    token_file = tmp_path / "vault-token"
    token_file.write_text("s.vault-token-1234\n")
    token_file.chmod(0o600)
    data = {"jira_api_token": "vault-jira-token", "waldur_token": "vault-waldur-token", "unrelated": "x"}
    with fake_vault("s.vault-token-1234", "secret", "virtengine/servicedesk", data) as addr:
        config = load_config(
            environ={
                "VIRTENGINE_SERVICEDESK_SECRETS_VAULT_ADDR": addr,
                "VIRTENGINE_SERVICEDESK_SECRETS_VAULT_TOKEN_FILE": str(token_file),
                "VIRTENGINE_SERVICEDESK_WALDUR_TOKEN": "env-waldur-token",
            }
        )
    jira = config.secret("jira_api_token")
    waldur = config.secret("waldur_token")
    assert jira is not None and jira.reveal() == "vault-jira-token"
    assert jira.source == "vault:secret/virtengine/servicedesk#jira_api_token"
    assert waldur is not None and waldur.reveal() == "vault-waldur-token"
    assert "unrelated" not in config.secrets
    assert any("env:VIRTENGINE_SERVICEDESK_WALDUR_TOKEN ignored" in w for w in config.warnings)


def test_vault_refusal_is_a_config_error_without_the_token() -> None:
    with fake_vault("right-token", "secret", "virtengine/servicedesk", {}) as addr:
        with pytest.raises(ConfigError) as info:
            load_config(environ={"VIRTENGINE_SERVICEDESK_SECRETS_VAULT_ADDR": addr, "VAULT_TOKEN": "wrong-token-xyz"})
    assert "could not read secret/virtengine/servicedesk from Vault" in str(info.value)
    assert "wrong-token-xyz" not in str(info.value)
