"""Sealing a submission's ``personal`` block for intake in the gateway (decision 33): intake's
keys as ``intake.keys.v1`` holds them, and a clear block replaced by a libsodium sealed box
(``crypto_box_seal``) for the current one, so that the broker never holds the block readable.

Pure: records in, keys out; a message's JSON in, the same JSON with its block sealed out. The
gateway seals after ``ingress.check`` has applied intake's rules to the clear block (a
caseworker gets field-level reasons while the form is still in front of them) and before it
publishes. Nothing here logs, and no error repeats a value of the block."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nacl.public import PublicKey, SealedBox
from pydantic import ValidationError

from shared.contracts import events as ev

from .inbox import InboxMessage

# The two types that carry a ``personal`` block (decision 32's contract).
SEALED_TYPES = frozenset({ev.CASE_SUBMITTED, ev.CASE_UPDATE_SUBMITTED})
# Rejections that say the gateway's idea of intake's keys may be out of date: a box for a key
# intake no longer holds, or a clear block where intake now requires one sealed (it has a key
# the gateway did not know of).
STALE_KEY_CODES = frozenset(
    {ev.SubmissionError.SEALED_KEY_UNKNOWN.value, ev.SubmissionError.PERSONAL_NOT_SEALED.value}
)
_STATUS_ORDER = {
    ev.SubmissionKeyStatus.CURRENT: 0,
    ev.SubmissionKeyStatus.PREVIOUS: 1,
    ev.SubmissionKeyStatus.RETIRED: 2,
}


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One record of intake.keys.v1 as read: its key, its ``ce_type`` header and its value
    (None: a tombstone)."""

    key: bytes | None
    ce_type: str | None
    value: bytes | None


def _public_key(key: ev.SubmissionKey) -> bytes:
    return base64.b64decode(key.public_key, validate=True)


def keys_on_topic(records: Iterable[KeyRecord]) -> list[ev.SubmissionKey]:
    """What intake.keys.v1 says, one key per ``key_sha256`` (the last record of each, as
    compaction keeps it; a tombstone removes it): the current key first, then the previous
    ones, then the retired ones, the latest published first within each.

    A record that is not a valid ``submission-key-published``, or whose ``key_sha256`` is not
    the SHA-256 of its ``public_key``, is skipped: sealing for it would only earn a
    ``sealed_key_unknown`` (only intake may write the topic; this is a check, not a defence)."""
    by_sha: dict[str, ev.SubmissionKey] = {}
    for record in records:
        if record.value is None:
            if record.key is not None:
                by_sha.pop(record.key.decode("utf-8", "replace"), None)
            continue
        if record.ce_type != ev.SUBMISSION_KEY_PUBLISHED:
            continue
        try:
            key = ev.SubmissionKey.model_validate_json(record.value)
        except ValidationError:
            continue
        if hashlib.sha256(_public_key(key)).hexdigest() != key.key_sha256:
            continue
        by_sha[key.key_sha256] = key
    return sorted(
        by_sha.values(),
        key=lambda k: (_STATUS_ORDER[k.status], -k.published_at.timestamp(), k.key_sha256),
    )


def current_key(keys: Iterable[ev.SubmissionKey]) -> ev.SubmissionKey | None:
    """The key to seal for: the current one (intake has one; were there two, the latest
    published). None: intake publishes no current key, so it opens no sealed block and
    requires none (decision 32: requiring needs a key)."""
    current = [k for k in keys if k.status is ev.SubmissionKeyStatus.CURRENT]
    return max(current, key=lambda k: k.published_at, default=None)


def clear_block(ce_type: str, value: bytes) -> dict[str, Any] | None:
    """The clear ``personal`` block of a message, if it has one to seal: a case submission's or
    a case update's, not sealed already. None for every other message (a sealed block is passed
    on as its sender sealed it: the gateway cannot open it, intake answers for it)."""
    if ce_type not in SEALED_TYPES:
        return None
    try:
        document = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return None  # ingress.check refused it before this is asked
    personal = document.get("personal") if isinstance(document, dict) else None
    if not isinstance(personal, dict) or "sealed_box" in personal:
        return None
    return personal


def sealed_block(personal: dict[str, Any], key: ev.SubmissionKey) -> dict[str, str]:
    """``personal`` as decision 32's ``SealedPersonal``: a sealed box of its JSON (as the
    sender gave it: intake validates the opened block as it would the clear one) for ``key``,
    named by its ``key_sha256``."""
    plaintext = json.dumps(personal, ensure_ascii=False, separators=(",", ":")).encode()
    box = SealedBox(PublicKey(_public_key(key))).encrypt(plaintext)
    return {"sealed_box": base64.b64encode(box).decode("ascii"), "key_sha256": key.key_sha256}


def sealed_value(ce_type: str, value: bytes, key: ev.SubmissionKey) -> bytes | None:
    """The message's JSON with its clear ``personal`` block sealed for ``key``, every other
    member as it was (their order too); None when there is nothing to seal."""
    personal = clear_block(ce_type, value)
    if personal is None:
        return None
    document = json.loads(value)
    document["personal"] = sealed_block(personal, key)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def says_keys_changed(message: InboxMessage) -> bool:
    """Whether an inbox message is a rejection that says intake's keys changed since the
    gateway read them (``sealed_key_unknown``, ``personal_not_sealed``)."""
    if message.ce_type != ev.INBOX_SUBMISSION_REJECTED or not isinstance(message.data, dict):
        return False
    return message.data.get("error") in STALE_KEY_CODES
