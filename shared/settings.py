"""Service settings, read from the environment with one prefix per service (e.g. ``INTAKE_``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, PostgresDsn, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.kafka.connection import KafkaConnection
from shared.retention import inbox_keep, service_of_prefix
from shared.secret_files import secrets_dir
from shared.secret_policy import weakness
from shared.tracing import TracingSettings
from shared.transport_policy import database_transport_problem, kafka_transport_problem


class ServiceSettings(TracingSettings, BaseSettings):  # + OTLP_ENDPOINT, TRACE_SAMPLE_RATIO
    """Settings every service has. Subclasses set ``env_prefix`` and add their own fields."""

    # hide_input_in_errors: a bad DATABASE_URL or key must not end up in a log with its secret.
    # secrets_dir: under compose every secret is a file, /run/secrets/<prefix>_<field> (e.g.
    # intake_database_url); an environment variable of the same name still wins.
    model_config = SettingsConfigDict(
        extra="ignore", frozen=True, hide_input_in_errors=True, secrets_dir=secrets_dir()
    )

    environment: Literal["development", "production"] = Field(
        default="development",
        description="production: refuse to start without Kafka authentication, without TLS "
        "to Kafka and PostgreSQL (sslmode=verify-full), or with a missing, placeholder or weak "
        "secret.",
    )
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:19092", description="Comma-separated host:port list of Kafka brokers."
    )
    kafka_username: str | None = Field(
        default=None, description="This service's own SASL/SCRAM-SHA-512 principal on Kafka."
    )
    kafka_password: SecretStr | None = Field(default=None, description="Its SCRAM password.")
    kafka_ca_file: str | None = Field(
        default=None,
        description="PEM file of the CA that signed the broker's certificate: TLS (SASL_SSL), "
        "the certificate and the broker's host name verified. Unset: plaintext (refused in "
        "production).",
    )
    database_url: PostgresDsn = Field(
        description="postgresql://role:password@host:port/database?sslmode=verify-full"
        "&sslrootcert=<CA file> of this service's own database."
    )
    http_host: str = Field(default="127.0.0.1", description="Interface of the HTTP endpoints.")
    http_port: int = Field(default=8000, ge=1, le=65535, description="Port of the HTTP endpoints.")
    log_level: str = Field(default="INFO", description="Python log level name.")
    db_pool_size: int = Field(default=8, ge=1, le=100, description="Max PostgreSQL connections.")
    outbox_poll_interval_s: float = Field(
        default=1.0, gt=0, description="Outbox relay polling fallback when no NOTIFY arrives."
    )
    outbox_batch_size: int = Field(default=500, ge=1, description="Rows the relay sends at once.")
    consumer_batch_size: int = Field(
        default=200,
        ge=1,
        le=5000,
        description="Most records applied in one database transaction and one offset commit.",
    )
    consumer_concurrency: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Consumers of the service's group in one process, each on its own "
        "partitions and database connection (keep DB_POOL_SIZE above it plus 3).",
    )
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
    metrics_enabled: bool = Field(
        default=True,
        description="Serve /metrics and measure its gauges. Off only where nothing scrapes, "
        "or to measure what the metrics cost (make bench does).",
    )
    metrics_interval_s: float = Field(
        default=15.0,
        gt=0,
        description="How often the gauges read from Kafka and the database (consumer lag, "
        "outbox backlog, queues) are measured for /metrics.",
    )
    # ----- pruning of the outbox and the inbox (decision 29) -----
    outbox_keep_sent_days: float = Field(
        default=7.0,
        ge=0,
        description="Sent outbox rows are kept this long (diagnosis), then pruned; unsent "
        "rows never are.",
    )
    inbox_keep_days: float | None = Field(
        default=None,
        gt=0,
        description="Inbox claims are kept this long; unset: as long as a redelivery can come "
        "(longest retention consumed + dead-letter topic's + 2 segment rolls). Never shorter.",
    )
    prune_interval_s: float = Field(
        default=3600.0, gt=0, description="How often sent outbox rows and old claims are pruned."
    )
    prune_batch_size: int = Field(
        default=1000, ge=1, le=50_000, description="Rows deleted per short transaction."
    )
    prune_pause_s: float = Field(
        default=0.2, ge=0, description="Pause between two pruning batches."
    )

    @model_validator(mode="after")
    def _inbox_keeps_claims_while_redeliveries_can_come(self) -> Self:
        service = service_of_prefix(str(self.model_config.get("env_prefix", "")))
        if service is not None:
            inbox_keep(service, self.inbox_keep_days)  # raises, naming the floor and why
        return self

    def secrets_to_check(self) -> dict[str, tuple[str | None, bool]]:
        """Name → (value, is a base64 key) of every secret this service holds. Services with
        secrets of their own extend it."""
        kafka_password = self.kafka_password.get_secret_value() if self.kafka_password else None
        return {
            "kafka_password": (kafka_password, False),
            "database_url password": (urlsplit(str(self.database_url)).password, False),
        }

    @model_validator(mode="after")
    def _production_needs_real_secrets(self) -> Self:
        if self.environment != "production":
            return self
        problems = [
            f"{name} {why}"
            for name, (value, is_key) in self.secrets_to_check().items()
            if (why := weakness(value, is_key=is_key))
        ]
        if not self.kafka_username:
            problems.append("kafka_username is missing (Kafka must be authenticated)")
        problems += [
            problem
            for problem in (
                kafka_transport_problem(self.kafka_ca_file),
                database_transport_problem(str(self.database_url)),
            )
            if problem
        ]
        if problems:
            # Names only: hide_input_in_errors keeps the values out of the error too.
            raise ValueError("production mode refuses to start: " + "; ".join(problems))
        return self

    @property
    def kafka(self) -> KafkaConnection:
        password = self.kafka_password.get_secret_value() if self.kafka_password else None
        return KafkaConnection(
            self.kafka_bootstrap_servers, self.kafka_username, password, self.kafka_ca_file
        )

    @property
    def database_dsn(self) -> str:
        return str(self.database_url)


SERVICE_NAMES = ("intake", "referral", "notification", "evidence", "gateway")
OPERATOR_SECRETS = ("REFEX_KAFKA_PASSWORD",)


def service_environment(service: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment to start ``service`` with: without the other services' settings (their
    database and Kafka passwords, keys) and without the operator's Kafka credentials, so a
    compromised service process holds its own secrets and no one else's."""
    others = tuple(f"{s.upper()}_" for s in SERVICE_NAMES if s != service)
    return {
        key: value
        for key, value in environ.items()
        if not key.startswith(others) and key not in OPERATOR_SECRETS
    }
