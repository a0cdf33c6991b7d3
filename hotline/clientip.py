"""Who is on the other end: the client address behind an optional trusted proxy.

The address is the socket peer, unless the peer is one of ``HOTLINE_TRUSTED_PROXIES``.
Then it is the right-most ``X-Forwarded-For`` entry that is not itself a trusted proxy:
each proxy appends the address it saw, so entries to the right of the first untrusted
one were written by proxies we trust, and anything to its left was written by the client
and may be forged. A header from an untrusted peer is ignored entirely.

Rate limits key on :func:`bucket`: an IPv4 address, or the /64 an IPv6 address is in
(one subscriber usually holds a whole /64, so counting single IPv6 addresses would let a
client rotate past any limit).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
TrustedProxies = tuple[Network, ...]

FORWARDED_FOR = "X-Forwarded-For"


def parse_networks(raw: str) -> TrustedProxies:
    """``10.0.0.1, 172.16.0.0/12, ::1`` -> networks; raises ``ValueError`` naming the bad one."""
    out: list[Network] = []
    for item in (p.strip() for p in raw.split(",")):
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise ValueError(f"{item!r} is not an IP address or CIDR network") from exc
    return tuple(out)


def parse_ip(raw: str | None) -> IPAddress | None:
    """An address as peers and proxies write it (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``)."""
    if not raw:
        return None
    text = raw.strip()
    if text.startswith("["):  # [v6] or [v6]:port
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    text = text.split("%", 1)[0]  # a zone id names an interface, not a host
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress, trusted: TrustedProxies) -> bool:
    return any(address in network for network in trusted)


def client_address(
    peer: str | None, forwarded_for: Iterable[str], trusted: TrustedProxies
) -> str | None:
    """The client's address given the socket peer and the ``X-Forwarded-For`` values."""
    current = parse_ip(peer)
    if current is None:
        return peer or None
    if not trusted or not _trusted(current, trusted):
        return str(current)
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    for raw in reversed(hops):
        hop = parse_ip(raw)
        if hop is None:
            # A trusted proxy never writes garbage; whoever did is the last hop we know.
            return str(current)
        current = hop
        if not _trusted(current, trusted):
            return str(current)
    return str(current)  # every hop is a proxy we trust: the left-most one is the client


def request_address(request: web.BaseRequest, trusted: TrustedProxies) -> str | None:
    return client_address(request.remote, request.headers.getall(FORWARDED_FOR, ()), trusted)


def bucket(address: str | None) -> str:
    """The key rate limits count under: the IPv4 address or the IPv6 /64."""
    parsed = parse_ip(address)
    if parsed is None:
        return (address or "unknown")[:64]
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)
