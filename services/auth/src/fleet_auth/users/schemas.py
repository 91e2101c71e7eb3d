"""Bodies of the admin's user management."""

from pydantic import BaseModel

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
