"""notification service settings, read from the environment with the `NOTIFICATION_` prefix."""

from pydantic_settings import SettingsConfigDict

from fleet_common.settings import CommonSettings


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATION_")

    database_url: str = "postgresql+asyncpg://fleet@127.0.0.1:5432/notification_db"
