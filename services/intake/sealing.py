"""A submission's ``personal`` block sealed for intake (issue 22, decision 32): intake's X25519
submission keys, and opening a sealed block before anything else reads the submission.

An agency may send ``personal`` as a libsodium sealed box of PersonalData's JSON for intake's
current public key (published on ``intake.keys.v1``), so that the broker's disk holds only
ciphertext. Intake keeps the private keys in its settings (``INTAKE_SUBMISSION_KEY``, and
``INTAKE_SUBMISSION_PREVIOUS_KEYS`` during a rotation); the box names its key by the SHA-256
of the public key, so a box sealed for a previous key still opens until that key is removed.
With ``INTAKE_REQUIRE_SEALED_PERSONAL`` a clear block is refused.

Pure functions: no database, no Kafka. A refusal names the field and why, never its value;
nothing here logs the block, sealed or clear.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox
from pydantic import ValidationError

from shared.contracts import events as ev
from shared.kafka.agency_input import Refusal, field_errors, refusal
from shared.kafka.agency_messages import Submission
from shared.kafka.inbound import InboundEvent


def key_sha256(public_key: bytes) -> str:
    """The name of a key: the SHA-256 of the raw 32-byte public key, hex (what a sealed block's
    ``key_sha256`` and the disclosures' ``recipient_key_sha256`` give)."""
    return hashlib.sha256(public_key).hexdigest()


@dataclass(frozen=True, slots=True)
class SubmissionKeys:
    """Intake's submission key pairs: the ``current`` one (agencies seal for it) and the
    ``previous`` ones, still opened while agencies move to the current one. None at all:
    intake opens no sealed block (and requires none)."""

    current: PrivateKey | None = None
    previous: tuple[PrivateKey, ...] = ()
    _by_sha256: dict[str, PrivateKey] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = ([self.current] if self.current is not None else []) + list(self.previous)
        self._by_sha256.update({key_sha256(bytes(k.public_key)): k for k in keys})

    @classmethod
    def of(cls, current: bytes | None, previous: Sequence[bytes] = ()) -> SubmissionKeys:
        """From the raw 32-byte private keys (any 32 bytes are an X25519 private key)."""
        ours = PrivateKey(current) if current is not None else None
        return cls(ours, tuple(PrivateKey(k) for k in previous if k != current))

    def opening(self, sha256: str) -> PrivateKey | None:
        """The private key of the public key named ``sha256``, if intake holds it."""
        return self._by_sha256.get(sha256)

    def published(self) -> list[PublishedKey]:
        """What intake.keys.v1 must say of each key, the current one first."""
        out = []
        for key, status in [
            *([(self.current, ev.SubmissionKeyStatus.CURRENT)] if self.current else []),
            *((k, ev.SubmissionKeyStatus.PREVIOUS) for k in self.previous),
        ]:
            public = bytes(key.public_key)
            out.append(PublishedKey(key_sha256(public), base64.b64encode(public).decode(), status))
        return out


@dataclass(frozen=True, slots=True)
class PublishedKey:
    """One record of intake.keys.v1: a public key and what intake does with boxes for it."""

    key_sha256: str
    public_key: str  # base64 of the raw 32 bytes
    status: ev.SubmissionKeyStatus


def key_changes(
    configured: Sequence[PublishedKey], published: Sequence[PublishedKey]
) -> list[PublishedKey]:
    """What to publish so that intake.keys.v1 says what the settings say: each configured key
    that is new or whose status changed, and each key published before and no longer
    configured, now retired (kept on the topic, so that an agency still sealing for it learns
    why it is refused). Nothing when they agree."""
    before = {k.key_sha256: k for k in published}
    now = {k.key_sha256 for k in configured}
    changes = [k for k in configured if before.get(k.key_sha256) != k]
    changes += [
        replace(k, status=ev.SubmissionKeyStatus.RETIRED)
        for k in published
        if k.key_sha256 not in now and k.status is not ev.SubmissionKeyStatus.RETIRED
    ]
    return changes


NOT_SEALED = (
    "intake requires the personal block sealed for its current submission key "
    "(intake.keys.v1): send it as {sealed_box, key_sha256}"
)
KEY_UNKNOWN = (
    "the personal block is sealed for a key intake does not hold (retired, or never "
    "intake's): seal it for the current key of intake.keys.v1"
)
UNOPENABLE = (
    "the sealed personal block does not open with the key it names (damaged, or sealed for "
    "another key)"
)
INVALID = "the sealed personal block opened, but does not match the PersonalData contract"


@dataclass(frozen=True, slots=True)
class SealRefused:
    """Why a personal block cannot be used: the rejection's code, reason and field errors."""

    code: ev.SubmissionError
    reason: str
    errors: list[ev.FieldError]


def _refused(code: ev.SubmissionError, reason: str, at: str) -> SealRefused:
    return SealRefused(code, reason, [ev.FieldError(field=at, message=reason)])


def open_personal(
    block: ev.PersonalData | ev.SealedPersonal | None,
    keys: SubmissionKeys,
    *,
    require_sealed: bool,
) -> ev.PersonalData | SealRefused | None:
    """The personal data a block holds, in clear; or why it cannot be had; None for no block
    (an update that leaves the personal data as it is)."""
    if block is None:
        return None
    if isinstance(block, ev.PersonalData):
        if require_sealed:
            return _refused(ev.SubmissionError.PERSONAL_NOT_SEALED, NOT_SEALED, "personal")
        return block
    key = keys.opening(block.key_sha256)
    if key is None:
        return _refused(ev.SubmissionError.SEALED_KEY_UNKNOWN, KEY_UNKNOWN, "personal.key_sha256")
    try:
        plaintext = SealedBox(key).decrypt(base64.b64decode(block.sealed_box, validate=True))
    except (binascii.Error, ValueError, CryptoError):
        # A base64 the contract's pattern let through but that does not decode (its padding),
        # a box too short or altered: all the same to its sender, sealed again.
        return _refused(ev.SubmissionError.SEALED_BOX_UNOPENABLE, UNOPENABLE, "personal.sealed_box")
    try:
        return ev.PersonalData.model_validate_json(plaintext)
    except ValidationError as exc:
        # Paths inside the block, as for a clear one (``personal.given_name``); the JSON itself
        # unreadable is the block's fault as a whole.
        errors = [
            ev.FieldError(
                field="personal" if e.field == "(root)" else f"personal.{e.field}"[:300],
                message=e.message,
            )
            for e in field_errors(exc)
        ]
        return SealRefused(ev.SubmissionError.SEALED_PERSONAL_INVALID, INVALID, errors)


def open_submission(
    event: InboundEvent, message: Submission, keys: SubmissionKeys, *, require_sealed: bool
) -> Submission | Refusal:
    """``message`` with its personal block in clear (only a case submission and a case update
    carry one), or the refusal to send its agency; first of all intake's checks, so that
    nothing reads a sealed block as data."""
    if not isinstance(message, ev.CaseSubmission | ev.CaseUpdate):
        return message
    opened = open_personal(message.personal, keys, require_sealed=require_sealed)
    if isinstance(opened, SealRefused):
        refused = refusal(event, opened.reason)
        return replace(refused, errors=opened.errors, code=opened.code)
    if opened is None or opened is message.personal:
        return message
    # model_copy: the opened block was validated just now, as the message was.
    return message.model_copy(update={"personal": opened})


def clear(block: ev.PersonalData | ev.SealedPersonal) -> ev.PersonalData:
    """The personal block of a message :func:`open_submission` returned: in clear by then."""
    if isinstance(block, ev.SealedPersonal):
        raise TypeError("a sealed personal block went past open_submission unopened")
    return block
