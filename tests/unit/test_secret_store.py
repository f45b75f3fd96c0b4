"""Webhook signing secrets sealed at rest: round trip, key ids, wrong keys fail clearly, and no
repr, message or log line ever shows a secret or a key."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
import structlog
from pydantic import SecretStr
from typer.testing import CliRunner

from ops.cli import app
from services.notification import secret_store
from services.notification.email import SmtpSettings
from services.notification.secret_store import Sealed, SecretsKey, SecretUnreadable
from services.notification.store import NotificationStore
from shared.logging import configure_logging

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_round_trip() -> None:
    key, secret = SecretsKey(KEY), secret_store.new_secret()
    sealed = secret_store.seal(key, secret)
    assert secret_store.unseal(key, sealed).get_secret_value() == secret.get_secret_value()


def test_sealed_box_holds_neither_the_secret_nor_its_key_bytes() -> None:
    key, secret = SecretsKey(KEY), secret_store.new_secret()
    plain = secret.get_secret_value()
    first, second = secret_store.seal(key, secret), secret_store.seal(key, secret)
    assert plain.encode() not in first.box
    assert base64.b64decode(plain.removeprefix("whsec_")) not in first.box
    assert first.box != second.box  # a fresh nonce each time


def test_key_id_is_recorded_with_each_secret() -> None:
    key = SecretsKey(KEY)
    assert key.key_id == hashlib.sha256(KEY).hexdigest()[:8]
    assert secret_store.seal(key, secret_store.new_secret()).key_id == key.key_id
    assert SecretsKey(OTHER).key_id != key.key_id
    assert SecretsKey.from_setting(SecretStr(b64(KEY))).key_id == key.key_id


def test_another_key_fails_clearly_naming_both_key_ids_only() -> None:
    key, other = SecretsKey(KEY), SecretsKey(OTHER)
    secret = secret_store.new_secret()
    sealed = secret_store.seal(key, secret)
    with pytest.raises(SecretUnreadable) as info:
        secret_store.unseal(other, sealed)
    message = str(info.value)
    assert key.key_id in message and other.key_id in message
    assert "reencrypt-secrets" in message
    assert secret.get_secret_value() not in message


def test_a_wrong_key_under_a_forged_key_id_or_altered_bytes_fail_too() -> None:
    key, other = SecretsKey(KEY), SecretsKey(OTHER)
    sealed = secret_store.seal(key, secret_store.new_secret())
    with pytest.raises(SecretUnreadable, match="does not open"):
        secret_store.unseal(other, Sealed(other.key_id, sealed.box))
    altered = sealed.box[:-1] + bytes([sealed.box[-1] ^ 1])
    with pytest.raises(SecretUnreadable, match="does not open") as info:
        secret_store.unseal(key, Sealed(key.key_id, altered))
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_a_key_must_have_32_bytes() -> None:
    with pytest.raises(ValueError, match="32"):
        SecretsKey(bytes(16))
    with pytest.raises(ValueError, match="base64"):
        SecretsKey.from_setting(SecretStr("not base64!"))


def test_reprs_show_neither_secrets_nor_keys() -> None:
    key, secret = SecretsKey(KEY), secret_store.new_secret()
    assert repr(key) == f"SecretsKey(key_id={key.key_id!r})"
    assert b64(KEY) not in repr(key) and "whsec_" not in repr(secret) + str(secret)


class FakeConn:
    """Just enough of a connection for signing_secrets (through the store)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    async def fetch(self, query: str, *args: Any) -> list[dict[str, Any]]:
        return self.rows


async def test_an_unreadable_secret_is_left_out_and_logged_by_key_id_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    key, old = SecretsKey(KEY), SecretsKey(OTHER)
    current, stale = secret_store.new_secret(), secret_store.new_secret()
    rows = [
        {"agency_id": "ngo-a", "key_id": k.key_id, "sealed": secret_store.seal(k, s).box}
        for k, s in ((old, stale), (key, current))
    ]
    configure_logging("unit", "INFO")
    try:
        store = NotificationStore(FakeConn(rows))  # type: ignore[arg-type]
        found = await secret_store.signing_secrets(store, key, ["ngo-a"])
    finally:
        out = capsys.readouterr().out
        structlog.reset_defaults()
    assert [s.get_secret_value() for s in found["ngo-a"]] == [current.get_secret_value()]
    logged = [json.loads(line) for line in out.splitlines()]
    unreadable = [line for line in logged if line["event"] == "webhook_secret_unreadable"]
    assert unreadable and unreadable[0]["sealed_with"] == old.key_id
    for secret in (current, stale):
        assert secret.get_secret_value() not in out
    assert b64(KEY) not in out and b64(OTHER) not in out


def test_reencrypt_refuses_a_missing_or_malformed_old_key_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOTIFICATION_DATABASE_URL", "postgresql://n:p@127.0.0.1:1/n")
    monkeypatch.setenv("NOTIFICATION_SECRETS_KEY", b64(KEY))
    monkeypatch.delenv("OLD_NOTIFICATION_KEY", raising=False)
    runner = CliRunner()
    missing = runner.invoke(
        app, ["notification", "reencrypt-secrets", "--old-key-env", "OLD_NOTIFICATION_KEY"]
    )
    assert missing.exit_code == 2 and "OLD_NOTIFICATION_KEY is not set" in missing.output
    monkeypatch.setenv("OLD_NOTIFICATION_KEY", "c2hvcnQta2V5")  # base64, but 9 bytes
    short = runner.invoke(
        app, ["notification", "reencrypt-secrets", "--old-key-env", "OLD_NOTIFICATION_KEY"]
    )
    assert short.exit_code == 2 and "32 bytes" in short.output
    assert "c2hvcnQta2V5" not in short.output


def test_commands_that_seal_need_the_secrets_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFICATION_DATABASE_URL", "postgresql://n:p@127.0.0.1:1/n")
    monkeypatch.setenv("NOTIFICATION_SECRETS_KEY", "bm90IDMyIGJ5dGVz")
    result = CliRunner().invoke(app, ["notification", "add-webhook", "ngo-a", "https://x.example"])
    assert result.exit_code == 2
    assert "secrets_key" in result.output and "bm90IDMyIGJ5dGVz" not in result.output


def test_the_smtp_password_stays_a_secret_until_the_smtp_call() -> None:
    smtp = SmtpSettings(host="h", port=25, sender="s", password=SecretStr("hunter2"))
    assert "hunter2" not in repr(smtp) and "hunter2" not in str(smtp)
