"""The gateway's settings (``GATEWAY_*``). No database and no Kafka credential: every Kafka
client it makes logs in as the person or system whose request it serves."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.kafka.connection import KafkaConnection
from shared.secret_files import secrets_dir
from shared.secret_policy import weakness
from shared.tracing import TracingSettings
from shared.transport_policy import kafka_transport_problem
from shared.web.throttle import ThrottlePolicy


class GatewaySettings(TracingSettings, BaseSettings):  # + OTLP_ENDPOINT, TRACE_SAMPLE_RATIO
    # secrets_dir: under compose the session key is the file /run/secrets/gateway_session_key.
    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
        secrets_dir=secrets_dir(),
    )

    environment: Literal["development", "production"] = Field(
        default="development",
        description="production: Secure cookies, and refuse to start with a weak session key "
        "or without TLS to Kafka.",
    )
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:19092", description="Comma-separated host:port list of Kafka brokers."
    )
    kafka_ca_file: str | None = Field(
        default=None,
        description="PEM file of the CA that signed the broker's certificate: TLS (SASL_SSL), "
        "the certificate and the broker's host name verified. Unset: plaintext (refused in "
        "production). The agencies' passwords cross this connection.",
    )
    http_host: str = Field(default="127.0.0.1", description="Interface of the HTTP endpoints.")
    http_port: int = Field(default=8005, ge=1, le=65535, description="Port of the gateway.")
    log_level: str = Field(default="INFO", description="Python log level name.")
    metrics_host: str = Field(
        default="127.0.0.1", description="Interface of the Prometheus /metrics port."
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port of /metrics, apart from the agencies' port; unset: no metrics served.",
    )
    session_key: SecretStr = Field(
        description="Signs the console's session cookies (32 random bytes, base64). "
        "Changing it logs everyone out."
    )
    session_idle_s: float = Field(
        default=30 * 60, gt=0, description="A console session not used for this long ends."
    )
    session_max_s: float = Field(
        default=10 * 3600, gt=0, description="A console session ends this long after its login."
    )
    login_free_failures: int = Field(
        default=5, ge=1, description="Failed logins of one user name before it is throttled."
    )
    login_lockout_s: float = Field(
        default=30, gt=0, description="The first wait after those; doubles with each failure."
    )
    login_lockout_max_s: float = Field(
        default=900, gt=0, description="The longest wait between two login attempts."
    )
    inbox_page_max: int = Field(
        default=500, ge=1, le=5000, description="Most inbox messages one GET /v1/inbox returns."
    )
    intake_keys_max_age_s: float = Field(
        default=300,
        gt=0,
        description="Intake's submission keys (intake.keys.v1) are read again by the first "
        "request that needs them after this long (and after a rejection saying they changed).",
    )

    @property
    def secure_cookies(self) -> bool:
        # Outside development the gateway is reached over HTTPS (TLS ends at a proxy in front).
        return self.environment == "production"

    @property
    def kafka(self) -> KafkaConnection:
        """The broker and how to reach it, without a principal: each request adds its own."""
        return KafkaConnection(self.kafka_bootstrap_servers, ca_file=self.kafka_ca_file)

    @property
    def throttle(self) -> ThrottlePolicy:
        return ThrottlePolicy(
            free_failures=self.login_free_failures,
            first_wait_s=self.login_lockout_s,
            longest_wait_s=self.login_lockout_max_s,
        )

    @model_validator(mode="after")
    def _production_needs_a_real_key(self) -> Self:
        if self.environment == "production":
            problems = []
            weak = weakness(self.session_key.get_secret_value())
            if weak:
                # The name only: hide_input_in_errors keeps the value out of the error.
                problems.append(f"session_key {weak}")
            if plaintext := kafka_transport_problem(self.kafka_ca_file):
                problems.append(plaintext)
            if problems:
                raise ValueError("production mode refuses to start: " + "; ".join(problems))
        return self
