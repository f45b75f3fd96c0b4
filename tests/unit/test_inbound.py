from pydantic import ValidationError

from shared.contracts import events as ev
from shared.kafka.inbound import InboundEvent, PermanentError, describe_error
from tests import factories as f


def test_event_id_falls_back_to_position_without_envelope() -> None:
    event = InboundEvent.from_record(f.record("t.x.v1", b"{}", offset=7))
    assert event.attributes is None and event.envelope_error is not None
    assert event.event_id == "t.x.v1/0/7"


def test_tombstone_has_no_envelope_and_no_error() -> None:
    event = InboundEvent.from_record(f.record("directory.services.v1", None, key=b"svc-1"))
    assert event.is_tombstone() and event.envelope_error is None
    assert event.key_text == "svc-1"


def test_data_as_validates_or_raises_permanent_error() -> None:
    good = InboundEvent.from_record(f.record_of(f.agency_event(f.agency("ngo-a"))))
    assert good.data_as(ev.AgencyRecord).agency_id == "ngo-a"
    try:
        good.data_as(ev.ServiceListing)
    except PermanentError as exc:
        assert "ServiceListing" in str(exc)
    else:
        raise AssertionError("expected PermanentError")


def test_describe_error_never_echoes_input_values() -> None:
    try:
        ev.PersonalData.model_validate({"given_name": "", "family_name": "SECRET-NAME-X" * 30})
    except ValidationError as exc:
        text = describe_error(exc)
    assert "given_name" in text and "family_name" in text
    assert "SECRET-NAME-X" not in text
