"""vehicle service settings, read from the environment with the `VEHICLE_` prefix."""

from pydantic_settings import SettingsConfigDict

from fleet_common.settings import CommonSettings


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="VEHICLE_")

    database_url: str = "postgresql+asyncpg://fleet@127.0.0.1:5432/vehicle_db"
