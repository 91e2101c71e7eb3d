"""Request dependencies of the auth service, built from what the lifespan put on app.state."""

from typing import Annotated

from fastapi import Depends, Request

from fleet_auth.config import Settings
from fleet_auth.firebase import FirebaseVerifier
from fleet_auth.keys import KeyRing
from fleet_auth.login_limits import LoginLimiter
from fleet_auth.revocation import Revoker


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _key_ring(request: Request) -> KeyRing:
    return request.app.state.key_ring


def _login_limiter(request: Request) -> LoginLimiter:
    return request.app.state.login_limiter


def _revoker(request: Request) -> Revoker:
    return request.app.state.revoker


def _firebase(request: Request) -> FirebaseVerifier | None:
    return request.app.state.firebase


SettingsDep = Annotated[Settings, Depends(_settings)]
KeyRingDep = Annotated[KeyRing, Depends(_key_ring)]
LoginLimiterDep = Annotated[LoginLimiter, Depends(_login_limiter)]
RevokerDep = Annotated[Revoker, Depends(_revoker)]
FirebaseDep = Annotated[FirebaseVerifier | None, Depends(_firebase)]
