"""What each of an agency's own topics carries (type → contract, and the key of each type), and
turning a raw record of it into a valid message or a refusal (shared.kafka.agency_input words
and bounds refusals for every agency topic).

Shared because two readers apply the same rules: the consuming service (intake reads the
submissions, referral the listings and responses) and the gateway, which answers an HTTP sender
synchronously with the same refusal before anything is published (issue 20).

Pure functions: no database, no Kafka. Refusals name each bad field and never echo its value.
"""

from __future__ import annotations

from dataclasses import replace

from shared.contracts import events as ev
from shared.contracts import topics
from shared.kafka.agency_input import Refusal, read_agency_message
from shared.kafka.inbound import InboundEvent

Submission = (
    ev.CaseSubmission
    | ev.CaseUpdate
    | ev.ConsentWithdrawal
    | ev.ErasureRequest
    | ev.CaseClosure
    | ev.AssistanceEnd
    | ev.CommunityNeedSubmission
    | ev.ErasureConfirmation
    | ev.AssessmentSubmission
)
SUBMISSION_MODELS: dict[str, type[Submission]] = {
    ev.CASE_SUBMITTED: ev.CaseSubmission,
    ev.CASE_UPDATE_SUBMITTED: ev.CaseUpdate,
    ev.CONSENT_WITHDRAWN: ev.ConsentWithdrawal,
    ev.ERASURE_REQUESTED: ev.ErasureRequest,
    ev.CASE_CLOSURE_SUBMITTED: ev.CaseClosure,
    ev.ASSISTANCE_END_SUBMITTED: ev.AssistanceEnd,
    ev.COMMUNITY_NEED_SUBMITTED: ev.CommunityNeedSubmission,
    ev.ERASURE_CONFIRMATION_SUBMITTED: ev.ErasureConfirmation,
    ev.ASSESSMENT_SUBMITTED: ev.AssessmentSubmission,
}
# The key of each type: a case's messages under its agency_case_ref; a recipient's erasure
# confirmation under the referral_id (it knows no agency_case_ref of the case); an owner's
# follow-up assessment under the case_id (issue 19).
_KEYS = {ev.ERASURE_CONFIRMATION_SUBMITTED: "referral_id", ev.ASSESSMENT_SUBMITTED: "case_id"}
MAX_SUBMISSION_BYTES = topics.AGENCY_SUBMISSIONS.template.max_message_bytes


def read_submission(event: InboundEvent) -> Submission | Refusal:
    """The validated submission, or the refusal to send back to the agency.

    The sender is the agency whose own topic carried the message (the proof of sender); a
    message that claims any other agency, in ``ce_agencyid`` or in the body, is refused. The
    key must be the ``agency_case_ref``: a case's messages keep their order only under one key
    (an erasure confirmation's, the ``referral_id``).
    """
    claimed = event.attributes.type if event.attributes is not None else None
    result = read_agency_message(event, SUBMISSION_MODELS, key_field=key_field(claimed))
    if isinstance(result, Refusal) and claimed == ev.COMMUNITY_NEED_SUBMITTED:
        return _no_personal_data(result)
    return result


def key_field(ce_type: str | None) -> str:
    """The payload field a submission of this type is keyed by."""
    return _KEYS.get(ce_type or "", "agency_case_ref")


NO_PERSONAL_DATA = "a community need holds no personal data: leave this field out"


def _no_personal_data(refused: Refusal) -> Refusal:
    """A community need refused for carrying personal fields says so, field by field (issue
    18): the contract has no such field, and it is not a case submission sent by mistake."""
    personal = frozenset(ev.PERSONAL_FIELDS)
    errors = [
        ev.FieldError(field=e.field, message=NO_PERSONAL_DATA)
        if e.field.split(".")[0] in personal
        else e
        for e in refused.errors
    ]
    if errors == refused.errors:
        return refused
    named = sorted({e.field for e in errors if e.message == NO_PERSONAL_DATA})
    reason = "a community need holds no personal data (" + ", ".join(named) + ")"
    return replace(refused, reason=reason[:500], errors=errors)


# ----- agency.<id>.listings.v1 and agency.<id>.responses.v1 (read by referral) -----

LISTING_MODELS: dict[str, type[ev.ServiceListing]] = {ev.SERVICE_LISTED: ev.ServiceListing}
LISTING_KEY = "service_id"
RESPONSE_MODELS: dict[str, type[ev.Contract]] = {ev.RESPONSE_SUBMITTED: ev.ReferralResponse}
HANDOVER_MODELS: dict[str, type[ev.Contract]] = {
    ev.HANDOVER_PROPOSAL_SUBMITTED: ev.HandoverProposal,
    ev.HANDOVER_REQUEST_SUBMITTED: ev.HandoverRequest,
    ev.HANDOVER_ANSWER_SUBMITTED: ev.HandoverAnswer,
}
STRUCTURAL_MODELS: dict[str, type[ev.Contract]] = {
    ev.STRUCTURAL_COMMITMENT_SUBMITTED: ev.StructuralCommitment,
}
# Issue 18: the referring agency's instructions on its case's needs.
INSTRUCTION_MODELS: dict[str, type[ev.Contract]] = {
    ev.REFERRER_INSTRUCTION_SUBMITTED: ev.ReferrerInstruction
}
# What an agency's responses topic carries: its answers to referrals, its handovers, its
# instructions as a referrer, and a government agency's commitments on structural gaps.
ANSWER_MODELS: dict[str, type[ev.Contract]] = {
    **RESPONSE_MODELS,
    **HANDOVER_MODELS,
    **INSTRUCTION_MODELS,
    **STRUCTURAL_MODELS,
}


def read_listing(event: InboundEvent) -> ev.ServiceListing | Refusal:
    return read_agency_message(event, LISTING_MODELS, key_field=LISTING_KEY)


def read_answer(event: InboundEvent) -> ev.Contract | Refusal:
    return read_agency_message(event, ANSWER_MODELS)
