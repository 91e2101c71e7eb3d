"""vehicle service settings, read from the environment with the `VEHICLE_` prefix."""

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from fleet_common.settings import CommonSettings


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="VEHICLE_")

    database_url: str = "postgresql+asyncpg://fleet@127.0.0.1:5432/vehicle_db"

    # The broker devices connect to: handed to devices with their credentials, and the
    # broker whose dynamic-security plugin we administer.
    mqtt_host: str = Field("127.0.0.1", validation_alias="MQTT_HOST")
    mqtt_port: int = Field(1883, validation_alias="MQTT_PORT")
    # What devices are told to connect to, when it differs from where we reach the broker
    # (a public hostname in front of the cluster-internal one).
    mqtt_public_host: str | None = None
    mqtt_public_port: int | None = None
    mqtt_admin_username: str = "fleet-admin"
    mqtt_admin_password: SecretStr = SecretStr("")
    broker_command_timeout_s: float = 5.0
    # How long start-up waits for the broker before reconciling; past it the service starts
    # anyway (readiness then reports the broker down) and reconciles once it connects.
    broker_startup_wait_s: float = 5.0
