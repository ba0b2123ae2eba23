"""Who sent a request: the TCP peer, or with `webhook.trusted_proxies` the client a proxy names.

uvicorn's own proxy handling (off here) believes X-Forwarded-For from loopback, so behind a local
TLS terminator that passes the client's header on, the allow-list would check an address the
client chose. Here a header is believed only from a peer inside `trusted_proxies`, and then only
as far as the hops it lists are trusted too: walking from the right (the hop nearest to us), the
first address that is not a trusted proxy is the client. Everything left of it was written by
the client and is ignored.

IPv4-mapped IPv6 addresses (`::ffff:10.1.2.3`, what a socket listening on `[::]` sees for an IPv4
client) are the IPv4 address they carry: they match IPv4 CIDRs, and the scope shows them unmapped.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# The client a trusted proxy named with something that is not an address: never in an allow-list.
UNKNOWN = "unknown"


def parse_ip(text: str) -> IPAddress | None:
    """An address as peers and proxies write it: `1.2.3.4`, `1.2.3.4:567`, `::1`, `[::1]:567`."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]  # IPv4 with a port (some proxies add one)
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def unmapped(address: IPAddress) -> IPAddress:
    """`::ffff:a.b.c.d` -> `a.b.c.d`; any other address as it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class AddressSet:
    """CIDRs (config `kind="cidrs"`) matched so that a mapped IPv6 and its IPv4 address are the same."""

    def __init__(self, cidrs: Iterable[str]) -> None:
        self.networks = tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            return False
        plain = unmapped(address)
        forms: list[IPAddress] = [plain]
        if isinstance(plain, ipaddress.IPv4Address):
            forms.append(ipaddress.IPv6Address(f"::ffff:{plain}"))  # for a CIDR written as ::ffff:a.b.c.d/n
        return any(form in network for form in forms for network in self.networks)


def forwarded_hops(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """Every X-Forwarded-For entry, left to right; repeated headers count as one list, in order."""
    hops: list[str] = []
    for name, value in headers:
        if name.lower() == b"x-forwarded-for":
            hops += [hop.strip() for hop in value.decode("latin-1").split(",") if hop.strip()]
    return hops


def resolve_client(peer: str, hops: Sequence[str], trusted: AddressSet) -> str:
    """The client's address as text: the peer's, unless the peer is a trusted proxy (see the module)."""
    address = parse_ip(peer)
    if address is None:
        return peer  # not an IP peer (a unix socket): nothing to resolve
    if not trusted or address not in trusted:
        return str(unmapped(address))
    for hop in reversed(hops):
        address = parse_ip(hop)
        if address is None:
            return UNKNOWN
        if address not in trusted:
            return str(unmapped(address))
    return str(unmapped(address))  # every hop is a trusted proxy: the leftmost one sent it


@functools.lru_cache(maxsize=4096)
def _peer_only(peer: str, trusted: AddressSet) -> str:
    """`resolve_client` for a request naming no other hop: a function of the peer and the set alone."""
    return resolve_client(peer, (), trusted)


class ClientAddress:
    """ASGI middleware: `scope["client"]` becomes the resolved client, so `request.client.host` is
    what the allow-list and the per-source limits must see. The port is 0 when a proxy named the client."""

    def __init__(self, app: ASGIApp, trusted_proxies: Iterable[str] = ()) -> None:
        self.app = app
        self.trusted = AddressSet(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] in ("http", "websocket") and client:
            host, port = client
            # Without trusted proxies no header is believed: the peer alone decides (parsed once per host).
            hops = forwarded_hops(scope["headers"]) if self.trusted else []
            resolved = resolve_client(host, hops, self.trusted) if hops else _peer_only(host, self.trusted)
            if resolved != host:
                peer = parse_ip(host)
                same_peer = peer is not None and resolved == str(unmapped(peer))
                scope = {**scope, "client": (resolved, port if same_peer else 0)}
        await self.app(scope, receive, send)
