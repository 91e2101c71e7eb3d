"""`/api/v1/auth/*`: register, login, refresh, logout, Firebase sign-in, me."""

from fastapi import APIRouter, Request, Response, status

from fleet_auth.dependencies import (
    FirebaseDep,
    KeyRingDep,
    LoginLimiterDep,
    RevokerDep,
    SettingsDep,
)
from fleet_auth.models import Organization
from fleet_auth.schemas import OrgOut, UserOut
from fleet_auth.sessions import service
from fleet_auth.sessions.schemas import (
    FirebaseIn,
    LoginIn,
    LogoutIn,
    MeOut,
    RefreshIn,
    RegisterIn,
    TokenOut,
)
from fleet_common.auth import CurrentUser
from fleet_common.client_address import client_address
from fleet_common.db import SessionDep
from fleet_common.errors import ForbiddenError, UnauthorizedError

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/register", status_code=status.HTTP_201_CREATED)
async def register(
    body: RegisterIn, session: SessionDep, keys: KeyRingDep, settings: SettingsDep
) -> TokenOut:
    """Create an organization and its first admin, signed in."""
    return await service.register(
        session,
        org_name=body.org_name,
        email=body.email,
        password=body.password,
        full_name=body.full_name,
        keys=keys,
        settings=settings,
    )


@router.post("/login")
async def login(
    body: LoginIn,
    request: Request,
    session: SessionDep,
    keys: KeyRingDep,
    settings: SettingsDep,
    limiter: LoginLimiterDep,
) -> TokenOut:
    email = body.email.lower()
    address = client_address(request, settings.trusted_proxies)
    await limiter.check(email, address)
    user = await service.authenticate(session, email, body.password)
    if user is None:
        await limiter.record_failure(email, address)
        raise UnauthorizedError("incorrect email or password", headers={})
    await limiter.record_success(email)
    if not user.is_active:
        raise ForbiddenError("this account is disabled")
    return await service.sign_in(session, user, keys, settings)


@router.post("/refresh")
async def refresh(
    body: RefreshIn, session: SessionDep, keys: KeyRingDep, settings: SettingsDep
) -> TokenOut:
    """Exchange a refresh token for new tokens; the presented one is spent."""
    return await service.refresh(session, body.refresh_token, keys, settings)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(
    principal: CurrentUser, session: SessionDep, revoker: RevokerDep, body: LogoutIn | None = None
) -> Response:
    """End the session of `refresh_token` and the access token of this call, or every
    session and access token of the caller without one. Revoked access tokens are refused
    everywhere within about a second, and their live WebSockets closed."""
    await service.logout(session, revoker, principal, body.refresh_token if body else None)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/firebase")
async def firebase_sign_in(
    body: FirebaseIn,
    session: SessionDep,
    keys: KeyRingDep,
    settings: SettingsDep,
    firebase: FirebaseDep,
) -> TokenOut:
    """Sign in the active user whose email a verified Firebase ID token carries."""
    if firebase is None:
        raise ForbiddenError("Firebase sign-in is not enabled on this deployment")
    email = await firebase.verified_email(body.id_token)
    user = await service.user_by_email(session, email)
    if user is None or not user.is_active:
        raise ForbiddenError("no active account has this email address")
    return await service.sign_in(session, user, keys, settings)


@router.get("/me")
async def me(principal: CurrentUser, session: SessionDep) -> MeOut:
    user = await service.active_user(session, principal.user_id, principal.org_id)
    org = await session.get(Organization, user.org_id)
    return MeOut(user=UserOut.model_validate(user), org=OrgOut.model_validate(org))
