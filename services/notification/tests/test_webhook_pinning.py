"""Webhook targets: the address checked is the address connected to (no DNS rebinding), and
loopback names are refused unless the allowlist permits loopback. Real local receiver; the
DNS answers of the rebinding case come from a stand-in resolver (a changing DNS server
cannot be had here)."""

import uuid

import pytest

from fleet_notification.config import Settings
from fleet_notification.delivery.channels import DeliveryError
from fleet_notification.delivery.targets import webhook_client
from fleet_notification.delivery.webhook import WebhookChannel, sign
from fleet_notification.models import Delivery

SECRET = "pinning-secret-0123456789abcdef"


def settings(allowlist: str) -> Settings:
    return Settings(webhook_allowlist=allowlist, webhook_timeout_s=3)


def delivery(url: str) -> Delivery:
    return Delivery(id=uuid.uuid4(), channel="webhook", target={"url": url, "secret": SECRET})


async def send(config: Settings, url: str, resolve=None) -> dict:
    client = webhook_client(config, resolve) if resolve else webhook_client(config)
    async with client:
        return await WebhookChannel(config, client).send(delivery(url), {"type": "overspeed"})


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST.", "127.0.0.1", "a.localhost"])
async def test_loopback_is_refused_without_the_allowlist(webhook_receiver, host):
    port = webhook_receiver.server_address[1]
    path = f"/pin/{uuid.uuid4().hex}"
    for allowlist in ("", "10.0.0.0/8,hooks.example"):
        with pytest.raises(DeliveryError) as refused:
            await send(settings(allowlist), f"http://{host}:{port}{path}")
        assert refused.value.permanent
        assert "not a public" in str(refused.value) or "private" in str(refused.value)
    assert webhook_receiver.of(path) == []


async def test_localhost_is_delivered_when_loopback_is_allowlisted(webhook_receiver):
    port = webhook_receiver.server_address[1]
    path = f"/pin/{uuid.uuid4().hex}"
    outcome = await send(settings("127.0.0.0/8"), f"http://localhost:{port}{path}")
    assert outcome == {"status_code": 200}
    [(_path, headers, body)] = webhook_receiver.of(path)
    assert headers["host"] == f"localhost:{port}"
    assert headers["x-fleet-signature"] == sign(SECRET, headers["x-fleet-timestamp"], body)


async def test_a_name_resolving_to_loopback_is_refused_when_connecting(webhook_receiver):
    """A public-looking name passes the rule's syntax check; its DNS answer is checked where
    the connection is made."""
    port = webhook_receiver.server_address[1]
    path = f"/pin/{uuid.uuid4().hex}"

    async def resolve(host: str, _port: int) -> list[str]:
        assert host == "hooks.customer.example"
        return ["127.0.0.1"]

    with pytest.raises(DeliveryError) as refused:
        await send(settings(""), f"http://hooks.customer.example:{port}{path}", resolve)
    assert refused.value.permanent
    assert "resolves to non-public address 127.0.0.1" in str(refused.value)
    assert webhook_receiver.of(path) == []


async def test_the_connection_goes_to_the_address_that_was_checked(webhook_receiver):
    """DNS rebinding: the first answer is allowed, every later one is not. The request is
    delivered only because the connection uses the first answer, the one checked, with the
    name kept in the Host header; the resolver is asked once per connection."""
    port = webhook_receiver.server_address[1]
    path = f"/pin/{uuid.uuid4().hex}"
    asked: list[str] = []

    async def rebinding(host: str, _port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"] if len(asked) == 1 else ["10.1.2.3"]

    outcome = await send(
        settings("127.0.0.1/32"), f"http://hooks.customer.example:{port}{path}", rebinding
    )
    assert outcome == {"status_code": 200}
    assert asked == ["hooks.customer.example"]
    [(_path, headers, _body)] = webhook_receiver.of(path)
    assert headers["host"] == f"hooks.customer.example:{port}"

    # Were it to resolve again, the second answer is refused, not connected to.
    asked.clear()
    asked.append("first answer used up")
    with pytest.raises(DeliveryError) as refused:
        await send(
            settings("127.0.0.1/32"), f"http://hooks.customer.example:{port}{path}", rebinding
        )
    assert "10.1.2.3" in str(refused.value)
    assert len(webhook_receiver.of(path)) == 1
