"""Email over SMTP with a plain-text and an HTML part."""

import html
from email.message import EmailMessage
from typing import Any

import aiosmtplib

from fleet_notification.config import Settings
from fleet_notification.delivery.channels import DeliveryError
from fleet_notification.models import Delivery

TITLES = {
    "geofence_enter": "entered a geofence",
    "geofence_exit": "left a geofence",
    "overspeed": "exceeded the speed limit",
    "idle": "is idling",
    "device_online": "came online",
    "device_offline": "went offline",
    "low_battery": "has a low battery",
}


def summary(alert: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """A one-line title and the facts worth listing, shared by email and push."""
    subject = alert.get("vehicle_id") or alert.get("device_id") or "A device"
    title = (
        f"{alert['severity'].upper()}: vehicle {subject} {TITLES.get(alert['type'], alert['type'])}"
    )
    facts = [("Rule", alert["rule_name"]), ("Time", alert["occurred_at"])]
    position = alert.get("position") or {}
    if position.get("lat") is not None:
        facts.append(("Position", f"{position['lat']:.6f}, {position['lon']:.6f}"))
    if position.get("speed_kph") is not None:
        facts.append(("Speed", f"{position['speed_kph']:.0f} km/h"))
    for key, value in (alert.get("details") or {}).items():
        if value is not None and not isinstance(value, dict | list):
            facts.append((key.replace("_", " ").capitalize(), str(value)))
    return title, facts


def build_message(settings: Settings, recipients: list[str], alert: dict[str, Any]) -> EmailMessage:
    title, facts = summary(alert)
    link = (
        f"{settings.dashboard_url.rstrip('/')}/alerts/{alert['id']}"
        if settings.dashboard_url
        else None
    )
    message = EmailMessage()
    message["Subject"] = f"[Fleet Tracker] {title}"
    message["From"] = settings.smtp_sender
    message["To"] = ", ".join(recipients)
    plain = [title, "", *(f"{k}: {v}" for k, v in facts)]
    if link:
        plain += ["", f"Open: {link}"]
    message.set_content("\n".join(plain) + "\n")
    rows = "".join(
        f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
        for k, v in facts
    )
    link_html = f"<p><a href='{html.escape(link)}'>Open in Fleet Tracker</a></p>" if link else ""
    message.add_alternative(
        f"<html><body><h2>{html.escape(title)}</h2><table>{rows}</table>{link_html}</body></html>",
        subtype="html",
    )
    return message


class EmailChannel:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, delivery: Delivery, alert: dict[str, Any]) -> dict[str, Any]:
        s = self.settings
        recipients = delivery.target.get("emails") or []
        if not recipients:
            raise DeliveryError("the rule has no email recipients", permanent=True)
        if not s.smtp_host:
            raise DeliveryError("SMTP is not configured (NOTIFICATION_SMTP_HOST)", permanent=True)
        try:
            refused, _response = await aiosmtplib.send(
                build_message(s, recipients, alert),
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                start_tls=s.smtp_starttls and not s.smtp_use_tls,
                use_tls=s.smtp_use_tls,
                timeout=s.smtp_timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError("every recipient was refused", permanent=True) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"SMTP server answered {exc.code}", permanent=500 <= exc.code < 600
            ) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP failed: {type(exc).__name__}") from exc
        return {"recipients": len(recipients), "refused": sorted(refused)}
