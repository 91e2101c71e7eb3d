"""Pagination and sorting shared by the list endpoints."""

from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

T = TypeVar("T")

# A page of 1,000: the dashboard lists a 10,000-vehicle fleet in 10 requests, not 50 (at 200 its
# vehicles had their names 8 s after sign-in).
MAX_LIMIT = 1000
LimitQuery = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size")]
OffsetQuery = Annotated[int, Query(ge=0, le=1_000_000, description="Rows to skip")]


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


def sort_pattern(fields: list[str]) -> str:
    """The regex a `sort` query parameter must match: a field, optionally `-` for descending."""
    return "^-?(" + "|".join(fields) + ")$"


def apply_sort(
    stmt: Select, sort: str, columns: dict[str, InstrumentedAttribute], tiebreak
) -> Select:
    descending = sort.startswith("-")
    column = columns[sort.lstrip("-")]
    return stmt.order_by(column.desc() if descending else column.asc(), tiebreak)


async def paginate(session: AsyncSession, stmt: Select, limit: int, offset: int):
    """Rows of one page and the total count of the unpaginated query."""
    total = await session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    rows = (await session.scalars(stmt.limit(limit).offset(offset))).all()
    return rows, total or 0


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
