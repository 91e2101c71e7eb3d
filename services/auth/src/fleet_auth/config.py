"""auth service settings, read from the environment with the `AUTH_` prefix."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from fleet_common.settings import CommonSettings


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="AUTH_")

    database_url: str = "postgresql+asyncpg://fleet@127.0.0.1:5432/auth_db"

    # Signing keys (PEM, Ed25519 or RSA >= 2048 bits). Outside production, with no key file,
    # a key is generated on first start into `keys_dir` and kept there (or kept in memory
    # for the life of the process when `keys_dir` is unset).
    signing_key_file: Path | None = None
    previous_signing_key_file: Path | None = None
    keys_dir: Path | None = None

    access_token_ttl_s: int = Field(900, ge=60, le=3600)
    refresh_token_ttl_s: int = Field(30 * 24 * 3600, ge=3600)
    allow_registration: bool = True

    # Brute-force protection: failed logins counted in Redis over a sliding window.
    login_max_failures_per_account: int = Field(5, ge=1)
    login_max_failures_per_address: int = Field(50, ge=1)
    login_failure_window_s: int = Field(900, ge=1)
    # Peers whose X-Forwarded-For is believed (the gateway); CIDRs or addresses.
    trusted_proxies: list[str] = ["127.0.0.1/32", "::1/128"]

    # Firebase sign-in: the project id, and in production the service-account key file.
    firebase_project_id: str | None = None
    firebase_credentials_file: Path | None = None
    # Read by firebase-admin itself; declared here so production can refuse it.
    firebase_auth_emulator_host: str | None = Field(
        None, validation_alias="FIREBASE_AUTH_EMULATOR_HOST"
    )
