"""The console's case form: what a caseworker typed, as the ``CaseSubmission`` its agency's
system would have sent. Pure: the form's fields in, the submission's JSON out (intake's rules,
applied by ingress.check, say what is wrong with it, field by field)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.contracts import events as ev
from shared.contracts.taxonomy import TAXONOMY, ReturnType, Urgency

MAX_FORM_NEEDS = 3  # the form offers three; a system may send more
# The contract's phone shape, for the browser's own check (an HTML pattern is a JavaScript
# regular expression in "v" mode: the hyphen is escaped).
PHONE_INPUT_PATTERN = r"\+?[0-9]+(?:[ \-][0-9]+)*"
SEXES = [s.value for s in ev.Sex]
AGE_BANDS = [a.value for a in ev.AgeBand]
RETURN_TYPES = [r.value for r in ReturnType]
PURPOSES = [p.value for p in ev.ConsentPurpose]
METHODS = ["written", "verbal", "digital"]
URGENCIES = [u.value for u in Urgency]
HANDOVER_REASONS = [r.value for r in ev.HandoverReason]
DECLINE_REASONS = [r.value for r in ev.HandoverDeclineReason]
# The answer a handover offer waits for, unless the caseworker gives another date.
HANDOVER_ANSWER_DAYS = 14


def categories() -> list[str]:
    return sorted(TAXONOMY.categories)


def _text(form: Mapping[str, Any], name: str) -> str:
    return str(form.get(name, "")).strip()


def case_submission(
    agency_id: str, form: Mapping[str, Any], purposes: list[str], now: datetime
) -> dict[str, Any]:
    """The submission of the form's fields (left-out optional fields are left out; a field
    left empty that the contract requires is refused by intake's rules, with its name)."""
    contacts = []
    if _text(form, "phone"):
        contacts.append({"kind": "phone", "value": _text(form, "phone")})
    if _text(form, "email"):
        contacts.append({"kind": "email", "value": _text(form, "email")})
    needs = [
        {"need_id": f"n{i}", "category": _text(form, f"need_{i}")}
        for i in range(1, MAX_FORM_NEEDS + 1)
        if _text(form, f"need_{i}")
    ]
    languages = [code for code in _text(form, "languages").replace(",", " ").split() if code]
    given = bool(purposes)
    return {
        "agency_id": agency_id,
        "agency_case_ref": _text(form, "agency_case_ref"),
        "personal": {
            "given_name": _text(form, "given_name"),
            "family_name": _text(form, "family_name"),
            "contacts": contacts,
        },
        "profile": {
            "sex": _text(form, "sex"),
            "age_band": _text(form, "age_band") or None,
            "nationality": _text(form, "nationality").upper(),
            "return_country": _text(form, "return_country").upper(),
            "return_date": _text(form, "return_date"),
            "return_type": _text(form, "return_type"),
            "return_area": _text(form, "return_area").upper(),
            "languages": languages,
        },
        "needs": needs,
        "consent": {
            "given": given,
            "scope": {"purposes": purposes} if given else None,
            "recorded_at": now.astimezone(UTC).isoformat(),
            "method": _text(form, "consent_method"),
        },
    }


def needs_update(agency_id: str, agency_case_ref: str, form: Mapping[str, Any]) -> dict[str, Any]:
    """A ``case-update-submitted`` whose needs block is the form's rows (a row without a
    category is left out). The block replaces the case's needs: a need kept under its id keeps
    its referrals, a new id is routed, a need left out is no longer the case's."""
    needs = []
    for i in range(1, MAX_FORM_NEEDS + 1):
        category = _text(form, f"need_{i}")
        if not category:
            continue
        need: dict[str, Any] = {"need_id": _text(form, f"need_id_{i}") or f"n{i}"}
        need["category"] = category
        if _text(form, f"urgency_{i}"):
            need["urgency"] = _text(form, f"urgency_{i}")
        needs.append(need)
    # No row at all: an empty block, which intake's rules refuse with its field (needs).
    return {"agency_id": agency_id, "agency_case_ref": agency_case_ref, "needs": needs}


def handover_proposal(
    agency_id: str, case_id: str, form: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    """A ``handover-proposal-submitted`` offering the case to the agency the form names, to be
    answered by the end of the chosen day (UTC), or in HANDOVER_ANSWER_DAYS days."""
    day = _text(form, "respond_by")
    respond_by = (
        f"{day}T23:59:59+00:00"
        if day
        else (now + timedelta(days=HANDOVER_ANSWER_DAYS)).astimezone(UTC).isoformat()
    )
    return {
        "case_id": case_id,
        "agency_id": agency_id,
        "to_agency_id": _text(form, "to_agency_id"),
        "reason": _text(form, "reason"),
        "respond_by": respond_by,
    }


def handover_answer(
    agency_id: str, handover: Mapping[str, Any], form: Mapping[str, Any]
) -> dict[str, Any]:
    """A ``handover-answer-submitted``: accept under the reference the form gives, or reject
    with its reason."""
    action = _text(form, "action")
    answer: dict[str, Any] = {
        "handover_id": handover["handover_id"],
        "case_id": handover["case_id"],
        "agency_id": agency_id,
        "action": action,
    }
    if action == ev.HandoverAction.ACCEPT and _text(form, "agency_case_ref"):
        answer["agency_case_ref"] = _text(form, "agency_case_ref")
    if action == ev.HandoverAction.REJECT:
        answer["reason"] = _text(form, "reason")
    return answer
