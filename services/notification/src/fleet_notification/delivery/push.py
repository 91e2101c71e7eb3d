"""Firebase Cloud Messaging through firebase-admin, to the push tokens of the rule's users.

Tokens FCM reports as unregistered (the app was uninstalled, the token rotated) are deleted.
A retried delivery skips the tokens an earlier attempt already reached.
"""

import asyncio
import warnings
from typing import Any
from uuid import UUID

import firebase_admin
from firebase_admin import credentials, exceptions, messaging
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fleet_common.logging import get_logger
from fleet_notification.config import Settings
from fleet_notification.delivery.channels import DeliveryError
from fleet_notification.delivery.email import summary
from fleet_notification.models import Delivery, PushToken

log = get_logger(__name__)
GONE_ERRORS = (messaging.UnregisteredError, messaging.SenderIdMismatchError)


class PushChannel:
    def __init__(self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self._app: firebase_admin.App | None = None

    def _firebase(self) -> firebase_admin.App:
        if self._app is not None:
            return self._app
        s = self.settings
        if s.firebase_credentials_file:
            credential = credentials.Certificate(s.firebase_credentials_file)
        elif s.firebase_project_id:
            credential = credentials.ApplicationDefault()
        else:
            raise DeliveryError(
                "push is not configured (NOTIFICATION_FIREBASE_CREDENTIALS_FILE or "
                "NOTIFICATION_FIREBASE_PROJECT_ID)",
                permanent=True,
            )
        options = {"projectId": s.firebase_project_id} if s.firebase_project_id else {}
        app = firebase_admin.initialize_app(credential, options, name=f"fleet-push-{id(self)}")
        if s.fcm_endpoint:
            # firebase-admin has no emulator or endpoint option for FCM: the send URL is built
            # once per app from the FCM_URL class constant. Replace it on this app's service.
            service = messaging._get_messaging_service(app)
            service._fcm_url = (
                f"{s.fcm_endpoint.rstrip('/')}/v1/projects/{app.project_id}/messages:send"
            )
        self._app = app
        return app

    async def close(self) -> None:
        if self._app is not None:
            # delete_app closes firebase-admin's async client with asyncio.run(): not on our loop.
            await asyncio.to_thread(firebase_admin.delete_app, self._app)
            self._app = None

    async def send(self, delivery: Delivery, alert: dict[str, Any]) -> dict[str, Any]:
        app = self._firebase()
        user_ids = [UUID(u) for u in delivery.target.get("user_ids") or []]
        query = select(PushToken.id, PushToken.token).where(PushToken.org_id == delivery.org_id)
        if user_ids:
            query = query.where(PushToken.user_id.in_(user_ids))
        async with self.sessionmaker() as session:
            tokens = (await session.execute(query)).all()
        reached = set(delivery.outcome.get("sent_token_ids", []))
        title, facts = summary(alert)
        body = ", ".join(f"{k}: {v}" for k, v in facts[:3])
        data = {"alert_id": alert["id"], "type": alert["type"], "severity": alert["severity"]}
        gone: list[UUID] = []
        errors: list[str] = []
        for token_id, token in tokens:
            if str(token_id) in reached:
                continue
            with warnings.catch_warnings():
                # firebase-admin 7 deprecates `token` in favour of installation ids (`fid`),
                # but the mobile and web SDKs still hand apps registration tokens.
                warnings.simplefilter("ignore", DeprecationWarning)
                message = messaging.Message(
                    token=token,
                    notification=messaging.Notification(title=title, body=body),
                    data=data,
                    android=messaging.AndroidConfig(priority="high"),
                )
            try:
                await asyncio.to_thread(messaging.send, message, False, app)
                reached.add(str(token_id))
            except GONE_ERRORS:
                gone.append(token_id)
            except (exceptions.FirebaseError, ValueError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
        if gone:
            async with self.sessionmaker() as session:
                await session.execute(delete(PushToken).where(PushToken.id.in_(gone)))
                await session.commit()
            log.info("removed unregistered push tokens", count=len(gone))
        outcome = {"sent_token_ids": sorted(reached), "removed_tokens": len(gone)}
        if errors:
            raise DeliveryError("; ".join(errors[:3]), outcome=outcome)
        if not reached:
            raise DeliveryError(
                "no registered push token to send to", permanent=True, outcome=outcome
            )
        return outcome
