"""Gateway settings, read from the environment with the `GATEWAY_` prefix."""

from pydantic_settings import SettingsConfigDict

from fleet_common.settings import CommonSettings


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_")

    auth_url: str = "http://127.0.0.1:8001"
    vehicle_url: str = "http://127.0.0.1:8002"
    location_url: str = "http://127.0.0.1:8003"
    notification_url: str = "http://127.0.0.1:8004"
