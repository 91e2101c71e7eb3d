"""Request and response bodies of sign-up, sign-in and token refresh."""

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from fleet_auth.schemas import Email, Name, OrgOut, Password, UserOut

OpaqueToken = Annotated[str, Field(min_length=1, max_length=512)]


class RegisterIn(BaseModel):
    org_name: Name
    email: Email
    password: Password
    full_name: Name


class LoginIn(BaseModel):
    email: Email
    password: Password


class RefreshIn(BaseModel):
    refresh_token: OpaqueToken


class LogoutIn(BaseModel):
    # Without a refresh token every session of the caller is ended.
    refresh_token: OpaqueToken | None = None


class FirebaseIn(BaseModel):
    id_token: Annotated[str, Field(min_length=1, max_length=8192)]


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - a token type, not a secret
    expires_in: int
    user: UserOut
    org: OrgOut


class MeOut(BaseModel):
    user: UserOut
    org: OrgOut
