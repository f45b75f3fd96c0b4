"""The contracts of the pseudonymous topics cannot carry personal data: no field for it exists,
and unknown fields are refused."""

from typing import Any

import pytest
from pydantic import ValidationError

from shared.contracts import events as ev
from shared.contracts import topics
from tests import factories as f

PSEUDONYMOUS_TOPICS = (topics.INTAKE_CASES, topics.REFERRAL_EVENTS)
PERSONAL_FIELD_NAMES = {
    "given_name",
    "family_name",
    "other_names",
    "date_of_birth",
    "contacts",
    "documents",
    "personal",
    "phone",
    "email",
    "address",
    "name",
    "note",
    "description",
    "sealed_box",
}
PERSONAL_MODELS = {"PersonalData", "Contact", "IdentityDocument", "DisclosedContact"}


def _models_of(topic: str) -> list[type[ev.Contract]]:
    return [ev.PAYLOADS[t] for t in topics.spec(topic).payloads]


def _property_names(schema: dict[str, Any]) -> set[str]:
    names = set(schema.get("properties", {}))
    for sub in schema.get("$defs", {}).values():
        names |= _property_names(sub)
    return names


@pytest.mark.parametrize("topic", PSEUDONYMOUS_TOPICS)
def test_no_model_of_a_pseudonymous_topic_has_a_personal_field(topic: str) -> None:
    for model in _models_of(topic):
        schema = model.model_json_schema()
        assert not _property_names(schema) & PERSONAL_FIELD_NAMES, model.__name__
        assert not set(schema.get("$defs", {})) & PERSONAL_MODELS, model.__name__


def _case_event(**extra: Any) -> dict[str, Any]:
    sub = f.submission()
    return {
        "case_id": "c-1",
        "submitting_agency_id": sub.agency_id,
        "profile": sub.profile.model_dump(mode="json"),
        "needs": [n.model_dump(mode="json") for n in sub.needs],
        "consent": sub.consent.model_dump(mode="json"),
        **extra,
    }


@pytest.mark.parametrize(
    "smuggled",
    [
        {"personal": {"given_name": "Awa", "family_name": "Diop"}},
        {"given_name": "Awa"},
        {"contacts": [{"kind": "phone", "value": "+221700000000"}]},
        {"note": "Awa Diop, +221 70 000 00 00"},
    ],
)
def test_a_case_event_refuses_personal_data(smuggled: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        ev.CaseRegistered.model_validate(_case_event(**smuggled))
    assert {e["type"] for e in info.value.errors()} == {"extra_forbidden"}


def test_personal_data_cannot_hide_inside_the_profile_or_a_need() -> None:
    data = _case_event()
    data["profile"]["given_name"] = "Awa"
    with pytest.raises(ValidationError):
        ev.CaseRegistered.model_validate(data)
    data = _case_event()
    data["needs"][0]["description"] = "Awa needs a lawyer"
    with pytest.raises(ValidationError):
        ev.CaseRegistered.model_validate(data)


def test_a_referral_event_refuses_free_text() -> None:
    requested = {
        "referral_id": "r-1",
        "case_id": "c-1",
        "need_id": "n1",
        "category": "psychosocial.counselling",
        "urgency": "normal",
        "referring_agency_id": "iom-sn",
        "recipient_agency_id": "ngo-jamm",
        "service_id": "s-1",
        "explanation": {"matched": [], "score": 0.5, "components": {}},
    }
    ev.ReferralRequested.model_validate(requested)
    with pytest.raises(ValidationError):
        ev.ReferralRequested.model_validate({**requested, "note": "call Awa on +221700000000"})
    with pytest.raises(ValidationError):  # ids are identifiers, not sentences
        ev.ReferralRequested.model_validate({**requested, "case_id": "Awa Diop, Dakar"})


def test_the_case_event_intake_builds_holds_none_of_the_personal_values() -> None:
    sub = f.submission()
    event = ev.CaseRegistered(
        case_id="c-1",
        submitting_agency_id=sub.agency_id,
        profile=sub.profile,
        needs=sub.needs,
        consent=sub.consent,
    )
    wire = event.model_dump_json()
    for value in ("Awa", "Test", "+221700000000"):
        assert value not in wire
