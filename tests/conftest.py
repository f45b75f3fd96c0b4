"""Fixtures for tests against the real local Kafka and PostgreSQL (started by `make test`).

Unit tests use none of them; integration and e2e tests fail (never skip) without the
infrastructure."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from shared.contracts.topics import Owner, TopicSpec
from shared.db.migrations import SHARED_MIGRATIONS, discover, migrate
from shared.kafka.admin import ensure_topics
from shared.kafka.connection import KafkaConnection


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(
            f"{name} is not set: integration tests need the local Kafka and PostgreSQL; "
            "run them with `make test` (or source .local/env after deploy/local/up.sh)"
        )
    return value


@pytest.fixture(scope="session")
def kafka() -> KafkaConnection:
    """The operator's (super user's) connection; tests that prove access rules use the
    agency and service principals instead."""
    return KafkaConnection(
        _env("REFEX_KAFKA_BOOTSTRAP_SERVERS"),
        _env("REFEX_KAFKA_USERNAME"),
        _env("REFEX_KAFKA_PASSWORD"),
        # make test's broker speaks TLS only: a test client without the CA could not connect.
        _env("REFEX_KAFKA_CA_FILE"),
    )


@pytest.fixture(scope="session")
def database_urls() -> dict[str, str]:
    services = ("intake", "referral", "notification", "evidence")
    return {s: _env(f"{s.upper()}_DATABASE_URL") for s in services}


TopicFactory = Callable[..., Awaitable[str]]


@pytest.fixture
def new_topic(kafka: KafkaConnection) -> TopicFactory:
    """Create a uniquely named scratch topic on the real broker."""

    async def create(partitions: int = 1) -> str:
        name = f"test.{uuid.uuid4().hex[:12]}.v1"
        await ensure_topics(kafka, [TopicSpec(name, Owner.OPERATORS, "k", partitions)])
        return name

    return create


@pytest.fixture
async def scratch_pool(database_urls: dict[str, str]) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the intake database confined to a fresh schema holding the shared plumbing
    tables (outbox, inbox); the schema is dropped afterwards."""
    schema = f"test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(database_urls["intake"])
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    pool = await asyncpg.create_pool(
        database_urls["intake"], min_size=1, max_size=4, server_settings={"search_path": schema}
    )
    assert pool is not None
    async with pool.acquire() as conn:
        await migrate(conn, discover("shared", SHARED_MIGRATIONS))
    try:
        yield pool
    finally:
        await pool.close()
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()
