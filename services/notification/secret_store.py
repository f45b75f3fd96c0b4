"""Webhook signing secrets at rest. The only module that seals or opens them; the store
(:mod:`.store`, ``webhook_secrets``) keeps and returns them only as sealed boxes.

Signing needs the plaintext (HMAC-SHA256 keyed by the secret), so the secrets cannot be hashed:
each is stored in ``webhook_secrets`` as a PyNaCl secret box (XSalsa20-Poly1305) under
``NOTIFICATION_SECRETS_KEY``, beside the id of the key that sealed it (``key_id``: the first 8 hex
digits of the key's SHA-256), so the key can be replaced later and every row re-sealed
(:func:`reseal`, ``refex notification reencrypt-secrets``).

In memory a plaintext secret is only ever a pydantic ``SecretStr``: its ``str`` and ``repr`` are
``**********``, so a log line, an exception message or a traceback showing locals cannot reveal
it. Callers unwrap it (``get_secret_value()``) only where the bytes are needed: to sign, and to
show a new secret once to the operator.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
from nacl.exceptions import CryptoError
from nacl.secret import SecretBox
from pydantic import SecretStr

from shared.keys import decode_key
from shared.logging import get_logger
from shared.unit import open_unit

from .constants import SOURCE
from .store import NotificationStore, Sealed

log = get_logger(__name__)

# key_id of secrets that migration 0006 carried over from the old clear column: the SQL
# migration cannot seal them (the key never reaches the database); the service seals them at
# start-up (seal_carried_over) before it delivers anything.
CARRIED_OVER = "plaintext"


class SecretUnreadable(Exception):
    """A stored secret does not open with the key at hand (another key sealed it, or the stored
    bytes were altered). The message names key ids only, never key or secret material."""


class SecretsKey:
    """The key that seals the secrets, with its id. Its repr shows the id only."""

    __slots__ = ("_box", "key_id")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != SecretBox.KEY_SIZE:
            raise ValueError(f"a secrets key has {SecretBox.KEY_SIZE} bytes")
        self._box = SecretBox(raw)
        self.key_id = key_id_of(raw)

    @classmethod
    def from_setting(cls, value: SecretStr) -> SecretsKey:
        """From a base64 setting or environment value (``head -c 32 /dev/urandom | base64``)."""
        return cls(decode_key(value))

    def __repr__(self) -> str:
        return f"SecretsKey(key_id={self.key_id!r})"

    def seal(self, plaintext: bytes) -> bytes:
        return bytes(self._box.encrypt(plaintext))

    def open(self, box: bytes) -> bytes:
        return bytes(self._box.decrypt(box))


@dataclass(frozen=True, slots=True)
class ResealReport:
    resealed: int = 0  # now sealed under the current key (from an old key, or carried over)
    current: int = 0  # were already sealed under the current key
    unreadable: dict[str, int] = field(default_factory=dict)  # key id -> rows left as they are


def key_id_of(raw: bytes) -> str:
    """Names a key without revealing it: 32 bits of its SHA-256 tell keys apart, no more."""
    return hashlib.sha256(raw).hexdigest()[:8]


def new_secret() -> SecretStr:
    """A Standard Webhooks signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SecretStr("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())


def seal(key: SecretsKey, secret: SecretStr) -> Sealed:
    return Sealed(key.key_id, key.seal(secret.get_secret_value().encode()))


def unseal(key: SecretsKey, sealed: Sealed) -> SecretStr:
    if sealed.key_id != key.key_id:
        raise SecretUnreadable(
            f"secret sealed under key {sealed.key_id}, but the key at hand is {key.key_id}: "
            "re-seal with `refex notification reencrypt-secrets --old-key-env VAR`"
        )
    try:
        return SecretStr(key.open(sealed.box).decode())
    except (CryptoError, UnicodeDecodeError):
        raise SecretUnreadable(
            f"secret recorded under key {key.key_id} does not open with it (altered data?)"
        ) from None  # the library's own error adds nothing and must not travel further


# ----- the webhook_secrets table, through the store -----


async def replace_all(
    store: NotificationStore, key: SecretsKey, agency_id: str, secret: SecretStr
) -> None:
    """Make ``secret`` the agency's only signing secret (a new or re-registered webhook)."""
    await store.replace_secrets(agency_id, seal(key, secret))


async def rotate(
    store: NotificationStore,
    key: SecretsKey,
    agency_id: str,
    secret: SecretStr,
    previous_valid_until: datetime,
) -> None:
    """Add ``secret`` as the current one; the previous current one still signs until
    ``previous_valid_until``. Secrets already past their overlap are deleted; one still in an
    earlier overlap keeps its end (a rotation never extends an old secret's life)."""
    await store.rotate_secret(agency_id, seal(key, secret), previous_valid_until)


async def signing_secrets(
    store: NotificationStore, key: SecretsKey, agency_ids: Iterable[str]
) -> dict[str, list[SecretStr]]:
    """The secrets that sign now, per agency (several during a rotation's overlap)."""
    return opened(key, await store.secrets_in_force(list(agency_ids)))


def opened(key: SecretsKey, sealed: Mapping[str, Sequence[Sealed]]) -> dict[str, list[SecretStr]]:
    """Per agency, its sealed secrets opened, in their order. One that does not open is left
    out and logged with its key id: the others still sign."""
    found: dict[str, list[SecretStr]] = {}
    for agency_id in sorted(sealed):
        for stored in sealed[agency_id]:
            try:
                secret = unseal(key, stored)
            except SecretUnreadable:
                log.error(
                    "webhook_secret_unreadable",
                    agency_id=agency_id,
                    sealed_with=stored.key_id,
                    current_key=key.key_id,
                )
                continue
            found.setdefault(agency_id, []).append(secret)
    return found


async def seal_carried_over(pool: asyncpg.Pool, key: SecretsKey) -> int:
    """Seal the secrets migration 0006 carried over in clear, and warn about secrets sealed
    under another key. Run at every start-up, before any delivery; idempotent."""
    async with open_unit(pool.acquire(), NotificationStore, SOURCE) as unit:
        report = await _reseal_rows(unit.stores, key, [], only=CARRIED_OVER)
        others = await unit.stores.secrets_under_other_keys(key.key_id)
    if report.resealed:
        log.info("webhook_secrets_sealed", count=report.resealed, key_id=key.key_id)
    if others:
        log.warning(
            "webhook_secrets_under_other_keys",
            key_ids=others,
            current_key=key.key_id,
            remedy="refex notification reencrypt-secrets --old-key-env VAR",
        )
    return report.resealed


async def reseal(
    store: NotificationStore, key: SecretsKey, old_keys: Sequence[SecretsKey]
) -> ResealReport:
    """Re-seal every stored secret under ``key``: those of ``old_keys`` are opened and sealed
    again, carried-over clear ones are sealed; those of any other key are left and counted.
    Idempotent: run it again with the missing key. Call it in a unit of work (one
    transaction)."""
    return await _reseal_rows(store, key, old_keys, only=None)


async def _reseal_rows(
    store: NotificationStore,
    key: SecretsKey,
    old_keys: Sequence[SecretsKey],
    *,
    only: str | None,
) -> ResealReport:
    """Re-seal the rows not under ``key`` (only those of key id ``only``, when given)."""
    by_id = {old.key_id: old for old in old_keys}
    resealed: list[tuple[int, Sealed]] = []
    unreadable: dict[str, int] = {}
    for secret_id, stored in await store.secrets_to_reseal(key.key_id, only):
        try:
            secret = _plaintext_of(stored, by_id)
        except SecretUnreadable:
            unreadable[stored.key_id] = unreadable.get(stored.key_id, 0) + 1
            continue
        resealed.append((secret_id, seal(key, secret)))
    await store.reseal_secrets(resealed)
    current = await store.count_secrets(key.key_id)
    return ResealReport(len(resealed), current - len(resealed), unreadable)


def _plaintext_of(stored: Sealed, keys: dict[str, SecretsKey]) -> SecretStr:
    if stored.key_id == CARRIED_OVER:
        return SecretStr(stored.box.decode())
    old = keys.get(stored.key_id)
    if old is None:
        raise SecretUnreadable(f"no key with id {stored.key_id} at hand")
    return unseal(old, stored)
