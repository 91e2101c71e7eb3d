"""Alert rule input and output. The webhook secret is write-only."""

import re
from datetime import datetime
from typing import Annotated
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from fleet_notification.events import Channel, EventType, Severity

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Group = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)]
ClockTime = Annotated[str, StringConstraints(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
MAX_COOLDOWN_S = 7 * 86_400
_TZ_NAME = re.compile(r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$")


class ActiveHours(BaseModel):
    """Alert only between `start` and `end` (local "HH:MM"; may wrap midnight) on `days`."""

    model_config = ConfigDict(extra="forbid")

    start: ClockTime
    end: ClockTime
    days: Annotated[list[Annotated[int, Field(ge=0, le=6)]], Field(max_length=7)] = [
        0,
        1,
        2,
        3,
        4,
        5,
        6,
    ]  # 0 = Monday

    @model_validator(mode="after")
    def _not_empty(self) -> "ActiveHours":
        if self.start == self.end:
            raise ValueError("active_hours start and end must differ")
        if not self.days:
            raise ValueError("active_hours needs at least one day")
        self.days = sorted(set(self.days))
        return self


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
    secret: Annotated[str, StringConstraints(min_length=16, max_length=256)]


class RecipientsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    emails: Annotated[list[Annotated[EmailStr, Field(max_length=254)]], Field(max_length=50)] = []
    webhook: WebhookIn | None = None
    # Users whose registered push tokens receive the alert; empty means every user of the org.
    user_ids: Annotated[list[UUID], Field(max_length=500)] = []


def _valid_timezone(name: str) -> str:
    if len(name) > 64 or not _TZ_NAME.match(name):
        raise ValueError("timezone must be an IANA name such as Europe/Berlin")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {name}") from exc
    return name


class _RuleFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("timezone", check_fields=False)
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return None if value is None else _valid_timezone(value)

    @field_validator("event_types", "channels", check_fields=False)
    @classmethod
    def _dedupe(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else list(dict.fromkeys(value))


class AlertRuleCreate(_RuleFields):
    name: Name
    event_types: Annotated[list[EventType], Field(min_length=1, max_length=7)]
    vehicle_ids: Annotated[list[UUID], Field(max_length=1000)] = []
    geofence_ids: Annotated[list[UUID], Field(max_length=1000)] = []
    # Vehicle groups as named on vehicles; a vehicle listed or in one of these matches.
    vehicle_groups: Annotated[list[Group], Field(max_length=100)] = []
    channels: Annotated[list[Channel], Field(min_length=1, max_length=4)]
    recipients: RecipientsIn = RecipientsIn()
    cooldown_s: Annotated[int, Field(ge=0, le=MAX_COOLDOWN_S)] = 300
    active_hours: ActiveHours | None = None
    timezone: str = "UTC"
    severity: Severity | None = None
    active: bool = True


class AlertRuleUpdate(_RuleFields):
    name: Name | None = None
    event_types: Annotated[list[EventType], Field(min_length=1, max_length=7)] | None = None
    vehicle_ids: Annotated[list[UUID], Field(max_length=1000)] | None = None
    geofence_ids: Annotated[list[UUID], Field(max_length=1000)] | None = None
    vehicle_groups: Annotated[list[Group], Field(max_length=100)] | None = None
    channels: Annotated[list[Channel], Field(min_length=1, max_length=4)] | None = None
    recipients: RecipientsIn | None = None
    cooldown_s: Annotated[int, Field(ge=0, le=MAX_COOLDOWN_S)] | None = None
    active_hours: ActiveHours | None = None
    timezone: str | None = None
    severity: Severity | None = None
    active: bool | None = None


class WebhookOut(BaseModel):
    url: str
    secret_set: bool


class RecipientsOut(BaseModel):
    emails: list[str]
    webhook: WebhookOut | None
    user_ids: list[UUID]


class AlertRuleOut(BaseModel):
    id: UUID
    name: str
    event_types: list[str]
    vehicle_ids: list[UUID]
    geofence_ids: list[UUID]
    vehicle_groups: list[str]
    channels: list[str]
    recipients: RecipientsOut
    cooldown_s: int
    active_hours: ActiveHours | None
    timezone: str
    severity: str | None
    active: bool
    created_at: datetime
    updated_at: datetime


class AlertRuleList(BaseModel):
    items: list[AlertRuleOut]
    total: int
    limit: int
    offset: int
