"""Firebase ID-token verification with firebase-admin.

With FIREBASE_AUTH_EMULATOR_HOST set (development and tests) firebase-admin accepts the
emulator's unsigned tokens without any network call; production refuses that variable and
verifies Google-signed tokens with the service-account key from configuration.
"""

from typing import Any

import firebase_admin
from fastapi.concurrency import run_in_threadpool
from firebase_admin import auth as firebase_auth
from firebase_admin import credentials

from fleet_auth.config import Settings
from fleet_common.errors import ForbiddenError, ServiceUnavailableError, UnauthorizedError


class FirebaseVerifier:
    def __init__(self, app: firebase_admin.App) -> None:
        self._app = app

    @classmethod
    def from_settings(cls, settings: Settings) -> "FirebaseVerifier | None":
        """None when Firebase sign-in is not configured."""
        if settings.firebase_project_id is None and settings.firebase_credentials_file is None:
            return None
        credential = (
            credentials.Certificate(str(settings.firebase_credentials_file))
            if settings.firebase_credentials_file is not None
            else credentials.ApplicationDefault()
        )
        options = {"httpTimeout": 10}
        if settings.firebase_project_id:
            options["projectId"] = settings.firebase_project_id
        # A private, uniquely named app: several service apps may live in one process (tests).
        app = firebase_admin.initialize_app(credential, options, name=f"fleet-auth-{id(settings)}")
        return cls(app)

    def close(self) -> None:
        firebase_admin.delete_app(self._app)

    async def verified_email(self, id_token: str) -> str:
        """The token's verified email address, lower-cased; 401 for a bad token."""
        try:
            claims: dict[str, Any] = await run_in_threadpool(
                firebase_auth.verify_id_token, id_token, self._app, False, 5
            )
        except (ValueError, firebase_auth.InvalidIdTokenError) as exc:
            raise UnauthorizedError("invalid Firebase ID token") from exc
        except firebase_auth.CertificateFetchError as exc:
            raise ServiceUnavailableError("cannot fetch Firebase's signing certificates") from exc
        email = claims.get("email")
        if not isinstance(email, str) or not email:
            raise ForbiddenError("the Firebase account has no email address")
        if claims.get("email_verified") is not True:
            raise ForbiddenError("the Firebase account's email address is not verified")
        return email.lower()
