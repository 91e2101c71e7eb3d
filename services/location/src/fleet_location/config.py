"""location service settings, read from the environment with the `LOCATION_` prefix."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from fleet_common.settings import CommonSettings


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="LOCATION_")

    database_url: str = "postgresql+asyncpg://fleet@127.0.0.1:5432/location_db"

    # Event detection (fleet_location.events).
    events_stream_maxlen: int = Field(100_000, ge=1_000)
    overspeed_hysteresis_kph: float = Field(5.0, ge=0)
    idle_after_s: float = Field(300.0, gt=0)
    idle_speed_kph: float = Field(3.0, ge=0)
    idle_radius_m: float = Field(50.0, gt=0)
    offline_after_s: float = Field(600.0, gt=0)
    offline_sweep_interval_s: float = Field(30.0, gt=0)
    low_battery_pct: float = Field(20.0, ge=0, le=100)
    low_battery_hysteresis_pct: float = Field(5.0, ge=0)
    detection_state_ttl_s: int = Field(30 * 86_400, ge=3_600)
    geofence_index_max_age_s: float = Field(300.0, gt=0)
