"""Pydantic shapes shared by the sessions and users routers."""

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

RoleName = Literal["admin", "dispatcher", "viewer"]
# Lengths are bounded before any hashing: hostile input is refused cheaply with a 422.
Email = Annotated[EmailStr, Field(max_length=254)]
Password = Annotated[str, Field(min_length=1, max_length=1024)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class OrgOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    created_at: datetime


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    org_id: uuid.UUID
    email: str
    full_name: str
    role: RoleName
    is_active: bool
    last_login_at: datetime | None
    created_at: datetime
