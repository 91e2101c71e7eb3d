"""auth service settings, read from the environment with the `AUTH_` prefix."""

from pydantic_settings import SettingsConfigDict

from fleet_common.settings import CommonSettings


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="AUTH_")

    database_url: str = "postgresql+asyncpg://fleet@127.0.0.1:5432/auth_db"
