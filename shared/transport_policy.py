"""What counts as a protected connection in production mode (decision 31).

A service started with ``<SERVICE>_ENVIRONMENT=production`` refuses to start unless its Kafka
connection uses TLS (a CA file is given, so the broker's certificate and host name are verified)
and its database URL asks for ``sslmode=verify-full`` (TLS, the server's certificate checked
against a trusted CA, and its host name against the certificate). Anything weaker lets someone on
the network read or change what a service sends, or stand in for the broker or the database.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

REQUIRED_SSLMODE = "verify-full"


def database_sslmode(dsn: str) -> str | None:
    """The sslmode a PostgreSQL URL asks for (its last one, as libpq and asyncpg read it)."""
    values = parse_qs(urlsplit(dsn).query).get("sslmode")
    return values[-1] if values else None


def database_transport_problem(dsn: str) -> str | None:
    """Why ``dsn`` is not acceptable in production, or None. The URL must say verify-full
    itself: without it asyncpg falls back to PGSSLMODE or to `prefer`, which accepts any
    certificate and falls back to plaintext without a word."""
    mode = database_sslmode(dsn)
    if mode != REQUIRED_SSLMODE:
        return (
            f"database_url has sslmode={mode or '(unset)'}; it needs sslmode={REQUIRED_SSLMODE} "
            "(TLS, the server's certificate and host name verified)"
        )
    return None


def kafka_transport_problem(ca_file: str | None) -> str | None:
    """Why a Kafka connection with this CA file is not acceptable in production, or None."""
    if not ca_file:
        return "kafka_ca_file is missing (the connection to Kafka must use TLS)"
    return None
