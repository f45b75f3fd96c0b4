"""Webhook signing secrets against the real PostgreSQL: what is stored never holds a secret in
clear (every row of every table is scanned, as text and as raw bytes), the operator commands
seal, rotate and re-seal, and migration 0006 leaves no clear secret once the service started.

Each test gets a fresh schema of the notification database (tests/integration/
notification_schema.py) with its migrations applied."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from typer.testing import CliRunner, Result

from ops.cli import app
from services.notification import secret_store
from services.notification.secret_store import CARRIED_OVER, Sealed, SecretsKey
from services.notification.store import NotificationStore
from tests.integration.notification_schema import Schema, fresh_schema, migrate_notification

pytestmark = pytest.mark.integration

KEY_B64 = base64.b64encode(bytes(range(32))).decode()
OLD_KEY_B64 = base64.b64encode(bytes(range(100, 132))).decode()
KEY, OLD_KEY = SecretsKey(base64.b64decode(KEY_B64)), SecretsKey(base64.b64decode(OLD_KEY_B64))


@pytest.fixture
async def schema(database_urls: dict[str, str]) -> AsyncIterator[Schema]:
    async with fresh_schema(database_urls["notification"]) as made:
        yield made


async def _everything_stored(conn: asyncpg.Connection) -> tuple[str, bytes]:
    """Every row of every table of the schema: as PostgreSQL's own row text, and the raw bytes
    of every bytea value (the row text shows bytea as hex)."""
    tables = await conn.fetch(
        """SELECT table_name FROM information_schema.tables
            WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"""
    )
    text, raw = [], []
    for table in (t["table_name"] for t in tables):
        for row in await conn.fetch(f'SELECT t::text AS _row, t.* FROM "{table}" t'):
            text.append(row["_row"])
            raw.extend(v for v in row.values() if isinstance(v, bytes))
    return "\n".join(text), b"\n".join(raw)


async def _assert_nowhere_in_clear(schema: Schema, *secrets: str) -> None:
    async with schema.pool.acquire() as conn:
        endpoints = [r["t"] for r in await conn.fetch("SELECT t::text FROM webhook_endpoints t")]
        text, raw = await _everything_stored(conn)
    assert endpoints, "no webhook_endpoints row to scan"
    for secret in secrets:
        assert secret.startswith("whsec_")
        key_bytes = base64.b64decode(secret.removeprefix("whsec_"))
        assert all(secret not in row for row in endpoints)
        assert secret not in text and secret.removeprefix("whsec_") not in text
        assert secret.encode().hex() not in text and key_bytes.hex() not in text
        assert secret.encode() not in raw and key_bytes not in raw
    assert "whsec_" not in text and b"whsec_" not in raw


async def _invoke(*args: str) -> Result:
    """The CLI runs its own event loop: give it a thread, as an operator's shell would."""
    return await asyncio.to_thread(CliRunner().invoke, app, ["notification", *args])


async def _cli(schema: Schema, monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    monkeypatch.setenv("NOTIFICATION_DATABASE_URL", schema.dsn)
    monkeypatch.setenv("NOTIFICATION_SECRETS_KEY", KEY_B64)
    # The *.example URLs here resolve nowhere; which URLs are allowed: test_webhook_targets.py.
    monkeypatch.setenv("NOTIFICATION_ALLOW_PRIVATE_WEBHOOK_TARGETS", "true")
    result = await _invoke(*args)
    assert result.exit_code == 0, result.output
    return result.output


def _secret_in(output: str) -> str:
    found = re.findall(r"whsec_\S+", output)
    assert len(found) == 1, output
    return str(found[0])


async def test_registered_and_rotated_secrets_are_stored_sealed_only(
    schema: Schema, monkeypatch: pytest.MonkeyPatch
) -> None:
    await migrate_notification(schema)
    first = _secret_in(
        await _cli(schema, monkeypatch, "add-webhook", "ngo-a", "https://a.example/h")
    )
    second = _secret_in(await _cli(schema, monkeypatch, "rotate-webhook-secret", "ngo-a"))
    await _assert_nowhere_in_clear(schema, first, second)
    async with schema.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT key_id, valid_until FROM webhook_secrets WHERE agency_id = 'ngo-a' "
            "ORDER BY secret_id"
        )
        signing = await secret_store.signing_secrets(NotificationStore(conn), KEY, ["ngo-a"])
    assert [r["key_id"] for r in rows] == [KEY.key_id, KEY.key_id]  # the key that sealed each
    assert rows[0]["valid_until"] > datetime.now(UTC) + timedelta(hours=23)  # overlap
    assert rows[1]["valid_until"] is None
    assert [s.get_secret_value() for s in signing["ngo-a"]] == [first, second]

    third = _secret_in(
        await _cli(schema, monkeypatch, "add-webhook", "ngo-a", "https://a.example/2")
    )
    async with schema.pool.acquire() as conn:
        signing = await secret_store.signing_secrets(NotificationStore(conn), KEY, ["ngo-a"])
    assert [s.get_secret_value() for s in signing["ngo-a"]] == [third]  # re-registering resets
    await _assert_nowhere_in_clear(schema, first, second, third)


async def test_a_rotation_never_extends_an_older_overlap(schema: Schema) -> None:
    await migrate_notification(schema)
    secrets = [secret_store.new_secret() for _ in range(3)]
    soon, later = datetime.now(UTC) + timedelta(hours=1), datetime.now(UTC) + timedelta(hours=9)
    async with schema.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO webhook_endpoints (agency_id, url) VALUES ('ngo-b', 'https://b.example')"
        )
        await secret_store.replace_all(NotificationStore(conn), KEY, "ngo-b", secrets[0])
        await secret_store.rotate(NotificationStore(conn), KEY, "ngo-b", secrets[1], soon)
        await secret_store.rotate(NotificationStore(conn), KEY, "ngo-b", secrets[2], later)
        ends = [
            r["valid_until"]
            for r in await conn.fetch("SELECT valid_until FROM webhook_secrets ORDER BY secret_id")
        ]
        await conn.execute(
            "UPDATE webhook_secrets SET valid_until = now() WHERE secret_id = "
            "(SELECT min(secret_id) FROM webhook_secrets)"
        )
        signing = await secret_store.signing_secrets(NotificationStore(conn), KEY, ["ngo-b"])
    assert ends == [soon, later, None]
    assert [s.get_secret_value() for s in signing["ngo-b"]] == [
        s.get_secret_value() for s in secrets[1:]
    ]


async def test_reencrypt_reseals_every_secret_under_the_new_key(
    schema: Schema, monkeypatch: pytest.MonkeyPatch
) -> None:
    await migrate_notification(schema)
    secrets = [secret_store.new_secret() for _ in range(2)]
    async with schema.pool.acquire() as conn:
        store = NotificationStore(conn)
        for n, secret in enumerate(secrets):
            agency = f"ngo-{n}"
            await conn.execute(
                "INSERT INTO webhook_endpoints (agency_id, url) VALUES ($1, 'https://x.example')",
                agency,
            )
            await secret_store.replace_all(store, OLD_KEY, agency, secret)
        # the service, given the new key before the re-sealing, cannot open them: said clearly
        assert await secret_store.signing_secrets(store, KEY, ["ngo-0", "ngo-1"]) == {}

    monkeypatch.setenv("NOTIFICATION_DATABASE_URL", schema.dsn)
    monkeypatch.setenv("NOTIFICATION_SECRETS_KEY", KEY_B64)
    without_old = await _invoke("reencrypt-secrets")
    assert without_old.exit_code == 1
    assert f"2 under key {OLD_KEY.key_id}" in without_old.output

    monkeypatch.setenv("OLD_NOTIFICATION_SECRETS_KEY", OLD_KEY_B64)
    args = ["reencrypt-secrets", "--old-key-env", "OLD_NOTIFICATION_SECRETS_KEY"]
    first = await _cli(schema, monkeypatch, *args)
    again = await _cli(schema, monkeypatch, *args)
    assert "2 secret(s) re-sealed" in first
    assert "0 secret(s) re-sealed" in again and "2 already were" in again  # idempotent
    assert OLD_KEY_B64 not in first + again and KEY_B64 not in first + again
    async with schema.pool.acquire() as conn:
        key_ids = {r["key_id"] for r in await conn.fetch("SELECT key_id FROM webhook_secrets")}
        store = NotificationStore(conn)
        signing = await secret_store.signing_secrets(store, KEY, ["ngo-0", "ngo-1"])
    assert key_ids == {KEY.key_id}
    assert [signing[f"ngo-{n}"][0].get_secret_value() for n in range(2)] == [
        s.get_secret_value() for s in secrets
    ]
    await _assert_nowhere_in_clear(schema, *(s.get_secret_value() for s in secrets))


async def test_migration_0006_leaves_no_clear_secret_once_sealed_at_start_up(
    schema: Schema,
) -> None:
    await migrate_notification(schema, up_to="0005_failing_since")
    current, overlapping, expired = (secret_store.new_secret().get_secret_value() for _ in "abc")
    until = datetime.now(UTC) + timedelta(hours=5)
    async with schema.pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO webhook_endpoints (agency_id, url, secrets)
               VALUES ('ngo-old', 'https://old.example', $1::jsonb)""",
            (
                f'[{{"secret": "{expired}", "valid_until": "2001-01-01T00:00:00+00:00"}},'
                f' {{"secret": "{overlapping}", "valid_until": "{until.isoformat()}"}},'
                f' {{"secret": "{current}", "valid_until": null}}]'
            ),
        )
    await migrate_notification(schema)
    async with schema.pool.acquire() as conn:
        columns = await conn.fetch(
            """SELECT column_name FROM information_schema.columns
                WHERE table_schema = current_schema() AND table_name = 'webhook_endpoints'"""
        )
        carried = await conn.fetch("SELECT key_id FROM webhook_secrets")
    assert "secrets" not in {c["column_name"] for c in columns}  # the clear column is gone
    assert [r["key_id"] for r in carried] == [CARRIED_OVER, CARRIED_OVER]  # not the expired one

    assert await secret_store.seal_carried_over(schema.pool, KEY) == 2  # what start-up runs
    assert await secret_store.seal_carried_over(schema.pool, KEY) == 0  # idempotent
    await _assert_nowhere_in_clear(schema, current, overlapping, expired)
    async with schema.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT key_id, sealed, valid_until FROM webhook_secrets ORDER BY valid_until"
        )
    assert {r["key_id"] for r in rows} == {KEY.key_id}
    opened = [secret_store.unseal(KEY, Sealed(r["key_id"], r["sealed"])) for r in rows]
    assert [s.get_secret_value() for s in opened] == [overlapping, current]
    assert rows[0]["valid_until"] == until and rows[1]["valid_until"] is None
