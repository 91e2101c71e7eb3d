"""Alert queries and the status workflow open -> acknowledged -> resolved."""

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from fleet_common.errors import ConflictError, NotFoundError
from fleet_notification.alerts.schemas import AlertOut, DeliveryOut
from fleet_notification.models import Alert, Delivery


def to_out(alert: Alert, deliveries: list[Delivery] | None = None) -> AlertOut:
    return AlertOut(
        id=alert.id,
        rule_id=alert.rule_id,
        rule_name=alert.rule_name,
        event_id=alert.event_id,
        type=alert.type,
        severity=alert.severity,
        status=alert.status,
        vehicle_id=alert.vehicle_id,
        vehicle_group=alert.vehicle_group,
        device_id=alert.device_id,
        position=alert.position,
        details=alert.details,
        occurred_at=alert.occurred_at,
        created_at=alert.created_at,
        acknowledged_at=alert.acknowledged_at,
        acknowledged_by=alert.acknowledged_by,
        resolved_at=alert.resolved_at,
        resolved_by=alert.resolved_by,
        deliveries=None
        if deliveries is None
        else [
            DeliveryOut(
                channel=d.channel,
                status=d.status,
                attempts=d.attempts,
                last_error=d.last_error,
                delivered_at=d.delivered_at,
            )
            for d in deliveries
        ],
    )


def alert_json(alert: Alert) -> dict[str, Any]:
    """The alert as dashboards, webhooks and pushes receive it."""
    return to_out(alert).model_dump(mode="json", exclude={"deliveries"})


async def list_alerts(
    session: AsyncSession,
    org_id: UUID,
    *,
    status: str | None,
    type_: str | None,
    vehicle_id: UUID | None,
    vehicle_group: str | None = None,
    from_: datetime | None,
    to: datetime | None,
    limit: int,
    offset: int,
) -> tuple[list[Alert], int]:
    query = select(Alert).where(Alert.org_id == org_id)
    if status is not None:
        query = query.where(Alert.status == status)
    if type_ is not None:
        query = query.where(Alert.type == type_)
    if vehicle_id is not None:
        query = query.where(Alert.vehicle_id == vehicle_id)
    if vehicle_group is not None:
        query = query.where(Alert.vehicle_group == vehicle_group)
    if from_ is not None:
        query = query.where(Alert.occurred_at >= from_)
    if to is not None:
        query = query.where(Alert.occurred_at < to)
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(
        query.order_by(Alert.occurred_at.desc(), Alert.id).limit(limit).offset(offset)
    )
    return list(rows), total or 0


async def get_alert(
    session: AsyncSession, org_id: UUID, alert_id: UUID, *, for_update: bool = False
) -> Alert:
    query = select(Alert).where(Alert.id == alert_id, Alert.org_id == org_id)
    if for_update:
        query = query.with_for_update()
    alert = await session.scalar(query)
    if alert is None:
        raise NotFoundError("alert not found")
    return alert


async def deliveries_of(session: AsyncSession, alert_id: UUID) -> list[Delivery]:
    rows = await session.scalars(
        select(Delivery).where(Delivery.alert_id == alert_id).order_by(Delivery.channel)
    )
    return list(rows)


async def acknowledge(session: AsyncSession, org_id: UUID, alert_id: UUID, user_id: UUID) -> Alert:
    alert = await get_alert(session, org_id, alert_id, for_update=True)
    if alert.status != "open":
        raise ConflictError(f"alert is already {alert.status}")
    alert.status = "acknowledged"
    alert.acknowledged_at = func.now()
    alert.acknowledged_by = user_id
    await session.commit()
    await session.refresh(alert)
    return alert


async def resolve(session: AsyncSession, org_id: UUID, alert_id: UUID, user_id: UUID) -> Alert:
    alert = await get_alert(session, org_id, alert_id, for_update=True)
    if alert.status == "resolved":
        raise ConflictError("alert is already resolved")
    alert.status = "resolved"
    alert.resolved_at = func.now()
    alert.resolved_by = user_id
    await session.commit()
    await session.refresh(alert)
    return alert
