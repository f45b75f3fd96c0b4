import json
import uuid

import pytest

from shared.contracts import events as ev
from shared.contracts.envelope import (
    CONTENT_TYPE,
    EnvelopeError,
    build_event,
    event_type,
    parse_headers,
)


def _agency() -> ev.AgencyRecord:
    return ev.AgencyRecord(
        agency_id="ngo-jamm", name="Jamm", type=ev.AgencyType.NGO, countries=["SN"]
    )


def _as_kafka_headers(headers: dict[str, str]) -> list[tuple[str, bytes]]:
    return [(k, v.encode()) for k, v in headers.items()]


def test_built_event_has_binary_mode_headers_and_round_trips() -> None:
    out = build_event(
        topic="directory.agencies.v1",
        key="ngo-jamm",
        type_=ev.AGENCY_REGISTERED,
        source="urn:test",
        data=_agency(),
        subject="ngo-jamm",
        causation_id="cause-1",
    )
    assert out.headers["ce_specversion"] == "1.0"
    assert out.headers["content-type"] == CONTENT_TYPE
    assert out.headers["ce_correlationid"] == out.event_id  # a new conversation
    attrs = parse_headers(_as_kafka_headers(dict(out.headers)))
    assert attrs.id == out.event_id
    assert attrs.type == "org.referralexchange.directory.agency-registered.v1"
    assert attrs.subject == "ngo-jamm"
    assert attrs.causationid == "cause-1"
    assert json.loads(out.body)["agency_id"] == "ngo-jamm"


def test_correlation_id_is_carried_over() -> None:
    out = build_event(
        topic="t.x.v1", key="k", type_="x", source="s", data=_agency(), correlation_id="c-1"
    )
    assert out.headers["ce_correlationid"] == "c-1"


def test_hand_built_integrator_headers_are_accepted() -> None:
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", str(uuid.uuid4()).encode()),
        ("ce_source", b"urn:agency:ngo-jamm"),
        ("ce_type", event_type("intake", "case-submitted").encode()),
        ("content-type", b"application/json; charset=utf-8"),
        ("unrelated", b"\xff\xfe"),  # other headers are ignored, whatever their bytes
    ]
    attrs = parse_headers(headers)
    assert attrs.source == "urn:agency:ngo-jamm"
    assert attrs.time is None


def test_missing_and_bad_attributes_are_named() -> None:
    with pytest.raises(EnvelopeError) as info:
        parse_headers([("ce_specversion", b"0.3"), ("ce_type", b"x")])
    fields = {field for field, _ in info.value.errors}
    assert {"ce_id", "ce_source", "ce_specversion"} <= fields


def test_wrong_content_type_is_refused() -> None:
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"1"),
        ("ce_source", b"s"),
        ("ce_type", b"t"),
        ("content-type", b"application/xml"),
    ]
    with pytest.raises(EnvelopeError) as info:
        parse_headers(headers)
    assert info.value.errors[0][0] == "content-type"


def test_non_utf8_ce_header_is_an_envelope_error() -> None:
    with pytest.raises(EnvelopeError):
        parse_headers([("ce_id", b"\xff")])


def test_service_events_parse_with_the_standard_cloudevents_kafka_binding() -> None:
    from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
    from cloudevents.core.formats.json import JSONFormat

    out = build_event(
        topic="directory.agencies.v1",
        key="ngo-jamm",
        type_=ev.AGENCY_REGISTERED,
        source="urn:test",
        data=_agency(),
        subject="ngo-jamm",
        causation_id="cause-1",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    message = KafkaMessage(
        headers={k: v.encode() for k, v in out.headers.items()},
        key=out.key.encode(),
        value=out.body,
    )
    event = from_binary(message, JSONFormat())
    assert event.get_id() == out.event_id
    assert event.get_type() == ev.AGENCY_REGISTERED
    assert event.get_source() == "urn:test"
    assert event.get_subject() == "ngo-jamm"
    assert event.get_datacontenttype() == "application/json"
    assert event.get_time() is not None
    assert event.get_extension("causationid") == "cause-1"
    assert event.get_extension("correlationid") == out.event_id
    assert event.get_data() == json.loads(out.body)


def test_events_built_with_the_cloudevents_sdk_are_accepted() -> None:
    from cloudevents.core.bindings.kafka import to_binary
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    sdk_event = CloudEvent(
        {
            "type": event_type("intake", "case-submitted"),
            "source": "urn:agency:iom-sn",
            "id": "sdk-1",
            "agencyid": "iom-sn",
            "datacontenttype": "application/json",
        },
        {"agency_id": "iom-sn"},
    )
    message = to_binary(sdk_event, JSONFormat())
    attrs = parse_headers(list(message.headers.items()))
    assert (attrs.id, attrs.agencyid, attrs.type) == ("sdk-1", "iom-sn", sdk_event.get_type())
    assert attrs.time is not None


def test_type_naming_scheme_is_enforced() -> None:
    assert (
        event_type("referral", "need-unmatched", 2)
        == "org.referralexchange.referral.need-unmatched.v2"
    )
    for bad in [("Intake", "x"), ("intake", "case_submitted"), ("intake", "case-")]:
        with pytest.raises(ValueError):
            event_type(*bad)


def test_malformed_traceparent_is_refused() -> None:
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"1"),
        ("ce_source", b"s"),
        ("ce_type", b"t"),
        ("ce_traceparent", b"not-a-trace"),
    ]
    with pytest.raises(EnvelopeError) as info:
        parse_headers(headers)
    assert info.value.errors[0][0] == "ce_traceparent"


@pytest.mark.parametrize("bad", ["a\x00b", "line\nbreak", "\x7f", "c1\x85", "\ufffe"])
def test_attributes_with_characters_cloudevents_forbids_are_refused(bad: str) -> None:
    """CloudEvents 1.0 strings exclude control characters, surrogates and noncharacters; an id
    with NUL could not even be stored in PostgreSQL's inbox."""
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", bad.encode()),
        ("ce_source", b"urn:test"),
        ("ce_type", event_type("intake", "case-submitted").encode()),
    ]
    with pytest.raises(EnvelopeError) as info:
        parse_headers(headers)
    assert [field for field, _ in info.value.errors] == ["ce_id"]
