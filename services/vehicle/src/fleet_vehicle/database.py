"""Declarative base of the vehicle service's tables (its own database, its own metadata)."""

from sqlalchemy.orm import DeclarativeBase

from fleet_common.db import service_metadata


class Base(DeclarativeBase):
    metadata = service_metadata()
