"""Settings every service reads. Each service subclasses `CommonSettings` with its own env prefix.

Shared variables (Redis, JWKS, the internal service credential) are read unprefixed through
explicit aliases so one `.env` configures every service the same way.
"""

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["development", "test", "production"]


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    environment: Environment = Field("development", validation_alias="ENVIRONMENT")
    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")
    # json in production; console (readable lines) is what `make run` sets for development.
    log_format: Literal["json", "console"] = Field("json", validation_alias="LOG_FORMAT")
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias="REDIS_URL")
    # REDIS_URL names one node of a Redis Cluster (database 0, the only one a cluster has).
    redis_cluster: bool = Field(False, validation_alias="REDIS_CLUSTER")
    jwks_url: str = Field(
        "http://127.0.0.1:8001/.well-known/jwks.json", validation_alias="AUTH_JWKS_URL"
    )
    jwt_issuer: str = Field("fleet-tracker", validation_alias="JWT_ISSUER")
    internal_token: SecretStr = Field(
        SecretStr("dev-internal-token"), validation_alias="INTERNAL_SERVICE_TOKEN"
    )
    health_check_timeout_s: float = Field(2.0, validation_alias="HEALTH_CHECK_TIMEOUT_S")
    # The service's database URL points at PgBouncer in transaction pooling mode: no cached
    # prepared statements (fleet_common.db).
    database_pgbouncer: bool = Field(False, validation_alias="DATABASE_PGBOUNCER")
    # Created by Kubernetes' preStop hook: the instance drains before SIGTERM (fleet_common.drain).
    # Empty: never drains (a service run by hand or by compose).
    drain_file: str = Field("", validation_alias="DRAIN_FILE")

    @model_validator(mode="after")
    def _no_default_secrets_in_production(self) -> "CommonSettings":
        if self.environment == "production":
            token = self.internal_token.get_secret_value()
            if token in ("", "dev-internal-token") or len(token) < 32:
                raise ValueError(
                    "INTERNAL_SERVICE_TOKEN must be set to a random value of at least 32 "
                    "characters when ENVIRONMENT=production"
                )
        return self
