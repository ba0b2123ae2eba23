"""Documentation is tested against code: the guide and the README name what exists, and the reverse."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from sidecar.cli import reference_markdown
from sidecar.config import KEYS, load_config
from sidecar.observe.metrics import Metrics
from sidecar.secrets import SECRET_SPECS

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "docs" / "operations-guide.md").read_text()
README = (ROOT / "README.md").read_text()
SHARED_GUIDE = ROOT.parent / "shared" / "seed" / "000_c3c1b4122157ebde.txt"


def test_vendored_guide_matches_the_shared_one() -> None:
    if SHARED_GUIDE.exists():
        assert SHARED_GUIDE.read_text() == GUIDE, "docs/operations-guide.md differs from shared/seed: copy it again"


def test_every_guide_env_var_exists_in_code() -> None:
    guide_vars = set(re.findall(r"\b(VIRTENGINE_SERVICEDESK_[A-Z_]+)=", GUIDE))
    assert len(guide_vars) == 15
    code_vars = {k.env for k in KEYS} | {s.env for s in SECRET_SPECS}
    assert guide_vars <= code_vars, guide_vars - code_vars


def test_guide_yaml_is_accepted_as_is(tmp_path: Path) -> None:
    block = re.search(r"### YAML Configuration\s+```yaml\n(.*?)```", GUIDE, re.S)
    assert block is not None
    path = tmp_path / "guide.yaml"
    path.write_text(block.group(1))
    secrets = {s.env: f"value-{s.name}" for s in SECRET_SPECS[:4]}
    config = load_config(path, environ={**secrets, "VIRTENGINE_SERVICEDESK_JIRA_USERNAME": "svc@example.org"})
    assert config.settings.retry.max_backoff == 300.0
    assert config.settings.webhook.rate_limit_per_second == 100
    leaves = _leaf_paths(yaml.safe_load(block.group(1))["servicedesk"])
    assert all(config.sources[p].startswith(str(path)) for p in leaves)


def _leaf_paths(doc: dict[str, object], prefix: str = "") -> list[str]:
    out: list[str] = []
    for key, value in doc.items():
        if isinstance(value, dict):
            out += _leaf_paths(value, f"{prefix}{key}.")
        else:
            out.append(prefix + key)
    return out


def test_guide_metrics_are_registered_with_their_labels() -> None:
    families = {m.name: m for m in Metrics().registry.collect()}
    guide = re.findall(r"- `(servicedesk_[a-z_]+)(?:\{([a-z,]+)\})?`", GUIDE)
    assert len(guide) == 5
    for name, labels in guide:
        base = name.removesuffix("_total")
        assert base in families, name
        samples = families[base].samples
        if labels and samples:
            assert set(labels.split(",")) <= set(samples[0].labels)
    alerts = set(re.findall(r"expr: .*?(servicedesk_[a-z_]+)", GUIDE))
    assert {a.removesuffix("_total") for a in alerts} <= set(families)


def test_readme_reference_is_generated_from_the_schema() -> None:
    block = re.search(r"<!-- config-reference:start -->\n(.*?)<!-- config-reference:end -->", README, re.S)
    assert block is not None
    assert block.group(1).strip() == reference_markdown().strip(), "README is stale: run `make docs`"


def test_readme_names_the_commands_and_endpoints() -> None:
    for needle in ("make devnet", "make test", "make run", "/webhooks/health", "/metrics", "127.0.0.1:8481",
                   "config check", "examples/servicedesk-sidecar.service"):
        assert needle in README


def test_the_example_configuration_is_valid(tmp_path: Path) -> None:
    """examples/config.yaml is what operators copy: it must pass `config check` once the secrets exist."""
    for name in ("jira-api-token", "jira-webhook-secret", "waldur-token", "waldur-webhook-secret"):
        (tmp_path / name).write_text(f"example-{name}\n")
    config = load_config(ROOT / "examples" / "config.yaml", environ={}, flags={"secrets.dir": str(tmp_path)})
    settings = config.settings
    assert settings.jira.base_url and settings.waldur.base_url and settings.webhook.require_signature
    assert settings.jira.assignee_map and settings.waldur.assignee_map
