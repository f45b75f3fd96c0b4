"""Community needs (issue 18, decision 17): what an agency reports of a community, as intake
keeps it, announces it (pseudonymous: no description) and seals it to a referral's provider.
Pure: the store reads and writes the rows, the handlers orchestrate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.contracts import events as ev
from shared.contracts.taxonomy import TAXONOMY, Level, Urgency

from . import crypto

# A community need is one need: the events name it by this id (the community need's own id is
# the case_id), so a resubmission updates the same need instead of adding one.
NEED_ID = "community"


@dataclass(frozen=True, slots=True)
class CommunityNeedRow:
    """A community need as intake keeps it (the description stays encrypted in the store)."""

    need_id: str  # the case_id of its events
    agency_id: str
    agency_case_ref: str
    status: str  # open, closed or erased
    area: str
    category: str
    urgency: Urgency
    people_affected: int
    returnee_share: float
    submitted_at: datetime

    def registered(self) -> ev.CommunityNeedRegistered:
        """The event referral routes it from: the counts and the need, no description."""
        return ev.CommunityNeedRegistered(
            case_id=self.need_id,
            submitting_agency_id=self.agency_id,
            area=self.area,
            need=ev.Need(
                need_id=NEED_ID,
                category=self.category,
                dimension=TAXONOMY.dimension_of(self.category),
                level=Level.COMMUNITY,
                urgency=self.urgency,
            ),
            people_affected=self.people_affected,
            returnee_share=self.returnee_share,
        )


def refusal(submission: ev.CommunityNeedSubmission, row: CommunityNeedRow | None) -> str | None:
    """Why a (re)submission cannot be applied, or None."""
    if row is not None and row.status != "open":
        return f"the community need is {row.status}; submit it under a new agency_case_ref"
    return None


def disclosure_refusal(
    row: CommunityNeedRow, recipient: ev.AgencyType | None, public_key: str | None
) -> ev.DisclosureRefusalReason | None:
    """Whether a community need's brief may go to a referral's recipient: no consent applies
    (no person), but the need must be open and the recipient registered with a key."""
    if row.status != "open":
        return ev.DisclosureRefusalReason.CASE_NOT_OPEN
    if recipient is None:
        return ev.DisclosureRefusalReason.UNKNOWN_AGENCY
    if not public_key:
        return ev.DisclosureRefusalReason.NO_PUBLIC_KEY
    return None


def sealed(
    referral: ev.ReferralRequested,
    row: CommunityNeedRow,
    description: str,
    public_key: str,
    disclosure_id: str,
) -> ev.DisclosureSealed:
    """The community need's brief, sealed so that only the holder of ``public_key`` reads it."""
    brief = ev.CommunityNeedBrief(
        case_id=row.need_id,
        agency_case_ref=row.agency_case_ref,
        area=row.area,
        category=row.category,
        people_affected=row.people_affected,
        returnee_share=row.returnee_share,
        description=description,
    )
    return ev.DisclosureSealed(
        disclosure_id=disclosure_id,
        referral_id=referral.referral_id,
        case_id=referral.case_id,
        recipient_agency_id=referral.recipient_agency_id,
        sealed_box=crypto.seal_for(public_key, brief.model_dump_json().encode()),
        recipient_key_sha256=crypto.key_fingerprint(public_key),
        consent_recorded_at=row.submitted_at,
        content="community_need",
    )
