"""Which webhook targets may be called: public addresses, or what the allowlist permits.

The check and the connection use the same DNS answer: `PinnedBackend` (an httpcore network
backend) resolves the host, checks every address and connects to a checked one, so a name
that resolves to a public address for the check and to a private one a moment later (DNS
rebinding) cannot reach the private one. The request keeps the URL's host: the Host header,
TLS SNI and certificate verification are for the name, not the address.
"""

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
from httpx import create_ssl_context

from fleet_notification.config import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(Exception):
    """The URL is malformed or points somewhere a webhook may not go."""


def _public(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _allowed(ip: IPAddress, settings: Settings) -> bool:
    return _public(ip) or any(ip in net for net in settings.webhook_allowed_networks())


def parse_webhook_url(url: str) -> tuple[str, int]:
    """Host and port of an http(s) URL without credentials; raises TargetRefused."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused("webhook url is malformed") from exc
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("webhook url must be http or https")
    if not parts.hostname:
        raise TargetRefused("webhook url has no host")
    if parts.username or parts.password:
        raise TargetRefused("webhook url must not carry credentials")
    return parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


def _normal_host(host: str) -> str:
    # "localhost." is "localhost": a trailing dot must not slip past the name checks.
    return host.strip("[]").rstrip(".").lower()


def check_webhook_url_syntax(url: str, settings: Settings) -> None:
    """At rule creation (and before each call): refuse literal addresses the allowlist does
    not permit and names that cannot be public; no DNS here."""
    host, _port = parse_webhook_url(url)
    host = _normal_host(host)
    if host in settings.webhook_allowed_hosts():
        return
    if host == "localhost" or host.endswith(".localhost"):
        # RFC 6761: loopback, whatever DNS says; allowed only if loopback is allowlisted.
        if not _allowed(ipaddress.ip_address("127.0.0.1"), settings):
            raise TargetRefused(f"webhook host {host} is not a public address")
        return
    if host.endswith((".local", ".internal")):
        raise TargetRefused(f"webhook host {host} is not a public address")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return
    if not _allowed(ip, settings):
        raise TargetRefused(f"webhook address {ip} is private, loopback or link-local")


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver, in its order of preference."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConnectionError(f"cannot resolve {host}: {exc}") from exc
    return list(dict.fromkeys(info[4][0].split("%")[0] for info in infos))


async def webhook_addresses(
    host: str, port: int, settings: Settings, resolve: Resolver = system_resolver
) -> list[str]:
    """Resolve the host once; every address must be allowed (unless the name itself is
    allowlisted). The caller connects to these addresses and no others."""
    name = _normal_host(host)
    addresses = await resolve(name, port)
    if not addresses:
        raise ConnectionError(f"{name} has no address")
    if name in settings.webhook_allowed_hosts():
        return addresses
    for address in addresses:
        ip = ipaddress.ip_address(address)
        if not _allowed(ip, settings):
            raise TargetRefused(f"webhook host {name} resolves to non-public address {ip}")
    return addresses


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects to webhook hosts only at addresses `webhook_addresses` checked."""

    def __init__(self, settings: Settings, resolve: Resolver = system_resolver) -> None:
        self._settings = settings
        self._resolve = resolve
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await webhook_addresses(host, port, self._settings, self._resolve)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        except ConnectionError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are never sent over a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool whose connections go through PinnedBackend.

    httpx 0.28 has no `network_backend` argument (encode/httpx#3749 proposes one), so the pool
    httpx built is replaced by an httpcore pool given the backend, which is httpcore's
    supported extension point; the webhook tests fail if this stops taking effect."""

    def __init__(
        self, settings: Settings, resolve: Resolver = system_resolver, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=create_ssl_context(),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=PinnedBackend(settings, resolve),
        )


def webhook_client(settings: Settings, resolve: Resolver = system_resolver) -> httpx.AsyncClient:
    """The client webhooks go out with: pinned addresses, no redirects, no proxy from the
    environment."""
    return httpx.AsyncClient(
        transport=PinnedTransport(settings, resolve),
        timeout=settings.webhook_timeout_s,
        follow_redirects=False,
        trust_env=False,
    )
