"""The published JSON Schemas (docs/schemas) agree with the services: every example in
docs/examples/ and every JSON example in docs/integrators.md is checked by an independent validator
(``jsonschema``) against the committed schemas, and the services' own reading of each agrees.
Variants of the examples that break one rule each must be refused by both."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from pydantic import BaseModel, ValidationError

from shared.contracts import events as ev
from shared.contracts import topics
from shared.kafka import agency_messages as submissions
from shared.kafka.agency_input import Refusal, read_agency_message
from shared.kafka.inbound import InboundEvent
from tests import factories as f

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "docs" / "schemas"
EXAMPLES = REPO / "docs" / "examples"
GUIDE = REPO / "docs" / "integrators.md"

# Each example file and the type its document is the payload of.
EXAMPLE_TYPES = {
    "agency-provider.json": ev.AGENCY_REGISTERED,
    "agency-referrer.json": ev.AGENCY_REGISTERED,
    "assistance-end.json": ev.ASSISTANCE_END_SUBMITTED,
    "case-closure.json": ev.CASE_CLOSURE_SUBMITTED,
    "community-need.json": ev.COMMUNITY_NEED_SUBMITTED,
    "listing-community.json": ev.SERVICE_LISTED,
    "case-closure-continue.json": ev.CASE_CLOSURE_SUBMITTED,
    "case-update.json": ev.CASE_UPDATE_SUBMITTED,
    "consent-withdrawal.json": ev.CONSENT_WITHDRAWN,
    "erasure-request.json": ev.ERASURE_REQUESTED,
    "erasure-confirmation.json": ev.ERASURE_CONFIRMATION_SUBMITTED,
    "assessment.json": ev.ASSESSMENT_SUBMITTED,
    "handover-answer-accept.json": ev.HANDOVER_ANSWER_SUBMITTED,
    "handover-answer-reject.json": ev.HANDOVER_ANSWER_SUBMITTED,
    "handover-proposal.json": ev.HANDOVER_PROPOSAL_SUBMITTED,
    "handover-proposal-consent.json": ev.HANDOVER_PROPOSAL_SUBMITTED,
    "handover-request.json": ev.HANDOVER_REQUEST_SUBMITTED,
    "listing.json": ev.SERVICE_LISTED,
    "response-accept.json": ev.RESPONSE_SUBMITTED,
    "response-reject.json": ev.RESPONSE_SUBMITTED,
    "submission.json": ev.CASE_SUBMITTED,
    "submission-invalid.json": ev.CASE_SUBMITTED,
    "structural-commitment-planned.json": ev.STRUCTURAL_COMMITMENT_SUBMITTED,
    "structural-commitment-not-planned.json": ev.STRUCTURAL_COMMITMENT_SUBMITTED,
    # issue 18 caseworker control
    "instruction-alternatives.json": ev.REFERRER_INSTRUCTION_SUBMITTED,
    "instruction-exclude.json": ev.REFERRER_INSTRUCTION_SUBMITTED,
    "instruction-choose.json": ev.REFERRER_INSTRUCTION_SUBMITTED,
    "instruction-revoke.json": ev.REFERRER_INSTRUCTION_SUBMITTED,
    "instruction-redirect.json": ev.REFERRER_INSTRUCTION_SUBMITTED,
}
INVALID_EXAMPLES = {"submission-invalid.json"}


def _validator(ce_type: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{ce_type}.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def _schema_accepts(ce_type: str, document: Any) -> bool:
    return not list(_validator(ce_type).iter_errors(document))


def _model_accepts(ce_type: str, document: Any) -> bool:
    try:
        ev.PAYLOADS[ce_type].model_validate(document)
    except ValidationError:
        return False
    return True


def _service_accepts(ce_type: str, document: Any) -> bool:
    """What the service that consumes this type makes of it, read as it arrives on the sending
    agency's own topic (for the types agencies send); the model's verdict otherwise."""
    family = next((fam for fam in topics.AGENCY_FAMILIES if ce_type in fam.template.payloads), None)
    if family is None or family is topics.AGENCY_INBOX:
        return _model_accepts(ce_type, document)
    agency = document.get("agency_id") if isinstance(document, dict) else None
    key_field = None if family is topics.AGENCY_RESPONSES else family.template.key
    if family is topics.AGENCY_SUBMISSIONS:  # an erasure confirmation is keyed otherwise
        key_field = submissions.key_field(ce_type)
    key = document.get(key_field) if key_field and isinstance(document, dict) else "k"
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"example-1"),
        ("ce_source", b"urn:test:example"),
        ("ce_type", ce_type.encode()),
        ("content-type", b"application/json"),
    ]
    valid_agency = isinstance(agency, str) and re.fullmatch(topics.AGENCY_ID_PATTERN, agency)
    record = f.record(
        family.name(agency if valid_agency else "iom-sn"),
        json.dumps(document).encode(),
        headers,
        key=str(key).encode(),
    )
    event = InboundEvent.from_record(record)
    models: dict[str, type[BaseModel]] = {ce_type: ev.PAYLOADS[ce_type]}
    return not isinstance(read_agency_message(event, models, key_field=key_field), Refusal)


def _guide_examples() -> list[tuple[str, Any]]:
    """Each ```json block of the guide with the type named in the comment just above it."""
    text = GUIDE.read_text()
    blocks = re.findall(r"(?:<!--\s*schema:\s*(\S+)\s*-->\s*\n)?```json\n(.*?)```", text, re.S)
    assert blocks, "the guide has no JSON example"
    out = []
    for ce_type, body in blocks:
        assert ce_type, f"a JSON example of the guide names no schema: {body[:80]!r}"
        out.append((ce_type, json.loads(body)))
    return out


@pytest.mark.parametrize("name", sorted(EXAMPLE_TYPES))
def test_every_example_file_agrees_with_its_schema_and_the_service(name: str) -> None:
    ce_type = EXAMPLE_TYPES[name]
    document = json.loads((EXAMPLES / name).read_text())
    expected = name not in INVALID_EXAMPLES
    assert _schema_accepts(ce_type, document) is expected, list(
        _validator(ce_type).iter_errors(document)
    )
    assert _service_accepts(ce_type, document) is expected


def test_every_example_file_is_listed() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.json")) == sorted(EXAMPLE_TYPES)


def test_every_json_example_of_the_guide_agrees_with_its_schema_and_the_service() -> None:
    examples = _guide_examples()
    for ce_type, document in examples:
        assert _schema_accepts(ce_type, document), (
            ce_type,
            list(_validator(ce_type).iter_errors(document)),
        )
        assert _service_accepts(ce_type, document), ce_type


def _set(path: str, value: Any) -> Callable[[Any], Any]:
    def mutate(doc: Any) -> Any:
        doc = copy.deepcopy(doc)
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        target = doc
        for part in parents:
            target = target[part]
        if value is _DROP:
            del target[last]
        else:
            target[last] = value
        return doc

    return mutate


_DROP = object()

# (example, ce_type, one change) → both must give the same verdict; each line is a rule the
# service enforces that the schema states too (valid variants included, so agreement is not
# only on refusals).
VARIANTS: list[tuple[str, str, Callable[[Any], Any], bool]] = [
    ("submission.json", "dimension given", _set("needs.0.dimension", "psychosocial"), True),
    ("submission.json", "dimension of another", _set("needs.0.dimension", "economic"), False),
    ("submission.json", "unknown category", _set("needs.0.category", "housing"), False),
    ("submission.json", "area code with a dash", _set("profile.return_area", "SN-01"), False),
    ("submission.json", "area code lower case", _set("profile.return_area", "sn0101"), False),
    ("submission.json", "area code unknown country", _set("profile.return_area", "QQ01"), False),
    ("submission.json", "area code too long", _set("profile.return_area", "SN" + "1" * 13), False),
    ("submission.json", "unknown country", _set("profile.nationality", "ZZ"), False),
    ("submission.json", "language not a code", _set("profile.languages", ["french"]), False),
    ("submission.json", "language repeated", _set("profile.languages", ["fr", "fr"]), False),
    ("submission.json", "no birth year nor age band", _set("profile.birth_year", _DROP), False),
    ("submission.json", "age band instead", _set("profile.birth_year", None), False),
    ("submission.json", "identifier with a space", _set("agency_case_ref", "SN 42"), False),
    ("submission.json", "agency id upper case", _set("agency_id", "IOM-SN"), False),
    ("submission.json", "name on two lines", _set("personal.given_name", "A\nB"), False),
    ("submission.json", "name only blanks", _set("personal.given_name", "   "), False),
    ("submission.json", "name with blanks around", _set("personal.given_name", " Awa "), True),
    (
        "submission.json",
        "phone with letters",
        _set("personal.contacts.0.value", "+221 70 ABC"),
        False,
    ),
    ("submission.json", "phone too short", _set("personal.contacts.0.value", "+221"), False),
    (
        "submission.json",
        "e-mail contact not an address",
        _set("personal.contacts.0", {"kind": "email", "value": "nobody"}),
        False,
    ),
    (
        "submission.json",
        "given consent without scope",
        _set("consent.scope", _DROP),
        False,
    ),
    (
        "submission.json",
        "refused consent with scope",
        _set("consent.given", False),
        False,
    ),
    ("submission.json", "unknown field", _set("profile.favourite_colour", "blue"), False),
    ("listing.json", "area repeated", _set("service_areas", ["SN01", "SN01"]), False),
    ("listing.json", "category repeated", _set("categories", ["social.housing"] * 2), False),
    (
        "listing.json",
        "no capacity with open slots",
        _set("capacity", {"status": "no_capacity", "open_slots": 3}),
        False,
    ),
    (
        "listing.json",
        "no capacity without slots",
        _set("capacity", {"status": "no_capacity"}),
        True,
    ),
    ("response-reject.json", "reject without reason", _set("reason_code", _DROP), False),
    ("response-reject.json", "reason of another action", _set("reason_code", "completed"), False),
    ("response-accept.json", "accept with a reason", _set("reason_code", "at_capacity"), False),
    ("response-accept.json", "accept with an outcome", _set("outcome", "achieved"), False),
    (
        "response-accept.json",
        "complete without outcome",
        _set("action", "complete"),
        False,
    ),
    (
        "case-update.json",
        "nothing to update",
        lambda d: {
            k: v for k, v in d.items() if k in ("agency_id", "agency_case_ref", "schema_version")
        },
        False,
    ),
    ("agency-provider.json", "public key too short", _set("public_key", "abc="), False),
    ("assistance-end.json", "unknown end of assistance", _set("reason", "finished"), False),
    ("case-closure-continue.json", "open referrals kept", _set("open_referrals", "keep"), False),
    ("case-closure.json", "open referrals cancelled", _set("open_referrals", "cancel"), True),
    ("handover-proposal.json", "unknown handover reason", _set("reason", "budget"), False),
    (
        "handover-proposal-consent.json",
        "carried consent refused with scope",
        _set("consent.given", False),
        False,
    ),
    ("handover-request.json", "request without reference", _set("agency_case_ref", _DROP), False),
    ("handover-answer-reject.json", "handover reject without reason", _set("reason", _DROP), False),
    (
        "handover-answer-accept.json",
        "approval without reference",
        _set("agency_case_ref", _DROP),
        True,
    ),
]


@pytest.mark.parametrize(
    ("name", "what", "mutate", "valid"), VARIANTS, ids=[v[1] for v in VARIANTS]
)
def test_schema_and_service_agree_on_each_rule(
    name: str, what: str, mutate: Callable[[Any], Any], valid: bool
) -> None:
    ce_type = EXAMPLE_TYPES[name]
    document = mutate(json.loads((EXAMPLES / name).read_text()))
    assert _service_accepts(ce_type, document) is valid, what
    assert _schema_accepts(ce_type, document) is valid, (
        what,
        [e.message for e in _validator(ce_type).iter_errors(document)],
    )
