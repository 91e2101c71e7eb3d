"""What every delivery channel implements, and how it reports failure."""

from typing import Any, Protocol

from fleet_notification.models import Delivery


class DeliveryError(Exception):
    """A failed attempt. `permanent` ones are not retried; `outcome` is kept either way."""

    def __init__(
        self, message: str, *, permanent: bool = False, outcome: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.outcome = outcome


class Channel(Protocol):
    async def send(self, delivery: Delivery, alert: dict[str, Any]) -> dict[str, Any]:
        """Deliver `alert` to `delivery.target`; return what to record as the outcome."""
        ...
