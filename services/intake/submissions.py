"""Turning a raw ``agency.<id>.submissions.v1`` record into a valid submission or a rejection.

Pure functions: no database, no Kafka. Rejections name each bad field and never echo its value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import ValidationError

from shared.contracts import events as ev
from shared.contracts import topics
from shared.kafka.inbound import InboundEvent, load_json

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


# What a rejection can carry (ev.SubmissionRejected, ev.FieldError).
MAX_FIELD_ERRORS = 200
_MAX_FIELD_CHARS = 300
_MAX_MESSAGE_CHARS = 500
_MAX_PART_CHARS = 64
_SAFE_PART = re.compile(rf"[A-Za-z0-9_.:@$-]{{1,{_MAX_PART_CHARS}}}")


def _path_part(part: str | int) -> str:
    """A step of a field path. Unknown keys are the sender's input: shown only when short and
    plain, so no control character, odd text or long value travels back or into the database."""
    text = str(part)
    return text if _SAFE_PART.fullmatch(text) else "(unexpected key)"


def _field_errors(exc: ValidationError) -> list[ev.FieldError]:
    errors = [
        ev.FieldError(
            field=(".".join(_path_part(p) for p in e["loc"]) or "(root)")[:_MAX_FIELD_CHARS],
            message=e["msg"][:_MAX_MESSAGE_CHARS],
        )
        for e in exc.errors(include_url=False, include_input=False)
    ]
    if len(errors) > MAX_FIELD_ERRORS:
        more = len(errors) - (MAX_FIELD_ERRORS - 1)
        errors = [
            *errors[: MAX_FIELD_ERRORS - 1],
            ev.FieldError(field="(more)", message=f"{more} more errors not listed"),
        ]
    return errors


def read_submission(event: InboundEvent) -> Submission | Rejection:
    """The validated submission, or the rejection to send back to the agency.

    The sender is the agency whose own topic carried the message (the proof of sender); a
    message that claims any other agency, in ``ce_agencyid`` or in the body, is rejected.
    """
    sender = event.sender_agency

    def reject(reason: str, errors: list[ev.FieldError] | None = None) -> Rejection:
        return Rejection(event.event_id, sender, event.topic, reason, errors or [])

    size = event.size  # key, value and headers
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
        document = load_json(event.value or b"")
    except ValueError as exc:
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
    if event.key_text != submission.agency_case_ref:
        # The key decides the partition: a case's messages keep their order only under one key.
        return reject(
            "the message key is not the agency_case_ref",
            [ev.FieldError(field="(key)", message="must be the agency_case_ref")],
        )
    return submission
