"""The decisions about a submission's sealed personal block (issue 22, decision 32): which key
opens it, what is refused and why (never echoing a value), and intake's settings for it."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any

import pytest
from nacl.public import PrivateKey
from pydantic import ValidationError

from services.intake.sealing import (
    INVALID,
    KEY_UNKNOWN,
    NOT_SEALED,
    UNOPENABLE,
    SealRefused,
    SubmissionKeys,
    clear,
    key_changes,
    key_sha256,
    open_personal,
    open_submission,
)
from services.intake.settings import IntakeSettings
from shared.contracts import events as ev
from shared.contracts import messages
from shared.kafka.agency_input import Refusal
from shared.kafka.inbound import InboundEvent
from tests import factories as f

CURRENT, PREVIOUS = PrivateKey(bytes(range(32))), PrivateKey(bytes(range(1, 33)))
KEYS = SubmissionKeys(CURRENT, (PREVIOUS,))
PERSON = {"given_name": "Awa", "family_name": "Diop", "date_of_birth": "1990-05-01"}


def _sealed(personal: Any = PERSON, key: PrivateKey = CURRENT) -> ev.SealedPersonal:
    return ev.SealedPersonal.model_validate(f.sealed_personal(personal, bytes(key.public_key)))


def _raw_sealed(plaintext: bytes, key: PrivateKey = CURRENT) -> ev.SealedPersonal:
    from nacl.public import SealedBox

    box = SealedBox(key.public_key).encrypt(plaintext)
    return ev.SealedPersonal(
        sealed_box=base64.b64encode(box).decode(), key_sha256=key_sha256(bytes(key.public_key))
    )


# ----- opening a block -----


def test_a_block_sealed_for_the_current_or_a_previous_key_opens_to_its_personal_data() -> None:
    for key in (CURRENT, PREVIOUS):
        opened = open_personal(_sealed(key=key), KEYS, require_sealed=True)
        assert opened == ev.PersonalData.model_validate(PERSON)


def test_a_clear_block_is_taken_unless_sealing_is_required() -> None:
    clear_block = ev.PersonalData.model_validate(PERSON)
    assert open_personal(clear_block, KEYS, require_sealed=False) is clear_block
    refused = open_personal(clear_block, KEYS, require_sealed=True)
    assert refused == SealRefused(
        ev.SubmissionError.PERSONAL_NOT_SEALED,
        NOT_SEALED,
        [ev.FieldError(field="personal", message=NOT_SEALED)],
    )
    assert open_personal(None, KEYS, require_sealed=True) is None  # an update without one


def test_a_block_for_a_key_intake_does_not_hold_is_refused_naming_the_key_field() -> None:
    for keys in (SubmissionKeys(CURRENT), SubmissionKeys()):  # the previous one retired; none
        refused = open_personal(_sealed(key=PREVIOUS), keys, require_sealed=False)
        assert isinstance(refused, SealRefused)
        assert refused.code is ev.SubmissionError.SEALED_KEY_UNKNOWN
        assert refused.errors == [ev.FieldError(field="personal.key_sha256", message=KEY_UNKNOWN)]


def test_a_box_that_does_not_open_with_its_named_key_is_refused() -> None:
    sealed = _sealed()
    raw = bytearray(base64.b64decode(sealed.sealed_box))
    raw[-1] ^= 1  # one bit altered on the way
    cases = [
        sealed.model_copy(update={"sealed_box": base64.b64encode(raw).decode()}),
        # sealed for another key, but naming the current one
        _sealed(key=PrivateKey.generate()).model_copy(update={"key_sha256": sealed.key_sha256}),
        sealed.model_copy(update={"sealed_box": "AAAA"}),  # too short to be a box
        sealed.model_copy(update={"sealed_box": "AAAAA"}),  # the pattern's, but not base64
    ]
    for bad in cases:
        refused = open_personal(bad, KEYS, require_sealed=False)
        assert isinstance(refused, SealRefused), bad
        assert refused.code is ev.SubmissionError.SEALED_BOX_UNOPENABLE
        assert refused.errors == [ev.FieldError(field="personal.sealed_box", message=UNOPENABLE)]


def test_an_opened_box_that_is_no_personal_data_is_refused_field_by_field_without_values() -> None:
    bad = {"given_name": "Awa", "date_of_birth": "not-a-date-Zq", "nickname": "Zq"}
    refused = open_personal(_sealed(bad), KEYS, require_sealed=False)
    assert isinstance(refused, SealRefused)
    assert (refused.code, refused.reason) == (ev.SubmissionError.SEALED_PERSONAL_INVALID, INVALID)
    assert sorted(e.field for e in refused.errors) == [
        "personal.date_of_birth",
        "personal.family_name",
        "personal.nickname",
    ]
    assert "Zq" not in json.dumps([e.model_dump() for e in refused.errors])
    for plaintext in (b"\xff not utf-8", b"not json", b"[1, 2]"):
        refused = open_personal(_raw_sealed(plaintext), KEYS, require_sealed=False)
        assert isinstance(refused, SealRefused)
        assert refused.code is ev.SubmissionError.SEALED_PERSONAL_INVALID
        assert [e.field for e in refused.errors] == ["personal"]


# ----- a whole submission -----


def _event(submission: ev.CaseSubmission) -> InboundEvent:
    return InboundEvent.from_record(f.record_of(messages.submission_message(submission)))


def test_a_submission_comes_out_with_its_block_in_clear_or_as_a_coded_refusal() -> None:
    sealed = f.submission(personal=f.sealed_personal(PERSON, bytes(CURRENT.public_key)))
    event = _event(sealed)
    opened = open_submission(event, sealed, KEYS, require_sealed=True)
    assert isinstance(opened, ev.CaseSubmission)
    assert clear(opened.personal) == ev.PersonalData.model_validate(PERSON)
    assert opened.model_copy(update={"personal": sealed.personal}) == sealed  # nothing else

    in_clear = f.submission(personal=PERSON)
    clear_event = _event(in_clear)
    refused = open_submission(clear_event, in_clear, KEYS, require_sealed=True)
    assert isinstance(refused, Refusal)
    rejection = refused.as_rejection()
    assert rejection.error is ev.SubmissionError.PERSONAL_NOT_SEALED
    assert (rejection.submission_id, rejection.agency_id, rejection.topic) == (
        clear_event.event_id,
        "iom-sn",
        "agency.iom-sn.submissions.v1",
    )
    assert rejection.reason == NOT_SEALED
    assert [e.field for e in rejection.errors] == ["personal"]
    assert "Awa" not in rejection.model_dump_json()


def test_messages_without_a_personal_block_pass_as_they_are() -> None:
    erasure = ev.ErasureRequest(
        agency_id="iom-sn",
        agency_case_ref="SN-1",
        requested_at="2026-01-02T00:00:00Z",  # type: ignore[arg-type]
        basis="data_subject_request",
    )
    submission = f.submission()
    assert open_submission(_event(submission), erasure, KEYS, require_sealed=True) is erasure
    update = ev.CaseUpdate(agency_id="iom-sn", agency_case_ref="SN-1", needs=f.needs())  # type: ignore[arg-type]
    assert open_submission(_event(submission), update, KEYS, require_sealed=True) is update


def test_clear_refuses_a_block_still_sealed() -> None:
    with pytest.raises(TypeError, match="unopened"):
        clear(_sealed())


# ----- the contract of the block -----


def test_the_contract_takes_either_form_and_names_a_bad_one_s_own_fields() -> None:
    sealed = f.submission(personal=f.sealed_personal(PERSON, bytes(CURRENT.public_key)))
    assert isinstance(sealed.personal, ev.SealedPersonal)
    with pytest.raises(ValidationError) as clear_error:
        f.submission(personal={"given_name": "Awa"})
    assert [e["loc"] for e in clear_error.value.errors()] == [("personal", "family_name")]
    with pytest.raises(ValidationError) as sealed_error:
        f.submission(personal={"sealed_box": "not base64!", "key_sha256": "ab"})
    assert sorted(e["loc"] for e in sealed_error.value.errors()) == [
        ("personal", "key_sha256"),
        ("personal", "sealed_box"),
    ]
    with pytest.raises(ValidationError):  # not both forms at once
        f.submission(personal={**PERSON, "sealed_box": "AAAA", "key_sha256": "a" * 64})


# ----- the keys and the settings -----


def test_the_keys_are_published_current_first_each_named_by_its_sha256() -> None:
    published = KEYS.published()
    assert [k.status for k in published] == [
        ev.SubmissionKeyStatus.CURRENT,
        ev.SubmissionKeyStatus.PREVIOUS,
    ]
    for k, key in zip(published, (CURRENT, PREVIOUS), strict=True):
        assert base64.b64decode(k.public_key) == bytes(key.public_key)
        assert k.key_sha256 == key_sha256(bytes(key.public_key)) and len(k.key_sha256) == 64
    assert SubmissionKeys().published() == []
    # the current key given again among the previous ones is the current one only
    assert len(SubmissionKeys.of(bytes(range(32)), [bytes(range(32))]).published()) == 1


def test_what_changed_in_the_settings_is_published_and_only_that() -> None:
    current, previous = KEYS.published()
    retired = replace(previous, status=ev.SubmissionKeyStatus.RETIRED)
    assert key_changes([current, previous], []) == [current, previous]  # the first start
    assert key_changes([current, previous], [previous, current]) == []  # a restart
    # a rotation: a new current key, the old one previous
    new = SubmissionKeys(PrivateKey(bytes(range(9, 41))), (CURRENT,)).published()
    was_current = replace(current, status=ev.SubmissionKeyStatus.PREVIOUS)
    assert key_changes(new, [current, previous]) == [new[0], was_current, retired]
    # the rotation ends: the previous key taken out of the settings is retired, once
    assert key_changes(new[:1], [*new, retired]) == [
        replace(new[1], status=ev.SubmissionKeyStatus.RETIRED)
    ]
    assert key_changes([], [retired]) == []
    # a retired key configured again is published again as what it now is
    assert key_changes([current, previous], [current, retired]) == [previous]


def _settings(**env: str) -> IntakeSettings:
    base = {
        "database_url": "postgresql://intake:pw@127.0.0.1:5432/intake",
        "master_key": base64.b64encode(b"m" * 32).decode(),
        "duplicate_key": base64.b64encode(b"d" * 32).decode(),
    }
    return IntakeSettings(**{**base, **env})  # type: ignore[arg-type]


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def test_settings_give_the_key_pairs_and_refuse_what_cannot_work() -> None:
    settings = _settings(
        submission_key=_b64(bytes(range(32))),
        submission_previous_keys=f" {_b64(bytes(range(1, 33)))} ,",
        require_sealed_personal="true",
    )
    keys = settings.submission_keys()
    assert keys.current is not None and bytes(keys.current) == bytes(CURRENT)
    assert [bytes(k) for k in keys.previous] == [bytes(PREVIOUS)]
    assert _settings().submission_keys() == SubmissionKeys()
    with pytest.raises(ValidationError, match="require_sealed_personal needs submission_key"):
        _settings(require_sealed_personal="true")
    with pytest.raises(ValidationError, match="needs a current submission_key"):
        _settings(submission_previous_keys=_b64(bytes(range(32))))
    with pytest.raises(ValidationError, match=r"submission_previous_keys\[0\] must decode"):
        _settings(submission_key=_b64(bytes(32)), submission_previous_keys=_b64(b"short"))
    with pytest.raises(ValidationError, match="must decode to exactly 32 bytes"):
        _settings(submission_key=_b64(b"short"))


def test_production_refuses_a_placeholder_submission_key() -> None:
    # Production's transport too (shared.transport_policy): TLS to Kafka and to PostgreSQL.
    production = {
        "environment": "production",
        "kafka_username": "intake",
        "kafka_ca_file": "/etc/refex/tls/ca.crt",
    }
    strong = {
        "kafka_password": "a-long-and-random-password-0123",
        "database_url": "postgresql://intake:another-long-random-pw-987@127.0.0.1:5432/intake"
        "?sslmode=verify-full&sslrootcert=/etc/refex/tls/ca.crt",
        "master_key": _b64(bytes(range(32))),
        "duplicate_key": _b64(bytes(range(2, 34))),
    }
    _settings(**production, **strong, submission_key=_b64(bytes(range(3, 35))))
    with pytest.raises(ValidationError, match="submission_key is a placeholder key"):
        _settings(**production, **strong, submission_key=_b64(bytes(32)))
    with pytest.raises(ValidationError, match=r"submission_previous_keys\[0\] is a placeholder"):
        _settings(
            **production,
            **strong,
            submission_key=_b64(bytes(range(3, 35))),
            submission_previous_keys=_b64(bytes(32)),
        )
