"""Bodies of the admin's user management and of the org's directory."""

import uuid

from pydantic import BaseModel, ConfigDict

from fleet_auth.schemas import Email, Name, Password, RoleName, UserOut


class UserCreate(BaseModel):
    email: Email
    password: Password
    full_name: Name
    role: RoleName = "viewer"


class UserUpdate(BaseModel):
    full_name: Name | None = None
    role: RoleName | None = None
    is_active: bool | None = None
    password: Password | None = None


class UserPage(BaseModel):
    items: list[UserOut]
    total: int
    limit: int
    offset: int


class DirectoryEntry(BaseModel):
    """What a dispatcher may see of a colleague: enough to pick them, no role or history."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    full_name: str
    email: str


class DirectoryPage(BaseModel):
    items: list[DirectoryEntry]
    total: int
    limit: int
    offset: int
