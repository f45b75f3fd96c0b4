"""Valid contract objects and Kafka-shaped records for tests; override what a test is about."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import date
from typing import Any

from aiokafka import ConsumerRecord
from nacl.public import PublicKey, SealedBox

from shared.contracts import events as ev
from shared.contracts import messages
from shared.contracts.envelope import OutgoingEvent
from shared.contracts.outcomes import INDICATOR_SETS


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def submission(agency_id: str = "iom-sn", **overrides: Any) -> ev.CaseSubmission:
    data: dict[str, Any] = {
        "agency_id": agency_id,
        "agency_case_ref": unique("CASE"),
        "personal": {
            "given_name": "Awa",
            "family_name": "Test",
            "contacts": [{"kind": "phone", "value": "+221700000000"}],
        },
        "profile": profile(),
        "needs": needs(),
        "consent": consent(),
    }
    data.update(overrides)
    return ev.CaseSubmission.model_validate(data)


def sealed_personal(personal: Any, public_key: bytes) -> dict[str, str]:
    """A ``personal`` block sealed for a submission key (issue 22), as an agency seals it: a
    libsodium sealed box of the block's JSON, named by the SHA-256 of the raw public key."""
    document = personal if isinstance(personal, dict) else personal.model_dump(mode="json")
    box = SealedBox(PublicKey(public_key)).encrypt(json.dumps(document).encode())
    return {
        "sealed_box": base64.b64encode(box).decode(),
        "key_sha256": hashlib.sha256(public_key).hexdigest(),
    }


def needs(category: str = "psychosocial.counselling") -> list[dict[str, str]]:
    return [{"need_id": "n1", "category": category}]


def unique_area(country: str = "SN") -> str:
    """A district code no other test uses: tests cannot match each other's listings."""
    return f"{country}{uuid.uuid4().int % 10**8:08d}"


def profile(**overrides: Any) -> dict[str, Any]:
    return {
        "sex": "female",
        "age_band": "25-34",
        "nationality": "SN",
        "return_country": "SN",
        "return_date": "2026-10-28",
        "return_type": "voluntary_assisted",
        "return_area": "SN0101",
        "languages": ["fr", "wo"],
        **overrides,
    }


def consent(**overrides: Any) -> dict[str, Any]:
    return {
        "given": True,
        "scope": {"purposes": ["referral", "follow_up"]},
        "recorded_at": "2026-10-29T09:30:00Z",
        "method": "written",
        **overrides,
    }


def listing(agency_id: str, **overrides: Any) -> ev.ServiceListing:
    data: dict[str, Any] = {
        "service_id": unique("svc"),
        "agency_id": agency_id,
        "name": "Counselling",
        "categories": ["psychosocial.counselling"],
        "service_areas": ["SN01"],
        "languages": ["fr"],
        "assured_date": "2026-11-01",
    }
    data.update(overrides)
    return ev.ServiceListing.model_validate(data)


def agency(agency_id: str, type_: ev.AgencyType = ev.AgencyType.NGO) -> ev.AgencyRecord:
    return ev.AgencyRecord(agency_id=agency_id, name=agency_id, type=type_, countries=["SN"])


# The same builders the CLI uses: tests send exactly what an agency's client would.
submission_event = messages.submission_message
listing_event = messages.listing_message
agency_event = messages.agency_message


def record(
    topic: str,
    value: bytes | None,
    headers: list[tuple[str, bytes]] | None = None,
    key: bytes | None = b"k",
    offset: int = 0,
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value or b""),
        headers=headers or [],
    )


def record_of(event: OutgoingEvent, offset: int = 0) -> ConsumerRecord[bytes, bytes]:
    headers = [(k, v.encode()) for k, v in event.headers.items()]
    return record(event.topic, event.body, headers, event.key.encode(), offset)


def assessment(
    agency_id: str, case_id: str, wave: str, answers: list[tuple[str, str]], **overrides: Any
) -> ev.AssessmentSubmission:
    """An owner's assessment of its case, answered ``(indicator, option code)`` by indicator."""
    return ev.AssessmentSubmission.model_validate(
        {
            "agency_id": agency_id,
            "case_id": case_id,
            "wave": wave,
            "assessed_on": date.today().isoformat(),
            "answers": [{"indicator": i, "answer": a} for i, a in answers],
            **overrides,
        }
    )


def answers_scoring(position: int) -> list[tuple[str, str]]:
    """rss-v1's indicators each answered with the option at ``position`` of its scale (0: the
    best; past the end: the worst)."""
    indicators = INDICATOR_SETS["rss-v1"].indicators
    return [(i.id, i.scale[min(position, len(i.scale) - 1)].code) for i in indicators]


assessment_event = messages.assessment_message
