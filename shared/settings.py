"""Service settings, read from the environment with one prefix per service (e.g. ``INTAKE_``)."""

from __future__ import annotations

from pydantic import Field, PostgresDsn
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Settings every service has. Subclasses set ``env_prefix`` and add their own fields."""

    # hide_input_in_errors: a bad DATABASE_URL or key must not end up in a log with its secret.
    model_config = SettingsConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:19092", description="Comma-separated host:port list of Kafka brokers."
    )
    database_url: PostgresDsn = Field(
        description="postgresql://role:password@host:port/database of this service's own database."
    )
    http_host: str = Field(default="127.0.0.1", description="Interface of the HTTP endpoints.")
    http_port: int = Field(default=8000, ge=1, le=65535, description="Port of the HTTP endpoints.")
    log_level: str = Field(default="INFO", description="Python log level name.")
    db_pool_size: int = Field(default=5, ge=1, le=100, description="Max PostgreSQL connections.")
    outbox_poll_interval_s: float = Field(
        default=1.0, gt=0, description="Outbox relay polling fallback when no NOTIFY arrives."
    )
    outbox_batch_size: int = Field(default=500, ge=1, description="Rows the relay sends at once.")
    handler_max_attempts: int = Field(
        default=5, ge=1, description="Tries for a transient handler error before dead-lettering."
    )
    handler_retry_base_s: float = Field(
        default=0.2, ge=0, description="First retry delay; doubles on every further try."
    )
    topic_discovery_interval_s: float = Field(
        default=5.0, gt=0, description="How soon a new agency's topics are consumed."
    )
    max_message_bytes: int = Field(
        default=1_048_576, ge=1024, description="Inbound messages larger than this are refused."
    )

    @property
    def database_dsn(self) -> str:
        return str(self.database_url)
