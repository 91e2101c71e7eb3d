"""The caller's address, believing X-Forwarded-For only from trusted proxies.

The gateway trusts its load balancer (if any); the services trust the gateway.
"""

import ipaddress
from functools import lru_cache

from fastapi import Request

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=16)
def _networks(trusted: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in trusted)


def _trusted(address: str, networks) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def is_trusted(address: str, trusted_proxies: list[str]) -> bool:
    return _trusted(address, _networks(tuple(trusted_proxies)))


def client_address(request: Request, trusted_proxies: list[str]) -> str:
    """The nearest untrusted address in the chain of peer and X-Forwarded-For hops."""
    peer = request.client.host if request.client else "unknown"
    networks = _networks(tuple(trusted_proxies))
    if not _trusted(peer, networks):
        return peer
    forwarded = request.headers.get("x-forwarded-for", "")
    # Walk from the nearest hop outwards; the first untrusted address is the client.
    for hop in reversed([part.strip() for part in forwarded.split(",") if part.strip()]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer
        if not _trusted(hop, networks):
            return hop
    return peer
