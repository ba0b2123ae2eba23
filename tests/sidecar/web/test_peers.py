"""The client address the receivers see: X-Forwarded-For only through trusted proxies, mapped IPv6 as IPv4.

Real uvicorn servers on loopback (IPv4, and `[::]` for the mapped addresses), with an app that
echoes `request.client.host`, and the real sidecar whose allow-list must not be fooled.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from devnet.node_config import free_port
from sidecar.web.peers import AddressSet, parse_ip, resolve_client, unmapped
from sidecar.web.server import WebServer
from tests.sidecar.harness import app_flags, running_app


async def _client_host(request: Request) -> PlainTextResponse:
    return PlainTextResponse(request.client.host if request.client else "")


ECHO = Starlette(routes=[Route("/who", _client_host, methods=["GET"])])


@asynccontextmanager
async def echo_server(listen: str, trusted: tuple[str, ...] = ()) -> AsyncIterator[WebServer]:
    web = WebServer(ECHO, listen, trusted_proxies=trusted)
    task = asyncio.create_task(web.serve())
    await asyncio.wait_for(web.wait_started(), 10)
    try:
        yield web
    finally:
        web.stop()
        await asyncio.wait_for(task, 10)


async def who(port: int, headers: dict[str, str] | None = None, host: str = "127.0.0.1") -> str:
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"http://{host}:{port}/who", headers=headers, timeout=5)
    assert answer.status_code == 200
    return answer.text


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not ipv6_loopback(), reason="this machine cannot listen on [::]")


# The matcher and the resolution rule


def test_mapped_ipv6_matches_ipv4_cidrs_and_the_reverse() -> None:
    office = AddressSet(["10.0.0.0/8"])
    assert ipaddress.ip_address("::ffff:10.1.2.3") in office
    assert ipaddress.ip_address("10.1.2.3") in office
    assert ipaddress.ip_address("::ffff:11.1.2.3") not in office
    assert ipaddress.ip_address("fd00::10.1.2.3") not in office  # only ::ffff:0:0/96 carries an IPv4 address
    written_mapped = AddressSet(["::ffff:10.0.0.0/104"])
    assert ipaddress.ip_address("10.1.2.3") in written_mapped
    assert unmapped(ipaddress.ip_address("::ffff:127.0.0.1")) == ipaddress.ip_address("127.0.0.1")
    assert not AddressSet([])


def test_addresses_are_read_as_proxies_write_them() -> None:
    assert parse_ip(" 203.0.113.7 ") == ipaddress.ip_address("203.0.113.7")
    assert parse_ip("203.0.113.7:4711") == ipaddress.ip_address("203.0.113.7")
    assert parse_ip("[2001:db8::1]:4711") == ipaddress.ip_address("2001:db8::1")
    assert parse_ip("2001:db8::1") == ipaddress.ip_address("2001:db8::1")
    assert parse_ip("unknown") is None and parse_ip("") is None


PROXIES = AddressSet(["127.0.0.1/32", "10.0.0.0/8"])


@pytest.mark.parametrize(
    ("peer", "hops", "trusted", "expected"),
    [
        # No trusted proxies: the header is ignored, whatever it says.
        ("127.0.0.1", ["10.9.9.9"], AddressSet([]), "127.0.0.1"),
        # A peer that is not a trusted proxy: its header is ignored too.
        ("198.51.100.4", ["10.9.9.9"], PROXIES, "198.51.100.4"),
        # Trusted peer: the first untrusted hop from the right; the client's own claims left of it are ignored.
        ("127.0.0.1", ["10.9.9.9", "203.0.113.7", "10.1.1.1"], PROXIES, "203.0.113.7"),
        ("127.0.0.1", ["203.0.113.7"], PROXIES, "203.0.113.7"),
        # A trusted peer that names no one: the peer.
        ("127.0.0.1", [], PROXIES, "127.0.0.1"),
        # Every hop a trusted proxy: the leftmost one.
        ("127.0.0.1", ["10.2.2.2", "10.1.1.1"], PROXIES, "10.2.2.2"),
        # A hop that is not an address: unknown (never in an allow-list), not the proxy behind it.
        ("127.0.0.1", ["203.0.113.7", "garbage"], PROXIES, "unknown"),
        # Mapped addresses: as peer, as hop, and as the answer.
        ("::ffff:127.0.0.1", ["::ffff:203.0.113.7"], PROXIES, "203.0.113.7"),
        ("::ffff:198.51.100.4", [], AddressSet([]), "198.51.100.4"),
    ],
)
def test_the_client_is_the_first_untrusted_hop_from_the_right(
    peer: str, hops: list[str], trusted: AddressSet, expected: str
) -> None:
    assert resolve_client(peer, hops, trusted) == expected


# Over real sockets


async def test_a_spoofed_forwarded_for_is_ignored_without_trusted_proxies() -> None:
    async with echo_server("127.0.0.1:0") as web:
        assert await who(web.port, {"X-Forwarded-For": "10.9.9.9"}) == "127.0.0.1"
        assert await who(web.port, {"X-Real-IP": "10.9.9.9", "Forwarded": "for=10.9.9.9"}) == "127.0.0.1"


async def test_behind_a_trusted_proxy_the_right_hop_is_the_client() -> None:
    async with echo_server("127.0.0.1:0", trusted=("127.0.0.0/8",)) as web:
        assert await who(web.port, {"X-Forwarded-For": "10.9.9.9, 203.0.113.7"}) == "203.0.113.7"
        assert await who(web.port) == "127.0.0.1"
        # Two header lines are one list, in order: the right end is the second line's last entry.
        async with httpx.AsyncClient() as client:
            answer = await client.get(
                f"http://127.0.0.1:{web.port}/who",
                headers=[("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-For", "198.51.100.4")],
            )
        assert answer.text == "198.51.100.4"


async def test_a_proxy_outside_trusted_proxies_is_the_client_itself() -> None:
    async with echo_server("127.0.0.1:0", trusted=("10.0.0.0/8",)) as web:
        assert await who(web.port, {"X-Forwarded-For": "203.0.113.7"}) == "127.0.0.1"


@needs_ipv6
async def test_on_all_ipv6_interfaces_an_ipv4_peer_is_shown_and_trusted_as_ipv4() -> None:
    async with echo_server("[::]:0") as web:
        assert await who(web.port) == "127.0.0.1"  # the socket saw ::ffff:127.0.0.1
        assert await who(web.port, host="[::1]") == "::1"
    async with echo_server("[::]:0", trusted=("127.0.0.1/32",)) as web:
        assert await who(web.port, {"X-Forwarded-For": "203.0.113.7"}) == "203.0.113.7"


# The real sidecar's allow-list


def hook_flags(tmp_path: Path, **extra: object) -> dict[str, object]:
    return app_flags(tmp_path, f"http://127.0.0.1:{free_port()}", **{"webhook.allowed_sources": "10.0.0.0/8", **extra})


async def post_hook(port: int, headers: dict[str, str], host: str = "127.0.0.1") -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(f"http://{host}:{port}/webhooks/jira", content=b"{}", headers=headers, timeout=5)


FORBIDDEN = 403


async def test_the_allow_list_is_not_fooled_by_a_forwarded_for(tmp_path: Path) -> None:
    async with running_app(hook_flags(tmp_path)) as app:
        assert app.web_port is not None
        answer = await post_hook(app.web_port, {"X-Forwarded-For": "10.9.9.9"})
    assert answer.status_code == FORBIDDEN


async def test_the_allow_list_sees_the_client_a_trusted_proxy_names(tmp_path: Path) -> None:
    flags = hook_flags(tmp_path, **{"webhook.trusted_proxies": "127.0.0.1/32"})
    async with running_app(flags) as app:
        assert app.web_port is not None
        inside = await post_hook(app.web_port, {"X-Forwarded-For": "10.9.9.9"})
        outside = await post_hook(app.web_port, {"X-Forwarded-For": "203.0.113.7"})
        spoofed = await post_hook(app.web_port, {"X-Forwarded-For": "10.9.9.9, 203.0.113.7"})
    assert inside.status_code != FORBIDDEN  # the source check passed; a later check answers
    assert outside.status_code == FORBIDDEN
    assert spoofed.status_code == FORBIDDEN  # the client wrote 10.9.9.9; the proxy saw 203.0.113.7


@needs_ipv6
async def test_a_mapped_peer_matches_an_ipv4_allow_list(tmp_path: Path) -> None:
    flags = hook_flags(tmp_path, **{"webhook.listen_addr": "[::]:0", "webhook.allowed_sources": "127.0.0.0/8"})
    async with running_app(flags) as app:
        assert app.web_port is not None
        mapped = await post_hook(app.web_port, {})
        ipv6 = await post_hook(app.web_port, {}, host="[::1]")
    assert mapped.status_code != FORBIDDEN
    assert ipv6.status_code == FORBIDDEN  # ::1 is not in 127.0.0.0/8
