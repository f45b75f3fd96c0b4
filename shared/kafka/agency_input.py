"""Turning a raw record of an agency's own inbound topic into a valid payload or a refusal.

Every message an agency writes is answered on its inbox: what cannot be applied is refused with
a reason and one entry per bad field, so the sender can fix it (dead letters are only for what
no agency can be told about). Intake (submissions) and referral (listings, responses) read
their agencies' messages through :func:`read_agency_message`, so every refusal is worded and
bounded the same way. Pure functions: no database, no Kafka. Refusals never echo a value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from shared.contracts import events as ev
from shared.kafka.inbound import InboundEvent, load_json

M = TypeVar("M", bound=BaseModel)

# What a refusal can carry (ev.SubmissionRejected, ev.FieldError).
MAX_FIELD_ERRORS = 200
_MAX_FIELD_CHARS = 300
_MAX_MESSAGE_CHARS = 500
_MAX_PART_CHARS = 64
_SAFE_PART = re.compile(rf"[A-Za-z0-9_.:@$-]{{1,{_MAX_PART_CHARS}}}")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a message of an agency's own topic cannot be applied."""

    message_id: str  # the ce_id; a record without a valid envelope: topic/partition/offset
    agency_id: str | None
    topic: str
    reason: str
    errors: list[ev.FieldError]
    code: ev.SubmissionError | None = None  # the rejection's ``error``, where it has one

    def as_rejection(self) -> ev.SubmissionRejected:
        return ev.SubmissionRejected(
            submission_id=self.message_id,
            agency_id=self.agency_id,
            topic=self.topic,
            reason=self.reason,
            errors=self.errors,
            error=self.code,
        )


def refusal(event: InboundEvent, reason: str, field: str | None = None) -> Refusal:
    """A refusal of ``event`` for one reason (naming ``field`` when one field is to blame)."""
    errors = [ev.FieldError(field=field, message=reason)] if field else []
    return Refusal(event.event_id, event.sender_agency, event.topic, reason, errors)


def _path_part(part: str | int) -> str:
    """A step of a field path. Unknown keys are the sender's input: shown only when short and
    plain, so no control character, odd text or long value travels back or into the database."""
    text = str(part)
    return text if _SAFE_PART.fullmatch(text) else "(unexpected key)"


def field_errors(exc: ValidationError) -> list[ev.FieldError]:
    """One entry per invalid field (its dotted path and what is expected), at most
    :data:`MAX_FIELD_ERRORS`; pydantic's copy of the input is dropped."""
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


def read_agency_message(
    event: InboundEvent,
    models: Mapping[str, type[M]],
    *,
    key_field: str | None = None,
) -> M | Refusal:
    """The message's payload validated by the model of its ``ce_type``, or why not.

    Checked in this order, before anything is parsed that need not be: the size (the topic's
    limit, key, value and headers together), the CloudEvents envelope, a ``ce_agencyid`` that
    names another agency, the type, the JSON, the contract, an ``agency_id`` in the body that is
    not the agency of the topic (the topic is the proof of sender), and the key (it must be the
    payload's ``key_field``: the key decides the partition and so the order of a record's
    messages).
    """
    sender = event.sender_agency

    def refuse(reason: str, errors: list[ev.FieldError] | None = None) -> Refusal:
        return Refusal(event.event_id, sender, event.topic, reason, errors or [])

    if event.too_large:
        return refuse(f"message of {event.size} bytes exceeds the limit of {event.max_bytes}")
    if event.envelope_error is not None or event.attributes is None:
        errors = [
            ev.FieldError(field=f, message=m)
            for f, m in (event.envelope_error.errors if event.envelope_error else [])
        ]
        return refuse("invalid CloudEvents envelope", errors)
    claimed = event.attributes.agencyid
    if claimed is not None and claimed != sender:
        return refuse(
            "ce_agencyid claims another agency than the topic it was published on",
            [ev.FieldError(field="ce_agencyid", message="must be the agency of the topic")],
        )
    model = models.get(event.attributes.type)
    if model is None:
        return refuse(
            # Named without their common prefix: the full list must fit a rejection's reason.
            "unknown ce_type for this topic; expected one of org.referralexchange."
            + ", ".join(t.removeprefix("org.referralexchange.") for t in models),
            [ev.FieldError(field="ce_type", message="not a type this topic carries")],
        )
    try:
        document = load_json(event.value or b"")
    except ValueError as exc:
        return refuse(f"body is not valid JSON ({type(exc).__name__})")
    try:
        payload = model.model_validate(document)
    except ValidationError as exc:
        return refuse(f"body does not match the {model.__name__} contract", field_errors(exc))
    if getattr(payload, "agency_id", sender) != sender:
        return refuse(
            "agency_id in the body is not the agency of the topic it was published on",
            [ev.FieldError(field="agency_id", message="must be the agency of the topic")],
        )
    if key_field is not None and event.key_text != getattr(payload, key_field):
        return refuse(
            f"the message key is not the {key_field}",
            [ev.FieldError(field="(key)", message=f"must be the {key_field}")],
        )
    return payload
