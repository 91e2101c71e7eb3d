"""location service settings, read from the environment with the `LOCATION_` prefix."""

from pydantic_settings import SettingsConfigDict

from fleet_common.settings import CommonSettings


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="LOCATION_")

    database_url: str = "postgresql+asyncpg://fleet@127.0.0.1:5432/location_db"
