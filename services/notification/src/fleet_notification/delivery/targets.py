"""Which webhook targets may be called: public addresses, or what the allowlist permits."""

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

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


def check_webhook_url_syntax(url: str, settings: Settings) -> None:
    """At rule creation: refuse literal private addresses and localhost names."""
    host, _port = parse_webhook_url(url)
    if host in settings.webhook_allowed_hosts():
        return
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        raise TargetRefused(f"webhook host {host} is not a public address")
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return
    if not _allowed(ip, settings):
        raise TargetRefused(f"webhook address {ip} is private, loopback or link-local")


async def check_webhook_target(url: str, settings: Settings) -> None:
    """Before each call: every address the host resolves to must be allowed."""
    check_webhook_url_syntax(url, settings)
    host, port = parse_webhook_url(url)
    if host in settings.webhook_allowed_hosts():
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM
        )
    except socket.gaierror as exc:
        raise ConnectionError(f"cannot resolve {host}: {exc}") from exc
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        if not _allowed(ip, settings):
            raise TargetRefused(f"webhook host {host} resolves to non-public address {ip}")
