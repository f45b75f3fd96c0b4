"""Intake's reading of raw submission records: valid ones pass, everything else is a rejection
that names the bad fields and never echoes personal data."""

import json

from shared.contracts import events as ev
from shared.kafka.agency_input import Refusal
from shared.kafka.agency_messages import (
    MAX_SUBMISSION_BYTES,
    SUBMISSION_MODELS,
    read_submission,
)
from shared.kafka.inbound import InboundEvent
from tests import factories as f


def _read(record: object) -> ev.CaseSubmission | Refusal:
    return read_submission(InboundEvent.from_record(record))  # type: ignore[arg-type]


def test_valid_submission_passes() -> None:
    sub = f.submission()
    result = _read(f.record_of(f.submission_event(sub)))
    assert isinstance(result, ev.CaseSubmission)
    assert result.agency_case_ref == sub.agency_case_ref


def test_missing_envelope_is_rejected_with_fields() -> None:
    result = _read(f.record("agency.iom-sn.submissions.v1", b"{}", headers=[]))
    assert isinstance(result, Refusal)
    assert result.reason == "invalid CloudEvents envelope"
    assert {"ce_id", "ce_source", "ce_type"} <= {e.field for e in result.errors}


def test_unknown_type_is_rejected() -> None:
    out = f.submission_event(f.submission())
    headers = [(k, v.encode()) for k, v in out.headers.items() if k != "ce_type"]
    headers.append(("ce_type", b"org.example.other.v1"))
    result = _read(f.record(out.topic, out.body, headers))
    assert isinstance(result, Refusal)
    assert "unknown ce_type" in result.reason
    assert [e.field for e in result.errors] == ["ce_type"]
    assert result.message_id == out.event_id


def test_malformed_json_is_rejected() -> None:
    out = f.submission_event(f.submission())
    headers = [(k, v.encode()) for k, v in out.headers.items()]
    result = _read(f.record(out.topic, b'{"agency_id": ', headers))
    assert isinstance(result, Refusal)
    assert "not valid JSON" in result.reason


def test_invalid_fields_are_named_without_their_values() -> None:
    sub = f.submission()
    out = f.submission_event(sub)
    doc = json.loads(out.body)
    doc["profile"]["return_area"] = "Dakar, rue 12"  # a secret-ish value that must not echo
    doc["needs"] = []
    headers = [(k, v.encode()) for k, v in out.headers.items()]
    result = _read(f.record(out.topic, json.dumps(doc).encode(), headers))
    assert isinstance(result, Refusal)
    fields = {e.field for e in result.errors}
    assert {"profile.return_area", "needs"} <= fields
    assert "rue 12" not in result.as_rejection().model_dump_json()


def test_claiming_another_agency_in_the_header_is_rejected() -> None:
    out = f.submission_event(f.submission(agency_id="iom-sn"))
    headers = [(k, v.encode()) for k, v in out.headers.items() if k != "ce_agencyid"]
    headers.append(("ce_agencyid", b"ngo-other"))
    result = _read(f.record(out.topic, out.body, headers))
    assert isinstance(result, Refusal)
    assert result.errors[0].field == "ce_agencyid"
    assert result.agency_id == "iom-sn"  # the rejection goes to the proven sender


def test_claiming_another_agency_in_the_body_is_rejected() -> None:
    out = f.submission_event(f.submission(agency_id="ngo-other"))
    headers = [(k, v.encode()) for k, v in out.headers.items() if k != "ce_agencyid"]
    # published on iom-sn's own topic, with a body that claims ngo-other
    result = _read(f.record("agency.iom-sn.submissions.v1", out.body, headers))
    assert isinstance(result, Refusal)
    assert result.errors[0].field == "agency_id"
    assert result.agency_id == "iom-sn"


def test_header_agency_is_optional_when_the_topic_proves_it() -> None:
    out = f.submission_event(f.submission(agency_id="iom-sn"))
    headers = [(k, v.encode()) for k, v in out.headers.items() if k != "ce_agencyid"]
    result = _read(f.record(out.topic, out.body, headers, key=out.key.encode()))
    assert isinstance(result, ev.CaseSubmission)


def test_a_key_other_than_the_case_reference_is_rejected() -> None:
    out = f.submission_event(f.submission(agency_id="iom-sn"))
    headers = [(k, v.encode()) for k, v in out.headers.items()]
    for key in (b"another-ref", None):
        result = _read(f.record(out.topic, out.body, headers, key=key))
        assert isinstance(result, Refusal)
        assert [e.field for e in result.errors] == ["(key)"]


def test_oversized_submission_is_rejected_before_parsing() -> None:
    out = f.submission_event(f.submission())
    headers = [(k, v.encode()) for k, v in out.headers.items()]
    result = _read(f.record(out.topic, b"{" + b" " * MAX_SUBMISSION_BYTES + b"}", headers))
    assert isinstance(result, Refusal)
    assert "exceeds the limit" in result.reason


def test_every_submission_type_is_validated_with_its_own_contract() -> None:
    out = f.submission_event(f.submission())
    for ce_type, model in SUBMISSION_MODELS.items():
        headers = [(k, v.encode()) for k, v in out.headers.items() if k != "ce_type"]
        headers.append(("ce_type", ce_type.encode()))
        body = b'{"agency_id": "iom-sn", "agency_case_ref": "R-1"}'
        result = _read(f.record(out.topic, body, headers))
        assert isinstance(result, Refusal), ce_type
        assert model.__name__ in result.reason
        assert result.errors, ce_type  # the missing fields are named
