"""How the inbound and registry messages are built: topic, key, type, source and headers of a
case submission, a service listing and an agency record. Used by the CLI, the demo and tests,
and the reference for what an integrator's own client must send."""

from __future__ import annotations

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import OutgoingEvent, build_event

OPERATOR_SOURCE = "urn:referralexchange:operator"


def agency_source(agency_id: str) -> str:
    return f"urn:referralexchange:agency:{agency_id}"


def submission_message(submission: ev.CaseSubmission) -> OutgoingEvent:
    return build_event(
        topic=topics.AGENCY_SUBMISSIONS.name(submission.agency_id),
        key=submission.agency_case_ref,
        type_=ev.CASE_SUBMITTED,
        source=agency_source(submission.agency_id),
        subject=submission.agency_case_ref,
        data=submission,
        agency_id=submission.agency_id,
    )


def listing_message(listing: ev.ServiceListing) -> OutgoingEvent:
    return build_event(
        topic=topics.AGENCY_LISTINGS.name(listing.agency_id),
        key=listing.service_id,
        type_=ev.SERVICE_LISTED,
        source=agency_source(listing.agency_id),
        subject=listing.service_id,
        data=listing,
        agency_id=listing.agency_id,
    )


def agency_message(agency: ev.AgencyRecord) -> OutgoingEvent:
    return build_event(
        topic=topics.DIRECTORY_AGENCIES,
        key=agency.agency_id,
        type_=ev.AGENCY_REGISTERED,
        source=OPERATOR_SOURCE,
        subject=agency.agency_id,
        data=agency,
    )


def response_message(response: ev.ReferralResponse, case_id: str) -> OutgoingEvent:
    return build_event(
        topic=topics.AGENCY_RESPONSES.name(response.agency_id),
        key=case_id,
        type_=ev.RESPONSE_SUBMITTED,
        source=agency_source(response.agency_id),
        subject=response.referral_id,
        data=response,
        agency_id=response.agency_id,
    )


def instruction_message(instruction: ev.ReferrerInstruction) -> OutgoingEvent:
    """A referrer instruction on its sender's responses topic, keyed by the case (issue 18)."""
    return build_event(
        topic=topics.AGENCY_RESPONSES.name(instruction.agency_id),
        key=instruction.case_id,
        type_=ev.REFERRER_INSTRUCTION_SUBMITTED,
        source=agency_source(instruction.agency_id),
        data=instruction,
        agency_id=instruction.agency_id,
    )


def assessment_message(assessment: ev.AssessmentSubmission) -> OutgoingEvent:
    """An owner's follow-up assessment on its submissions topic, keyed by the case (issue 19)."""
    return build_event(
        topic=topics.AGENCY_SUBMISSIONS.name(assessment.agency_id),
        key=assessment.case_id,
        type_=ev.ASSESSMENT_SUBMITTED,
        source=agency_source(assessment.agency_id),
        data=assessment,
        agency_id=assessment.agency_id,
    )
