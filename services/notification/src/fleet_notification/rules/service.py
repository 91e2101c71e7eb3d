"""Alert rule CRUD, scoped by org, with the cross-field checks (channels need recipients)."""

from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from fleet_common.errors import NotFoundError, UnprocessableError
from fleet_notification.config import Settings
from fleet_notification.delivery.targets import TargetRefused, check_webhook_url_syntax
from fleet_notification.models import AlertRule
from fleet_notification.rules.schemas import (
    AlertRuleCreate,
    AlertRuleOut,
    AlertRuleUpdate,
    RecipientsIn,
    RecipientsOut,
    WebhookOut,
)


def to_out(rule: AlertRule) -> AlertRuleOut:
    webhook = (
        WebhookOut(url=rule.webhook_url, secret_set=bool(rule.webhook_secret))
        if rule.webhook_url
        else None
    )
    return AlertRuleOut(
        id=rule.id,
        name=rule.name,
        event_types=rule.event_types,
        vehicle_ids=rule.vehicle_ids,
        geofence_ids=rule.geofence_ids,
        vehicle_groups=rule.vehicle_groups,
        channels=rule.channels,
        recipients=RecipientsOut(emails=rule.emails, webhook=webhook, user_ids=rule.push_user_ids),
        cooldown_s=rule.cooldown_s,
        active_hours=rule.active_hours,
        timezone=rule.timezone,
        severity=rule.severity,
        active=rule.active,
        created_at=rule.created_at,
        updated_at=rule.updated_at,
    )


def _set_recipients(rule: AlertRule, recipients: RecipientsIn, settings: Settings) -> None:
    if recipients.webhook is not None:
        try:
            check_webhook_url_syntax(recipients.webhook.url, settings)
        except TargetRefused as exc:
            raise UnprocessableError(str(exc), field="recipients.webhook.url") from exc
    rule.emails = [str(e) for e in recipients.emails]
    rule.webhook_url = recipients.webhook.url if recipients.webhook else None
    rule.webhook_secret = recipients.webhook.secret if recipients.webhook else None
    rule.push_user_ids = list(dict.fromkeys(recipients.user_ids))


def _check_channels(rule: AlertRule) -> None:
    if "email" in rule.channels and not rule.emails:
        raise UnprocessableError(
            "the email channel needs at least one address", field="recipients.emails"
        )
    if "webhook" in rule.channels and not rule.webhook_url:
        raise UnprocessableError(
            "the webhook channel needs recipients.webhook (url and secret)",
            field="recipients.webhook",
        )


async def create_rule(
    session: AsyncSession, org_id: UUID, data: AlertRuleCreate, settings: Settings
) -> AlertRule:
    rule = AlertRule(
        org_id=org_id,
        name=data.name,
        event_types=list(data.event_types),
        vehicle_ids=list(dict.fromkeys(data.vehicle_ids)),
        geofence_ids=list(dict.fromkeys(data.geofence_ids)),
        vehicle_groups=list(dict.fromkeys(data.vehicle_groups)),
        channels=list(data.channels),
        cooldown_s=data.cooldown_s,
        active_hours=data.active_hours.model_dump() if data.active_hours else None,
        timezone=data.timezone,
        severity=data.severity,
        active=data.active,
    )
    _set_recipients(rule, data.recipients, settings)
    _check_channels(rule)
    session.add(rule)
    await session.commit()
    await session.refresh(rule)
    return rule


async def list_rules(
    session: AsyncSession,
    org_id: UUID,
    *,
    limit: int,
    offset: int,
    vehicle_group: str | None = None,
    vehicle_id: UUID | None = None,
) -> tuple[list[AlertRule], int]:
    query = select(AlertRule).where(AlertRule.org_id == org_id)
    if vehicle_group is not None:
        query = query.where(AlertRule.vehicle_groups.contains([vehicle_group]))
    if vehicle_id is not None:
        query = query.where(AlertRule.vehicle_ids.contains([vehicle_id]))
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(
        query.order_by(AlertRule.created_at, AlertRule.id).limit(limit).offset(offset)
    )
    return list(rows), total or 0


async def get_rule(session: AsyncSession, org_id: UUID, rule_id: UUID) -> AlertRule:
    rule = await session.scalar(
        select(AlertRule).where(AlertRule.id == rule_id, AlertRule.org_id == org_id)
    )
    if rule is None:
        raise NotFoundError("alert rule not found")
    return rule


async def update_rule(
    session: AsyncSession, org_id: UUID, rule_id: UUID, data: AlertRuleUpdate, settings: Settings
) -> AlertRule:
    rule = await get_rule(session, org_id, rule_id)
    fields = data.model_fields_set
    for name in ("name", "cooldown_s", "timezone", "active"):
        if name in fields and getattr(data, name) is not None:
            setattr(rule, name, getattr(data, name))
    for name in ("event_types", "channels", "vehicle_ids", "geofence_ids", "vehicle_groups"):
        if name in fields and getattr(data, name) is not None:
            setattr(rule, name, list(dict.fromkeys(getattr(data, name))))
    if "severity" in fields:
        rule.severity = data.severity
    if "active_hours" in fields:
        rule.active_hours = data.active_hours.model_dump() if data.active_hours else None
    if "recipients" in fields and data.recipients is not None:
        _set_recipients(rule, data.recipients, settings)
    _check_channels(rule)
    rule.updated_at = func.now()
    await session.commit()
    await session.refresh(rule)
    return rule


async def delete_rule(session: AsyncSession, org_id: UUID, rule_id: UUID) -> None:
    rule = await get_rule(session, org_id, rule_id)
    await session.delete(rule)
    await session.commit()
