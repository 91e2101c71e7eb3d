"""vehicle service settings, read from the environment with the `VEHICLE_` prefix."""

from pydantic import Field, SecretStr, model_validator
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
    # The dynsec group that marks the clients this service manages (see broker/credentials.py).
    device_group: str = Field("fleet-devices", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    broker_command_timeout_s: float = 5.0
    # How long start-up waits for the broker before reconciling; past it the service starts
    # anyway (readiness then reports the broker down) and reconciles once it connects.
    broker_startup_wait_s: float = 5.0
    # Downlink commands: how often expired ones are marked, and what "stopped" means for an
    # engine_stop without `force` (the newest position under this speed, this recent).
    command_expiry_sweep_interval_s: float = Field(5.0, gt=0)
    # The group device answers are split in: the MQTT shared subscription and the consumer
    # group of the trackers' results stream. Every replica of one deployment uses the same
    # group (each answer handled once); deployments sharing a broker or Redis use their own.
    command_share_group: str = Field("vehicle", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    engine_stop_max_speed_kph: float = Field(3.0, ge=0)
    engine_stop_max_position_age_s: float = Field(300.0, gt=0)

    @model_validator(mode="after")
    def _broker_admin_password_in_production(self) -> "Settings":
        if self.environment == "production" and not self.mqtt_admin_password.get_secret_value():
            raise ValueError("VEHICLE_MQTT_ADMIN_PASSWORD must be set when ENVIRONMENT=production")
        return self
