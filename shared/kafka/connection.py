"""How a process reaches Kafka: the bootstrap servers, the certificate authority the broker's
certificate is checked against (TLS) and, when the cluster requires it (always, outside
throw-away experiments), its own SASL/SCRAM-SHA-512 principal.

One value object handed to every client factory (FastStream broker, aiokafka producers, consumers
and admin clients, librdkafka for the operator tooling), so no client can be created that forgets
to authenticate or to encrypt: with ``ca_file`` set, every one of them speaks TLS, verifies the
broker's certificate chain against that CA and the broker's host name against the certificate.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from typing import Any

from faststream.security import BaseSecurity, SASLScram512

SCRAM_MECHANISM = "SCRAM-SHA-512"


def tls_context(ca_file: str) -> ssl.SSLContext:
    """A client context that trusts ``ca_file`` only and checks the server's host name (what
    aiokafka's ``create_ssl_context(cafile=…)`` makes, without its log line per client)."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        # Said at once, naming the file: the client would otherwise only fail to connect.
        raise ValueError(f"cannot read the Kafka CA file {ca_file}: {exc}") from exc
    # create_default_context sets both already; stated so a reader need not know it.
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@dataclass(frozen=True, slots=True)
class KafkaConnection:
    bootstrap_servers: str
    username: str | None = None
    # repr=False: a connection may end up in a log line or a traceback; its password must not.
    password: str | None = field(default=None, repr=False)
    # The PEM file of the CA that signed the broker's certificate. Set: TLS (SASL_SSL) with the
    # chain and the host name verified. None: plaintext, which production settings refuse.
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if (self.username is None) != (self.password is None):
            raise ValueError("a Kafka username needs a password and a password needs a username")

    @property
    def authenticated(self) -> bool:
        return self.username is not None

    @property
    def tls(self) -> bool:
        return self.ca_file is not None

    def ssl_context(self) -> ssl.SSLContext | None:
        return tls_context(self.ca_file) if self.ca_file is not None else None

    @property
    def servers(self) -> list[str]:
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for any aiokafka client (producer, consumer, admin)."""
        kwargs: dict[str, Any] = {"bootstrap_servers": self.servers}
        if self.ca_file is not None:
            kwargs |= {"security_protocol": "SSL", "ssl_context": self.ssl_context()}
        if self.username is not None:
            kwargs |= {
                "security_protocol": "SASL_SSL" if self.tls else "SASL_PLAINTEXT",
                "sasl_mechanism": SCRAM_MECHANISM,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        return kwargs

    def faststream_security(self) -> BaseSecurity | None:
        if self.username is None or self.password is None:
            return BaseSecurity(ssl_context=self.ssl_context()) if self.tls else None
        return SASLScram512(
            username=self.username, password=self.password, ssl_context=self.ssl_context()
        )

    def librdkafka_config(self) -> dict[str, str]:
        """The same connection for confluent-kafka (librdkafka), used by the operator tooling
        for what aiokafka cannot do: SCRAM credentials and ACLs."""
        config = {"bootstrap.servers": ",".join(self.servers)}
        if self.ca_file is not None:
            config |= {
                "security.protocol": "SSL",
                "ssl.ca.location": self.ca_file,
                # librdkafka's default since 2.0, stated: older ones did not check the name.
                "ssl.endpoint.identification.algorithm": "https",
            }
        if self.username is not None and self.password is not None:
            config |= {
                "security.protocol": "SASL_SSL" if self.tls else "SASL_PLAINTEXT",
                "sasl.mechanism": SCRAM_MECHANISM,
                "sasl.username": self.username,
                "sasl.password": self.password,
            }
        return config

    def as_user(self, username: str, password: str) -> KafkaConnection:
        """The same broker, reached the same way (TLS included), as another principal."""
        return KafkaConnection(self.bootstrap_servers, username, password, self.ca_file)

    @classmethod
    def from_env(cls, prefix: str = "REFEX_KAFKA_") -> KafkaConnection:
        """``<prefix>BOOTSTRAP_SERVERS``, ``<prefix>USERNAME``, ``<prefix>PASSWORD``,
        ``<prefix>CA_FILE``."""
        return cls(
            os.environ.get(f"{prefix}BOOTSTRAP_SERVERS", "127.0.0.1:19092"),
            os.environ.get(f"{prefix}USERNAME") or None,
            os.environ.get(f"{prefix}PASSWORD") or None,
            os.environ.get(f"{prefix}CA_FILE") or None,
        )
