"""Storing and listing dead-lettered `fleet:events` entries."""

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from fleet_notification.models import EventDeadLetter

MAX_RAW_CHARS = 64_000
MAX_ERROR_CHARS = 2_000


class DeadLetterOut(BaseModel):
    id: UUID
    entry_id: str
    org_id: UUID | None
    event_id: UUID | None
    event_type: str | None
    reason: str
    attempts: int
    raw: str
    last_error: str
    created_at: datetime


class DeadLetterList(BaseModel):
    items: list[DeadLetterOut]
    total: int
    limit: int
    offset: int


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    # PostgreSQL text cannot hold NUL.
    return str(value).replace("\x00", "\\u0000")


def raw_entry(fields: dict | None) -> str:
    """The entry's fields as JSON text, whatever their bytes, cut to MAX_RAW_CHARS."""
    document = {_text(k): _text(v) for k, v in (fields or {}).items()}
    return json.dumps(document, ensure_ascii=False)[:MAX_RAW_CHARS]


async def store(
    session: AsyncSession,
    *,
    entry_id: str,
    fields: dict | None,
    org_id: UUID | None,
    event_id: UUID | None,
    event_type: str | None,
    reason: str,
    attempts: int,
    error: str,
    max_rows: int,
) -> None:
    """Add the entry, drop the oldest beyond `max_rows`; the caller commits."""
    session.add(
        EventDeadLetter(
            entry_id=entry_id,
            org_id=org_id,
            event_id=event_id,
            event_type=event_type,
            reason=reason,
            attempts=attempts,
            raw=raw_entry(fields),
            last_error=_text(error)[:MAX_ERROR_CHARS],
        )
    )
    await session.flush()
    oldest_kept = (
        select(EventDeadLetter.created_at)
        .order_by(EventDeadLetter.created_at.desc())
        .offset(max_rows - 1)
        .limit(1)
        .scalar_subquery()
    )
    await session.execute(delete(EventDeadLetter).where(EventDeadLetter.created_at < oldest_kept))


async def list_dead_letters(
    session: AsyncSession,
    *,
    org_id: UUID | None,
    unowned_only: bool = False,
    limit: int,
    offset: int,
) -> tuple[list[EventDeadLetter], int]:
    """One org's entries; or with org_id None every entry (operators), or only those of no
    known org."""
    query = select(EventDeadLetter)
    if org_id is not None:
        query = query.where(EventDeadLetter.org_id == org_id)
    elif unowned_only:
        query = query.where(EventDeadLetter.org_id.is_(None))
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(
        query.order_by(EventDeadLetter.created_at.desc(), EventDeadLetter.id)
        .limit(limit)
        .offset(offset)
    )
    return list(rows), total or 0


def to_out(row: EventDeadLetter) -> DeadLetterOut:
    return DeadLetterOut.model_validate(row, from_attributes=True)
