"""Webhook, email and Firebase push delivery against local stand-ins, and their retries."""

import hashlib
import hmac
import json
import uuid
from email import message_from_bytes, policy

import pytest
from sqlalchemy import select

from fleet_notification.models import Alert, Delivery

from .conftest import UNREGISTERED_TOKENS, eventually, make_event, publish

SECRET = "s3cret-webhook-key-0123456789"


async def settled_delivery(app, org_id, channel) -> Delivery | None:
    async with app.state.sessionmaker() as session:
        row = await session.scalar(
            select(Delivery)
            .join(Alert, Alert.id == Delivery.alert_id)
            .where(Alert.org_id == uuid.UUID(org_id), Delivery.channel == channel)
        )
    return row if row is not None and row.status != "pending" else None


async def rule_for(client, org, channel, **recipients):
    body = {
        "name": f"{channel} rule",
        "event_types": ["overspeed"],
        "channels": [channel],
        "cooldown_s": 0,
        "recipients": recipients,
    }
    response = await client.post("/api/v1/alert-rules", headers=org.headers(), json=body)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.parametrize(
    ("fails", "status", "attempts"), [(0, "delivered", 1), (2, "delivered", 3)]
)
async def test_webhook_is_signed_and_retried(
    notification, make_org, webhook_receiver, fails, status, attempts
):
    client, app, redis = notification
    org = make_org()
    path = f"/hooks/{uuid.uuid4().hex}/fail-{fails}"
    rule = await rule_for(
        client, org, "webhook", webhook={"url": webhook_receiver.url + path, "secret": SECRET}
    )
    assert rule["recipients"]["webhook"] == {"url": webhook_receiver.url + path, "secret_set": True}
    assert SECRET not in json.dumps(rule)
    event = make_event(org.org_id)
    await publish(redis, event)
    delivery = await eventually(lambda: settled_delivery(app, org.org_id, "webhook"))
    assert (delivery.status, delivery.attempts) == (status, attempts)
    requests = webhook_receiver.of(path)
    assert len(requests) == attempts
    _path, headers, body = requests[-1]
    expected = hmac.new(
        SECRET.encode(), headers["x-fleet-timestamp"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(headers["x-fleet-signature"], f"sha256={expected}")
    payload = json.loads(body)
    assert payload["alert"]["event_id"] == event["id"]
    assert payload["alert"]["rule_name"] == "webhook rule"
    assert headers["content-type"] == "application/json"


async def test_webhook_gives_up_after_max_attempts(notification, make_org, webhook_receiver):
    client, app, redis = notification
    org = make_org()
    path = f"/hooks/{uuid.uuid4().hex}/fail-always"
    await rule_for(
        client, org, "webhook", webhook={"url": webhook_receiver.url + path, "secret": SECRET}
    )
    await publish(redis, make_event(org.org_id))
    delivery = await eventually(lambda: settled_delivery(app, org.org_id, "webhook"))
    assert delivery.status == "failed"
    assert delivery.attempts == app.state.settings.delivery_max_attempts
    assert "500" in delivery.last_error
    assert len(webhook_receiver.of(path)) == delivery.attempts


async def test_webhook_client_error_is_not_retried(notification, make_org, webhook_receiver):
    client, app, redis = notification
    org = make_org()
    path = f"/hooks/{uuid.uuid4().hex}/gone"
    await rule_for(
        client, org, "webhook", webhook={"url": webhook_receiver.url + path, "secret": SECRET}
    )
    await publish(redis, make_event(org.org_id))
    delivery = await eventually(lambda: settled_delivery(app, org.org_id, "webhook"))
    assert (delivery.status, delivery.attempts) == ("failed", 1)


async def test_email_has_plain_and_html_parts(notification, make_org, smtp_server):
    client, app, redis = notification
    _controller, sink = smtp_server
    org = make_org()
    recipient = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    await rule_for(client, org, "email", emails=[recipient])
    event = make_event(
        org.org_id, details={"max_speed_kph": 97.0, "limit_kph": 80, "note": "<script>x</script>"}
    )
    await publish(redis, event)
    delivery = await eventually(lambda: settled_delivery(app, org.org_id, "email"))
    assert delivery.status == "delivered", delivery.last_error
    [envelope] = [e for e in sink.envelopes if recipient in e.rcpt_tos]
    assert envelope.mail_from == "alerts@fleet.test"
    message = message_from_bytes(envelope.content, policy=policy.default)
    assert "exceeded the speed limit" in message["Subject"]
    plain = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Max speed kph: 97.0" in plain
    assert "<th align='left'>Max speed kph</th><td>97.0</td>" in html
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


async def test_push_reaches_fcm_and_unregistered_tokens_are_removed(
    notification, make_org, fcm_standin
):
    client, app, redis = notification
    org = make_org()
    good, gone = f"good-{uuid.uuid4().hex}", f"gone-{uuid.uuid4().hex}"
    UNREGISTERED_TOKENS.add(gone)
    for token, role in ((good, "dispatcher"), (gone, "viewer")):
        response = await client.post(
            "/api/v1/push-tokens",
            headers=org.headers(role),
            json={"token": token, "platform": "android"},
        )
        assert response.status_code == 201, response.text
    await rule_for(client, org, "push")
    event = make_event(org.org_id)
    await publish(redis, event)
    delivery = await eventually(lambda: settled_delivery(app, org.org_id, "push"))
    assert delivery.status == "delivered", delivery.last_error
    assert delivery.outcome["removed_tokens"] == 1
    sent = [json.loads(body)["message"] for _p, _h, body in fcm_standin.of("messages:send")]
    mine = [m for m in sent if m["token"] in (good, gone)]
    assert {m["token"] for m in mine} == {good, gone}
    assert next(m for m in mine if m["token"] == good)["data"]["type"] == "overspeed"
    assert fcm_standin.of("/token"), "credentials came from the service account's token_uri"
    assert (await client.get("/api/v1/push-tokens", headers=org.headers("viewer"))).json() == []
    assert (
        len((await client.get("/api/v1/push-tokens", headers=org.headers("dispatcher"))).json())
        == 1
    )
