"""A case as intake keeps it: its pseudonymous blocks, as the store reads them (store.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.contracts import events as ev


@dataclass(frozen=True, slots=True)
class CaseRow:
    case_id: str
    agency_id: str
    agency_case_ref: str
    status: str
    profile: ev.Profile
    needs: list[ev.Need]
    consent: ev.Consent
    consent_version: int
    # The owner's own assistance ended (the case stays open under it); None while it runs,
    # and again once the case changes hands.
    assistance_ended_at: datetime | None = None
    assistance_end_reason: str | None = None

    def pseudonymous(self, duplicates: list[str]) -> ev.CaseRegistered:
        return ev.CaseRegistered(
            case_id=self.case_id,
            submitting_agency_id=self.agency_id,
            profile=self.profile,
            needs=self.needs,
            consent=self.consent,
            possible_duplicate_of=duplicates,
        )


def case_row(record: Any) -> CaseRow:
    """A ``cases`` row (the store's columns) as a CaseRow."""
    return CaseRow(
        case_id=str(record["case_id"]),
        agency_id=record["agency_id"],
        agency_case_ref=record["agency_case_ref"],
        status=record["status"],
        profile=ev.Profile.model_validate_json(record["profile"]),
        needs=[ev.Need.model_validate(n) for n in json.loads(record["needs"])],
        consent=ev.Consent.model_validate_json(record["consent"]),
        consent_version=record["consent_version"],
        assistance_ended_at=record["assistance_ended_at"],
        assistance_end_reason=record["assistance_end_reason"],
    )


def needs_json(needs: list[ev.Need]) -> str:
    return json.dumps([n.model_dump(mode="json") for n in needs])
