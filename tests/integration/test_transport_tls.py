"""TLS to the real broker and database (issue 22, decision 31): what `make test` starts accepts
TLS connections only, and a client that cannot verify the server's certificate and host name is
refused.

Each refusal is paired with the same client's successful connection, so a test cannot pass
merely because nothing answered at all."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
from pathlib import Path

import asyncpg
import pytest
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from services.gateway.kafka_login import LoginResult, check_login
from shared.kafka.connection import KafkaConnection, tls_context
from tests.dsn import with_params

REPO = Path(__file__).resolve().parents[2]
CERTIFICATES = REPO / "deploy" / "tls" / "certificates.sh"


def host_port(kafka: KafkaConnection) -> tuple[str, int]:
    host, _, port = kafka.servers[0].rpartition(":")
    return host, int(port)


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A CA of someone else's, made the way the project makes its own: a broker or database
    with a certificate it did not sign must be refused."""
    folder = tmp_path_factory.mktemp("other-ca")
    subprocess.run(
        ["bash", "-c", f'source "{CERTIFICATES}"; tls_ca "$1"', "ca", str(folder)],
        check=True,
        capture_output=True,
    )
    return str(folder / "ca.crt")


async def login(kafka: KafkaConnection, **override: object) -> None:
    """One bare connection and SASL handshake (what the gateway's login check does)."""
    settings = kafka.client_kwargs() | override
    del settings["bootstrap_servers"]
    host, port = host_port(kafka)
    conn = await asyncio.wait_for(create_conn(host, port, **settings), 15)
    conn.close()


# ----- Kafka -----


async def test_the_broker_accepts_a_client_that_verifies_it(kafka: KafkaConnection) -> None:
    assert kafka.tls, "make test gives every client the CA (REFEX_KAFKA_CA_FILE)"
    await login(kafka)


async def test_a_client_without_the_ca_is_refused(kafka: KafkaConnection, other_ca: str) -> None:
    """The system's trust store and a foreign CA both fail: the broker's certificate is signed
    by the local CA only."""
    await login(kafka)
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        await login(kafka, ssl_context=ssl.create_default_context())
    with pytest.raises(ssl.SSLCertVerificationError):
        await login(kafka, ssl_context=tls_context(other_ca))


async def test_a_client_expecting_another_host_name_is_refused(kafka: KafkaConnection) -> None:
    """The certificate names localhost and 127.0.0.1; a client that meant another server (a
    DNS answer pointing it elsewhere) must not accept it."""
    host, port = host_port(kafka)
    context = kafka.ssl_context()
    assert context is not None
    for name in (host, "localhost"):
        _, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=name)
        writer.close()
        await writer.wait_closed()
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        await asyncio.open_connection(host, port, ssl=context, server_hostname="kafka.invalid")


async def test_a_plaintext_client_is_refused(kafka: KafkaConnection) -> None:
    plaintext = KafkaConnection(kafka.bootstrap_servers, kafka.username, kafka.password)
    with pytest.raises((KafkaConnectionError, ConnectionError, TimeoutError)):
        await login(plaintext)
    await login(kafka)


def librdkafka_topics(config: dict[str, str], timeout_s: float = 10) -> set[str]:
    admin = AdminClient({**config, "socket.timeout.ms": "5000"})
    return set(admin.list_topics(timeout=timeout_s).topics)


async def test_librdkafka_verifies_the_broker_too(kafka: KafkaConnection, other_ca: str) -> None:
    """The operator tooling (confluent-kafka) gets the same TLS settings from the connection."""
    assert await asyncio.to_thread(librdkafka_topics, kafka.librdkafka_config())
    foreign = kafka.librdkafka_config() | {"ssl.ca.location": other_ca}
    with pytest.raises(KafkaException):
        await asyncio.to_thread(librdkafka_topics, foreign, 4)
    plaintext = KafkaConnection(kafka.bootstrap_servers, kafka.username, kafka.password)
    with pytest.raises(KafkaException):
        await asyncio.to_thread(librdkafka_topics, plaintext.librdkafka_config(), 4)


async def test_the_gateway_calls_an_unverifiable_broker_unreachable_not_the_password_wrong(
    kafka: KafkaConnection, other_ca: str
) -> None:
    assert await check_login(kafka) is LoginResult.OK
    assert kafka.username is not None and kafka.password is not None
    foreign = KafkaConnection(kafka.bootstrap_servers, kafka.username, kafka.password, other_ca)
    assert await check_login(foreign) is LoginResult.UNREACHABLE


# ----- PostgreSQL -----


async def test_the_database_speaks_tls_with_verify_full(database_urls: dict[str, str]) -> None:
    url = database_urls["intake"]
    assert "sslmode=verify-full" in url, "make test gives every service verify-full"
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    finally:
        await conn.close()


async def test_the_database_refuses_a_connection_without_tls(
    database_urls: dict[str, str],
) -> None:
    """pg_hba.conf: TCP only with TLS (hostssl). The password is right; the server still
    refuses, before asking for it."""
    url = database_urls["intake"].split("?")[0]
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption"):
        await asyncpg.connect(with_params(url, sslmode="disable"))


async def test_a_database_client_with_another_ca_is_refused(
    database_urls: dict[str, str], other_ca: str
) -> None:
    base = database_urls["intake"].split("?")[0]
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        await asyncpg.connect(with_params(base, sslmode="verify-full", sslrootcert=other_ca))
    # The local CA signed the database's certificate as it signed the broker's.
    local_ca = os.environ["REFEX_KAFKA_CA_FILE"]
    conn = await asyncpg.connect(with_params(base, sslmode="verify-full", sslrootcert=local_ca))
    await conn.close()
