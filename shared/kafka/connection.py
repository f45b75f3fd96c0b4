"""How a process reaches Kafka: the bootstrap servers and, when the cluster requires it (always,
outside throw-away experiments), its own SASL/SCRAM-SHA-512 principal.

One value object handed to every client factory (FastStream broker, aiokafka producers, consumers
and admin clients), so no client can be created that forgets to authenticate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from faststream.security import BaseSecurity, SASLScram512

SCRAM_MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True, slots=True)
class KafkaConnection:
    bootstrap_servers: str
    username: str | None = None
    # repr=False: a connection may end up in a log line or a traceback; its password must not.
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.username is None) != (self.password is None):
            raise ValueError("a Kafka username needs a password and a password needs a username")

    @property
    def authenticated(self) -> bool:
        return self.username is not None

    @property
    def servers(self) -> list[str]:
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for any aiokafka client (producer, consumer, admin)."""
        kwargs: dict[str, Any] = {"bootstrap_servers": self.servers}
        if self.username is not None:
            kwargs |= {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": SCRAM_MECHANISM,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        return kwargs

    def faststream_security(self) -> BaseSecurity | None:
        if self.username is None or self.password is None:
            return None
        return SASLScram512(username=self.username, password=self.password)

    def librdkafka_config(self) -> dict[str, str]:
        """The same connection for confluent-kafka (librdkafka), used by the operator tooling
        for what aiokafka cannot do: SCRAM credentials and ACLs."""
        config = {"bootstrap.servers": ",".join(self.servers)}
        if self.username is not None and self.password is not None:
            config |= {
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": SCRAM_MECHANISM,
                "sasl.username": self.username,
                "sasl.password": self.password,
            }
        return config

    def as_user(self, username: str, password: str) -> KafkaConnection:
        return KafkaConnection(self.bootstrap_servers, username, password)

    @classmethod
    def from_env(cls, prefix: str = "REFEX_KAFKA_") -> KafkaConnection:
        """``<prefix>BOOTSTRAP_SERVERS``, ``<prefix>USERNAME``, ``<prefix>PASSWORD``."""
        return cls(
            os.environ.get(f"{prefix}BOOTSTRAP_SERVERS", "127.0.0.1:19092"),
            os.environ.get(f"{prefix}USERNAME") or None,
            os.environ.get(f"{prefix}PASSWORD") or None,
        )
