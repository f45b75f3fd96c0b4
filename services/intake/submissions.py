"""Turning a raw ``agency.<id>.submissions.v1`` record into a valid submission or a rejection.

Pure functions: no database, no Kafka. Rejections name each bad field and never echo its value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import ValidationError

from shared.contracts import events as ev
from shared.contracts import topics
from shared.kafka.inbound import InboundEvent

Submission = (
    ev.CaseSubmission | ev.CaseUpdate | ev.ConsentWithdrawal | ev.ErasureRequest | ev.CaseClosure
)
SUBMISSION_MODELS: dict[str, type[Submission]] = {
    ev.CASE_SUBMITTED: ev.CaseSubmission,
    ev.CASE_UPDATE_SUBMITTED: ev.CaseUpdate,
    ev.CONSENT_WITHDRAWN: ev.ConsentWithdrawal,
    ev.ERASURE_REQUESTED: ev.ErasureRequest,
    ev.CASE_CLOSURE_SUBMITTED: ev.CaseClosure,
}
MAX_SUBMISSION_BYTES = topics.AGENCY_SUBMISSIONS.template.max_message_bytes


@dataclass(frozen=True, slots=True)
class Rejection:
    submission_id: str
    agency_id: str | None
    topic: str
    reason: str
    errors: list[ev.FieldError]

    def payload(self) -> ev.SubmissionRejected:
        return ev.SubmissionRejected(
            submission_id=self.submission_id,
            agency_id=self.agency_id,
            topic=self.topic,
            reason=self.reason,
            errors=self.errors,
        )


def _field_errors(exc: ValidationError) -> list[ev.FieldError]:
    return [
        ev.FieldError(field=".".join(str(p) for p in e["loc"]) or "(root)", message=e["msg"])
        for e in exc.errors()
    ]


def read_submission(event: InboundEvent) -> Submission | Rejection:
    """The validated submission, or the rejection to send back to the agency.

    The sender is the agency whose own topic carried the message (the proof of sender); a
    message that claims any other agency, in ``ce_agencyid`` or in the body, is rejected.
    """
    sender = event.sender_agency

    def reject(reason: str, errors: list[ev.FieldError] | None = None) -> Rejection:
        return Rejection(event.event_id, sender, event.topic, reason, errors or [])

    size = len(event.value or b"")
    if size > MAX_SUBMISSION_BYTES:  # before any parsing
        return reject(f"message of {size} bytes exceeds the limit of {MAX_SUBMISSION_BYTES}")
    if event.envelope_error is not None or event.attributes is None:
        errors = [
            ev.FieldError(field=f, message=m)
            for f, m in (event.envelope_error.errors if event.envelope_error else [])
        ]
        return reject("invalid CloudEvents envelope", errors)
    claimed = event.attributes.agencyid
    if claimed is not None and claimed != sender:
        return reject(
            "ce_agencyid claims another agency than the topic it was published on",
            [ev.FieldError(field="ce_agencyid", message="must be the agency of the topic")],
        )
    model = SUBMISSION_MODELS.get(event.attributes.type)
    if model is None:
        return reject(
            "unknown ce_type for this topic; expected one of " + ", ".join(SUBMISSION_MODELS),
            [ev.FieldError(field="ce_type", message="not a submission type")],
        )
    try:
        document = json.loads(event.value or b"")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return reject(f"body is not valid JSON ({type(exc).__name__})")
    try:
        submission = model.model_validate(document)
    except ValidationError as exc:
        return reject(f"body does not match the {model.__name__} contract", _field_errors(exc))
    if submission.agency_id != sender:
        return reject(
            "agency_id in the body is not the agency of the topic it was published on",
            [ev.FieldError(field="agency_id", message="must be the agency of the topic")],
        )
    return submission
