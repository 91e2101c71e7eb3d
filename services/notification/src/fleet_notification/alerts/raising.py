"""Turning one event into alerts by the org's rules, with their pending deliveries.

Idempotent by event id: an event the stream delivers again finds its alerts already there
(unique on event and rule) and raises nothing. The cooldown is one conditional upsert per
rule and subject (vehicle, event type and geofence), so concurrent consumers cannot both pass
it, and it holds back only repeats of the same thing: an enter and the exit after it are two.

An overspeed is alerted when its episode has lasted the detector's minimum duration
(`details.phase` "started"); the episode's closing event ("ended", same `episode_id`)
raises no new alert but completes the alerts it raised with its maximum speed and duration.
"""

from datetime import datetime, time, timedelta
from typing import Annotated, Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict, StringConstraints
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from fleet_notification.events import DEFAULT_SEVERITY, EventType
from fleet_notification.models import Alert, AlertRule, Delivery, RuleCooldown


class IncomingEvent(BaseModel):
    """An entry of `fleet:events`, as the location service writes it."""

    model_config = ConfigDict(extra="ignore")

    id: UUID
    type: EventType
    org_id: UUID
    vehicle_id: UUID | None = None
    # The vehicle's group at detection time (an addition to the event contract's fields).
    vehicle_group: Annotated[str, StringConstraints(max_length=60)] | None = None
    device_id: UUID | None = None
    ts: AwareDatetime
    position: dict[str, Any] | None = None
    details: dict[str, Any] = {}


def _clock(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def within_active_hours(rule: AlertRule, at: datetime) -> bool:
    hours = rule.active_hours
    if not hours:
        return True
    local = at.astimezone(ZoneInfo(rule.timezone))
    start, end, now = _clock(hours["start"]), _clock(hours["end"]), local.time()
    if start < end:
        return start <= now < end and local.weekday() in hours["days"]
    # A window over midnight belongs to the day it started on.
    if now >= start:
        return local.weekday() in hours["days"]
    if now < end:
        return (local - timedelta(days=1)).weekday() in hours["days"]
    return False


def _targets_vehicle(rule: AlertRule, event: IncomingEvent) -> bool:
    """No vehicle or group named: every vehicle. Otherwise one named, or in a named group."""
    if not rule.vehicle_ids and not rule.vehicle_groups:
        return True
    return event.vehicle_id in rule.vehicle_ids or (
        event.vehicle_group is not None and event.vehicle_group in rule.vehicle_groups
    )


def _matches(rule: AlertRule, event: IncomingEvent) -> bool:
    if not _targets_vehicle(rule, event):
        return False
    if rule.geofence_ids:
        try:
            geofence_id = UUID(str(event.details.get("geofence_id")))
        except ValueError:
            return False
        if geofence_id not in rule.geofence_ids:
            return False
    return within_active_hours(rule, event.ts)


def _targets(rule: AlertRule) -> dict[str, dict[str, Any]]:
    return {
        "in_app": {},
        "email": {"emails": list(rule.emails)},
        "webhook": {"url": rule.webhook_url, "secret": rule.webhook_secret},
        "push": {"user_ids": [str(u) for u in rule.push_user_ids]},
    }


def cooldown_subject(event: IncomingEvent) -> str:
    """What a repeat must share to be held back: vehicle (or device), type and geofence."""
    geofence = event.details.get("geofence_id") if event.type.startswith("geofence") else None
    return f"{event.vehicle_id or event.device_id or ''}:{event.type}:{geofence or ''}"[:160]


async def _cooldown_passes(session: AsyncSession, rule: AlertRule, event: IncomingEvent) -> bool:
    if rule.cooldown_s <= 0:
        return True
    subject = cooldown_subject(event)
    stmt = insert(RuleCooldown).values(rule_id=rule.id, subject=subject, last_alert_at=event.ts)
    stmt = stmt.on_conflict_do_update(
        index_elements=[RuleCooldown.rule_id, RuleCooldown.subject],
        set_={"last_alert_at": stmt.excluded.last_alert_at},
        where=RuleCooldown.last_alert_at
        <= stmt.excluded.last_alert_at - timedelta(seconds=rule.cooldown_s),
    ).returning(RuleCooldown.rule_id)
    return (await session.execute(stmt)).first() is not None


async def _close_overspeed(session: AsyncSession, event: IncomingEvent) -> None:
    """Complete the alerts of the episode this closing event ends (none if none was raised)."""
    try:
        started_at = datetime.fromisoformat(str(event.details.get("started_at")))
    except ValueError:
        return
    await session.execute(
        update(Alert)
        .where(
            Alert.org_id == event.org_id,
            Alert.type == "overspeed",
            # The episode began at started_at and was alerted on or after it: an index range.
            Alert.occurred_at >= started_at,
            Alert.occurred_at <= event.ts,
            Alert.details["episode_id"].astext == str(event.details.get("episode_id")),
        )
        .values(details=Alert.details.op("||")(event.details))
    )


async def raise_alerts(session: AsyncSession, event: IncomingEvent) -> list[UUID]:
    """Create the event's alerts and deliveries in the session; returns the new alert ids."""
    if event.type == "overspeed" and event.details.get("phase") == "ended":
        await _close_overspeed(session, event)
        return []
    rules = await session.scalars(
        select(AlertRule).where(
            AlertRule.org_id == event.org_id,
            AlertRule.active.is_(True),
            AlertRule.event_types.contains([event.type]),
        )
    )
    created: list[UUID] = []
    for rule in rules:
        if not _matches(rule, event):
            continue
        already = await session.scalar(
            select(Alert.id).where(Alert.event_id == event.id, Alert.rule_id == rule.id)
        )
        if already is not None or not await _cooldown_passes(session, rule, event):
            continue
        alert_id = await session.scalar(
            insert(Alert)
            .values(
                id=uuid4(),
                org_id=event.org_id,
                rule_id=rule.id,
                rule_name=rule.name,
                event_id=event.id,
                type=event.type,
                severity=rule.severity or DEFAULT_SEVERITY[event.type],
                status="open",
                vehicle_id=event.vehicle_id,
                vehicle_group=event.vehicle_group,
                device_id=event.device_id,
                position=event.position,
                details=event.details,
                occurred_at=event.ts,
            )
            .on_conflict_do_nothing(index_elements=[Alert.event_id, Alert.rule_id])
            .returning(Alert.id)
        )
        if alert_id is None:
            continue
        targets = _targets(rule)
        for channel in rule.channels:
            session.add(
                Delivery(
                    alert_id=alert_id,
                    org_id=event.org_id,
                    channel=channel,
                    target=targets[channel],
                    status="pending",
                    attempts=0,
                    outcome={},
                )
            )
        created.append(alert_id)
    return created
