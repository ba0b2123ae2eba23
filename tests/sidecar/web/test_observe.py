"""What each port shows: /metrics and verbose health on observe.listen, receivers and plain health on the
public port; URLs in health and logs without the credentials hosted RPC endpoints carry."""

from __future__ import annotations

import asyncio
import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devnet.node_config import free_port
from devnet.waiting import async_wait_until
from sidecar.app import App
from sidecar.config import load_config
from sidecar.errors import ConfigError
from sidecar.observe.logs import setup_logging
from sidecar.urls import public_url, scrub_urls
from tests.sidecar.harness import app_flags, running_app

GUIDE_KEYS = ["healthy", "jira_status", "waldur_status", "last_sync", "pending_events", "failed_events"]
PASSWORD = "pw-7f3a9c"
API_KEY = "apikey-51d0e2"
PATH_TOKEN = "Tk0a1b2c3d4e5f6a7b8c9"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    setup_logging("info", "json", [], stream=stream)
    yield stream
    setup_logging("warning", "text", [], stream=io.StringIO())


def split_flags(tmp_path: Path, rpc_url: str | None = None, **extra: object) -> dict[str, object]:
    rpc = rpc_url or f"http://127.0.0.1:{free_port()}"
    return app_flags(tmp_path, rpc, **{"observe.listen": "127.0.0.1:0", **extra})


async def test_metrics_and_verbose_health_are_on_the_observe_port_only(tmp_path: Path) -> None:
    async with running_app(split_flags(tmp_path)) as app, httpx.AsyncClient(timeout=5) as client:
        assert app.observe_port is not None and app.observe_port != app.web_port
        public, observe = f"http://127.0.0.1:{app.web_port}", f"http://127.0.0.1:{app.observe_port}"
        public_metrics = await client.get(f"{public}/metrics")
        observe_metrics = await client.get(f"{observe}/metrics")
        public_verbose = await client.get(f"{public}/webhooks/health?verbose=1")
        observe_verbose = await client.get(f"{observe}/webhooks/health?verbose=1")
        public_plain = await client.get(f"{public}/webhooks/health")
        observe_hook = await client.post(f"{observe}/webhooks/jira", content=b"{}")
    assert public_metrics.status_code == 404
    assert observe_metrics.status_code == 200 and "servicedesk_health_check" in observe_metrics.text
    assert list(public_verbose.json()) == GUIDE_KEYS  # verbose is ignored on the public port
    assert list(observe_verbose.json()) == [*GUIDE_KEYS, "chain", "problems", "inbound", "paused"]
    assert list(public_plain.json()) == GUIDE_KEYS  # load balancers keep their health check
    assert observe_hook.status_code == 404  # the receivers are on the public port only


async def test_with_observe_listen_empty_one_port_serves_everything(tmp_path: Path) -> None:
    async with running_app(split_flags(tmp_path, **{"observe.listen": ""})) as app:
        assert app.observe_port is None
        async with httpx.AsyncClient(timeout=5) as client:
            metrics = await client.get(f"http://127.0.0.1:{app.web_port}/metrics")
            verbose = await client.get(f"http://127.0.0.1:{app.web_port}/webhooks/health?verbose=1")
    assert metrics.status_code == 200
    assert "chain" in verbose.json()


def test_observe_listen_on_the_webhook_address_is_a_config_error(tmp_path: Path) -> None:
    port = free_port()
    flags = split_flags(tmp_path, **{"webhook.listen_addr": f"127.0.0.1:{port}", "observe.listen": f"127.0.0.1:{port}"})
    app = App(load_config(environ={}, flags=flags))
    with pytest.raises(ConfigError, match="observe.listen"):
        app._web_servers(None, None, None, None, None)  # type: ignore[arg-type]  # fails before using them


def test_observe_listen_is_checked_like_any_listen_address() -> None:
    assert load_config(environ={}, flags={}).settings.observe.listen == "127.0.0.1:8482"  # loopback by default
    with pytest.raises(ConfigError, match="observe.listen must be host:port"):
        load_config(environ={}, flags={"observe.listen": "8482"})


# URLs without credentials


def test_public_url_drops_credentials_query_fragment_and_token_segments() -> None:
    assert public_url("https://user:pass@rpc.example.com/path?apikey=abc") == "https://rpc.example.com/path"
    assert public_url(f"wss://u:{PASSWORD}@h:443/websocket?token=x#f") == "wss://h:443/websocket"
    assert public_url(f"https://go.example.io/{PATH_TOKEN}/") == "https://go.example.io/***/"
    assert public_url("http://127.0.0.1:26657") == "http://127.0.0.1:26657"
    assert public_url("http://[::1]:26657/") == "http://[::1]:26657/"
    assert public_url("unix:///run/node.sock") == "unix:///run/node.sock"
    text = f"unreachable at https://u:{PASSWORD}@h/x?key={API_KEY}: ConnectError (see http://a.b/c)."
    assert scrub_urls(text) == "unreachable at https://h/x: ConnectError (see http://a.b/c)."


async def test_a_credential_bearing_rpc_url_never_reaches_health_or_logs(
    tmp_path: Path, log_stream: io.StringIO
) -> None:
    rpc = f"http://operator:{PASSWORD}@127.0.0.1:{free_port()}/{PATH_TOKEN}?apikey={API_KEY}"
    async with running_app(split_flags(tmp_path, rpc)) as app, httpx.AsyncClient(timeout=5) as client:
        observe = f"http://127.0.0.1:{app.observe_port}"

        async def chain_reported() -> str | None:
            answer = await client.get(f"{observe}/webhooks/health?verbose=1")
            doc = answer.json()
            return answer.text if doc["chain"]["last_error"] and doc["problems"].get("chain") else None

        verbose = await async_wait_until(chain_reported, timeout=20, what="the unreachable chain in verbose health")
        plain = (await client.get(f"http://127.0.0.1:{app.web_port}/webhooks/health")).text
        metrics = (await client.get(f"{observe}/metrics")).text
    logs = log_stream.getvalue()
    assert "127.0.0.1" in json.loads(verbose)["chain"]["last_error"]  # the error still says where
    assert any(json.loads(line).get("rpc_url") for line in logs.splitlines())  # the log line that names it
    for shown in (verbose, plain, metrics, logs):
        for secret in (PASSWORD, API_KEY, PATH_TOKEN):
            assert secret not in shown


async def test_an_observe_port_in_use_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        app = App(load_config(environ={}, flags=split_flags(tmp_path, **{"observe.listen": busy})))
        with pytest.raises(ConfigError, match=f"observe.listen cannot listen on {busy}"):
            await asyncio.wait_for(app.run(), 30)
    assert app.web_port is None  # stopped before serving anything
