"""The notification service's tables: alert rules, alerts, deliveries, push tokens, cooldowns."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from fleet_notification.database import Base


class AlertRule(Base):
    __tablename__ = "alert_rules"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    org_id: Mapped[uuid.UUID] = mapped_column(index=True)
    name: Mapped[str] = mapped_column(String(200))
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(32)))
    vehicle_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(Uuid), default=list)
    geofence_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(Uuid), default=list)
    # Vehicle groups (the vehicle service's `group`); with vehicle_ids, a vehicle in either.
    vehicle_groups: Mapped[list[str]] = mapped_column(
        ARRAY(String(60)), default=list, server_default="{}"
    )
    channels: Mapped[list[str]] = mapped_column(ARRAY(String(16)))
    emails: Mapped[list[str]] = mapped_column(ARRAY(String(254)), default=list)
    webhook_url: Mapped[str | None] = mapped_column(String(2000))
    webhook_secret: Mapped[str | None] = mapped_column(String(256))
    push_user_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(Uuid), default=list)
    cooldown_s: Mapped[int] = mapped_column(Integer, default=0)
    active_hours: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    severity: Mapped[str | None] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        # One alert per event and rule, however often the stream delivers the event.
        UniqueConstraint("event_id", "rule_id"),
        Index("ix_alerts_org_id_occurred_at", "org_id", "occurred_at"),
        Index(
            "ix_alerts_org_id_vehicle_group_occurred_at",
            "org_id",
            "vehicle_group",
            "occurred_at",
            postgresql_where=text("vehicle_group IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    org_id: Mapped[uuid.UUID] = mapped_column()
    rule_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("alert_rules.id", ondelete="SET NULL")
    )
    rule_name: Mapped[str] = mapped_column(String(200))
    event_id: Mapped[uuid.UUID] = mapped_column()
    type: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="open")
    vehicle_id: Mapped[uuid.UUID | None] = mapped_column()
    # The vehicle's group when the event happened, as the event carried it.
    vehicle_group: Mapped[str | None] = mapped_column(String(60))
    device_id: Mapped[uuid.UUID | None] = mapped_column()
    position: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    acknowledged_by: Mapped[uuid.UUID | None] = mapped_column()
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_by: Mapped[uuid.UUID | None] = mapped_column()


class Delivery(Base):
    """One alert over one channel: a persistent work item the delivery worker claims."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("alert_id", "channel"),
        Index("ix_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    alert_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"))
    org_id: Mapped[uuid.UUID] = mapped_column()
    channel: Mapped[str] = mapped_column(String(16))
    # The recipients as the rule named them when the alert was raised.
    target: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    last_error: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class PushToken(Base):
    __tablename__ = "push_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    org_id: Mapped[uuid.UUID] = mapped_column(index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(index=True)
    token: Mapped[str] = mapped_column(String(4096), unique=True)
    platform: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RuleCooldown(Base):
    """When a rule last alerted for a subject (vehicle or device, event type, geofence);
    the cooldown's atomic gate."""

    __tablename__ = "rule_cooldowns"

    rule_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("alert_rules.id", ondelete="CASCADE"), primary_key=True
    )
    subject: Mapped[str] = mapped_column(String(160), primary_key=True)
    last_alert_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class EventDeadLetter(Base):
    """A `fleet:events` entry given up on: it kept failing (or could not be read at all).

    Bounded: the oldest rows go past NOTIFICATION_DEAD_LETTER_MAX_ROWS. `org_id` is the
    event's org when the entry could be read as an event, else null (operators only).
    """

    __tablename__ = "event_dead_letters"
    __table_args__ = (
        Index("ix_event_dead_letters_org_id_created_at", "org_id", "created_at"),
        Index("ix_event_dead_letters_created_at", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    entry_id: Mapped[str] = mapped_column(String(64))
    org_id: Mapped[uuid.UUID | None] = mapped_column()
    event_id: Mapped[uuid.UUID | None] = mapped_column()
    event_type: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(16))  # "failing" or "malformed"
    attempts: Mapped[int] = mapped_column(Integer)
    # The entry's fields as the stream held them (text: the thing may not be valid JSON).
    raw: Mapped[str] = mapped_column(Text)
    last_error: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
