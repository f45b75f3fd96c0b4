"""Continuity on intake's side (decision 16), on the in-memory store of
tests/unit/test_intake_handlers.py: the owner's assistance ending, a closure that keeps the open
referrals, and a case handed over — what intake checks before it moves a case, what it
publishes, and what a former owner is told. The same moves on the real PostgreSQL, in batches:
tests/integration/test_intake_continuity.py."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox

from services.intake import crypto, handovers
from services.intake.cases import CaseRow
from services.intake.disclosures import Recipient
from services.intake.handlers import SOURCE
from services.intake.store import FormerOwner
from shared.contracts import events as ev
from shared.contracts import messages, topics
from shared.contracts.envelope import build_event
from shared.kafka.inbound import InboundEvent
from shared.unit import Cause, Unit
from tests import factories as f
from tests.unit.test_intake_handlers import (
    AGENCY,
    HANDLERS,
    FakeIntakeStore,
    _body,
    _person,
    _provider,
    _register,
    _sent,
    _submit,
)

MINISTRY, PROGRAMME = "ministry-labour-sn", "dev-programme-sn"
HANDOVER_EVENT = "handover-event-1"  # the ce_id of the referral event intake acts on


def _past(seconds: int = 60) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


# ----- what an agency sends -----


def _sent_by(agency: str, type_: str, payload: Any) -> InboundEvent:
    """A message of ``agency`` on its own submissions topic, keyed by its case reference."""
    ref = payload.agency_case_ref
    return InboundEvent.from_record(
        f.record_of(
            build_event(
                topic=topics.AGENCY_SUBMISSIONS.name(agency),
                key=ref,
                type_=type_,
                source=messages.agency_source(agency),
                subject=ref,
                data=payload,
                agency_id=agency,
            )
        )
    )


def _end(
    ref: str,
    agency: str = AGENCY,
    reason: ev.AssistanceEndReason = ev.AssistanceEndReason.PROGRAMME_ENDED,
) -> InboundEvent:
    end = ev.AssistanceEnd(agency_id=agency, agency_case_ref=ref, ended_at=_past(), reason=reason)
    return _sent_by(agency, ev.ASSISTANCE_END_SUBMITTED, end)


def _update(ref: str, agency: str = AGENCY, **blocks: Any) -> InboundEvent:
    update = ev.CaseUpdate.model_validate({"agency_id": agency, "agency_case_ref": ref, **blocks})
    return _sent_by(agency, ev.CASE_UPDATE_SUBMITTED, update)


def _withdrawal(ref: str, agency: str = AGENCY) -> InboundEvent:
    withdrawal = ev.ConsentWithdrawal(agency_id=agency, agency_case_ref=ref, withdrawn_at=_past())
    return _sent_by(agency, ev.CONSENT_WITHDRAWN, withdrawal)


def _erasure(ref: str, agency: str = AGENCY) -> InboundEvent:
    erasure = ev.ErasureRequest(
        agency_id=agency, agency_case_ref=ref, requested_at=_past(), basis="data_subject_request"
    )
    return _sent_by(agency, ev.ERASURE_REQUESTED, erasure)


def _closure(
    ref: str,
    agency: str = AGENCY,
    open_referrals: ev.OpenReferralsOnClosure = ev.OpenReferralsOnClosure.CANCEL,
) -> InboundEvent:
    closure = ev.CaseClosure(
        agency_id=agency,
        agency_case_ref=ref,
        closed_at=_past(),
        reason=ev.ClosureReason.COMPLETED,
        open_referrals=open_referrals,
    )
    return _sent_by(agency, ev.CASE_CLOSURE_SUBMITTED, closure)


def _resubmitted(ref: str, agency: str = AGENCY) -> InboundEvent:
    submission = f.submission(agency, agency_case_ref=ref)
    return InboundEvent.from_record(f.record_of(messages.submission_message(submission)))


# ----- what referral publishes -----


def _accepted(row: CaseRow, **overrides: Any) -> ev.HandoverAccepted:
    return ev.HandoverAccepted.model_validate(
        {
            "handover_id": str(uuid.uuid4()),
            "case_id": row.case_id,
            "owner_agency_id": row.agency_id,
            "receiving_agency_id": MINISTRY,
            "receiving_case_ref": f.unique("MIN"),
            **overrides,
        }
    )


def _unit(store: FakeIntakeStore, ce_type: str) -> Unit[Any]:
    cause = Cause("conversation-1", HANDOVER_EVENT, ce_type)
    return Unit(None, store, SOURCE, cause)  # type: ignore[arg-type]


async def _accept(store: FakeIntakeStore, accepted: ev.HandoverAccepted) -> Unit[Any]:
    unit = _unit(store, ev.HANDOVER_ACCEPTED)
    await HANDLERS.on_handover_accepted(accepted, unit)
    return unit


async def _ministry(store: FakeIntakeStore, **kwargs: Any) -> PrivateKey:
    return await _provider(
        store, kwargs.pop("type_", ev.AgencyType.GOVERNMENT), agency_id=MINISTRY, **kwargs
    )


def _snapshot(store: FakeIntakeStore) -> tuple[Any, ...]:
    return (
        dict(store.cases),
        dict(store.personal),
        dict(store.former),
        list(store.consent_records),
        dict(store.handover_log),
        dict(store.disclosures),
    )


def _refused_with(unit: Unit[Any], reason: str) -> None:
    assert _sent(unit) == [(topics.INTAKE_REJECTIONS, ev.SUBMISSION_REJECTED, AGENCY)]
    rejected = _body(unit, 0)
    assert rejected["reason"] == reason
    assert [(e["field"], e["message"]) for e in rejected["errors"]] == [("agency_case_ref", reason)]


# ----- the end of the owner's assistance -----


async def test_the_owner_ends_its_assistance_and_the_case_stays_open_under_it() -> None:
    store = FakeIntakeStore()
    row = await _register(store, personal=_person())
    event = _end(row.agency_case_ref, reason=ev.AssistanceEndReason.BUDGET_ENDED)

    unit = await _submit(store, event)

    assert _sent(unit) == [
        (topics.INTAKE_CASES, ev.ASSISTANCE_ENDED, row.case_id),
        (topics.INTAKE_CASES, ev.SUBMISSION_ACCEPTED, row.case_id),
    ]
    sent = ev.AssistanceEnd.model_validate_json(event.value or b"")
    ended = _body(unit, 0)
    assert (ended["case_id"], ended["owner_agency_id"], ended["reason"]) == (
        row.case_id,
        AGENCY,
        "budget_ended",
    )
    assert datetime.fromisoformat(ended["ended_at"]) == sent.ended_at
    assert "Awa" not in unit.emitted[0].body.decode(), "a pseudonymous topic"
    accepted = _body(unit, 1)
    assert (accepted["submission_id"], accepted["agency_case_ref"], accepted["outcome"]) == (
        event.event_id,
        row.agency_case_ref,
        "updated",  # the v1 outcome enum cannot grow
    )
    stored = store.cases[row.case_id]
    assert (stored.status, stored.agency_id) == ("open", AGENCY)
    assert (stored.assistance_ended_at, stored.assistance_end_reason) == (
        sent.ended_at,
        "budget_ended",
    )
    assert store.history[-1] == (
        row.case_id,
        "assistance_ended",
        event.event_id,
        AGENCY,
        {"reason": "budget_ended"},
    )
    assert store.submissions[event.event_id] == (AGENCY, row.case_id, "assistance_ended")

    # the owner still writes its case: an update is applied as before
    update = await _submit(store, _update(row.agency_case_ref, needs=f.needs("social.housing")))
    assert [t for _, t, _ in _sent(update)] == [ev.CASE_UPDATED, ev.SUBMISSION_ACCEPTED]
    assert store.cases[row.case_id].assistance_ended_at == sent.ended_at


async def _ended(store: FakeIntakeStore, row: CaseRow) -> None:
    await _submit(store, _end(row.agency_case_ref))


async def _closed(store: FakeIntakeStore, row: CaseRow) -> None:
    await _submit(store, _closure(row.agency_case_ref))


async def _erased(store: FakeIntakeStore, row: CaseRow) -> None:
    await _submit(store, _erasure(row.agency_case_ref))


@pytest.mark.parametrize(
    ("before", "ref", "reason"),
    [
        (_ended, None, "the owner's assistance has already ended"),
        (_closed, None, "the case is closed; its assistance ended with it"),
        (_erased, None, "no case with this agency_case_ref"),
        (None, "NO-SUCH-CASE", "no case with this agency_case_ref"),
    ],
    ids=["already-ended", "closed", "erased", "unknown-ref"],
)
async def test_an_end_of_assistance_intake_cannot_apply_is_refused_and_changes_nothing(
    before: Any, ref: str | None, reason: str
) -> None:
    store = FakeIntakeStore()
    row = await _register(store)
    if before is not None:
        await before(store, row)
    snapshot, history = _snapshot(store), list(store.history)
    event = _end(ref or row.agency_case_ref)

    unit = await _submit(store, event)

    _refused_with(unit, reason)
    assert _snapshot(store) == snapshot and store.history == history
    assert store.submissions[event.event_id] == (AGENCY, None, "rejected")


# ----- closure with the open referrals continued -----


async def test_a_closure_says_what_becomes_of_the_open_referrals() -> None:
    store = FakeIntakeStore()
    row = await _register(store)
    event = _closure(row.agency_case_ref, open_referrals=ev.OpenReferralsOnClosure.CONTINUE)

    unit = await _submit(store, event)

    assert _sent(unit) == [
        (topics.INTAKE_CASES, ev.CASE_CLOSED, row.case_id),
        (topics.INTAKE_CASES, ev.SUBMISSION_ACCEPTED, row.case_id),
    ]
    closed = _body(unit, 0)
    assert (closed["case_id"], closed["reason"], closed["open_referrals"]) == (
        row.case_id,
        "completed",
        "continue",
    )
    assert store.cases[row.case_id].status == "closed"
    assert store.history[-1] == (
        row.case_id,
        "closed",
        event.event_id,
        AGENCY,
        {"reason": "completed", "open_referrals": "continue"},
    )


# ----- the move of a handed-over case -----


async def test_an_accepted_handover_moves_the_case_and_seals_its_personal_data() -> None:
    store = FakeIntakeStore()
    row = await _register(store, personal=_person())
    await _ended(store, row)  # the owner's assistance ended: the new owner's runs
    private = await _ministry(store)
    accepted = _accepted(row)

    unit = await _accept(store, accepted)

    assert _sent(unit) == [
        (topics.INTAKE_CASES, ev.CASE_HANDED_OVER, row.case_id),
        (topics.INTAKE_DISCLOSURES, ev.CASE_DATA_SEALED, row.case_id),
    ]
    for emitted in unit.emitted:
        assert emitted.headers["ce_causationid"] == HANDOVER_EVENT
        assert emitted.headers["ce_correlationid"] == "conversation-1"
    assert unit.emitted[0].headers["ce_subject"] == row.case_id
    assert unit.emitted[1].headers["ce_subject"] == accepted.handover_id
    handed = _body(unit, 0)
    assert datetime.fromisoformat(handed.pop("handed_over_at")) <= datetime.now(UTC)
    assert handed == {
        "handover_id": accepted.handover_id,
        "case_id": row.case_id,
        "from_agency_id": AGENCY,
        "to_agency_id": MINISTRY,
        "to_agency_case_ref": accepted.receiving_case_ref,
    }
    # the whole personal data, for the new owner's key only
    sealed = _body(unit, 1)
    key_sha256 = crypto.key_fingerprint(base64.b64encode(bytes(private.public_key)).decode())
    assert (sealed["handover_id"], sealed["case_id"], sealed["recipient_agency_id"]) == (
        accepted.handover_id,
        row.case_id,
        MINISTRY,
    )
    assert sealed["recipient_key_sha256"] == key_sha256
    assert datetime.fromisoformat(sealed["consent_recorded_at"]) == row.consent.recorded_at
    box = base64.b64decode(sealed["sealed_box"])
    opened = ev.PersonalData.model_validate_json(SealedBox(private).decrypt(box))
    assert opened == ev.PersonalData.model_validate(_person()), "every field: it keeps the case"
    with pytest.raises(CryptoError):
        SealedBox(PrivateKey.generate()).decrypt(box)
    for emitted in unit.emitted:
        assert b"Awa" not in emitted.body and b"A1234567" not in emitted.body, "only sealed"
    # the case is the new owner's, its assistance running; the old pair names a former owner
    moved = store.cases[row.case_id]
    assert (moved.agency_id, moved.agency_case_ref, moved.status) == (
        MINISTRY,
        accepted.receiving_case_ref,
        "open",
    )
    assert (moved.assistance_ended_at, moved.assistance_end_reason) == (None, None)
    assert (moved.consent, moved.consent_version) == (row.consent, 1)
    assert store.former == {(AGENCY, row.agency_case_ref): FormerOwner(row.case_id, MINISTRY)}
    entry = store.handover_log[accepted.handover_id]
    assert (entry.kind, entry.referral_id, entry.case_id, entry.recipient_agency_id) == (
        "handover",
        None,
        row.case_id,
        MINISTRY,
    )
    assert (entry.outcome, entry.reason, entry.consent_version) == ("disclosed", None, 1)
    assert (entry.disclosure_id, entry.recipient_key_sha256) == (
        sealed["disclosure_id"],
        key_sha256,
    )
    assert entry.source_event_id == HANDOVER_EVENT
    assert store.disclosures == {}, "no referral's disclosure"
    assert store.history[-1] == (
        row.case_id,
        "handed_over",
        HANDOVER_EVENT,
        MINISTRY,
        {
            "from": AGENCY,
            "to": MINISTRY,
            "handover_id": accepted.handover_id,
            "consent_version": 1,
        },
    )


async def test_the_newer_consent_a_handover_carries_is_applied_before_the_move() -> None:
    store = FakeIntakeStore()
    # the consent given at registration names another agency only: it does not cover the move
    row = await _register(
        store, consent=f.consent(scope={"purposes": ["referral"], "agency_ids": [PROGRAMME]})
    )
    await _ministry(store)
    carried = ev.Consent.model_validate(
        f.consent(
            scope={"purposes": ["referral", "follow_up"], "agency_ids": [MINISTRY]},
            recorded_at="2026-11-20T10:00:00Z",
        )
    )
    accepted = _accepted(row, consent=carried.model_dump(mode="json"))

    unit = await _accept(store, accepted)

    assert _sent(unit) == [
        (topics.INTAKE_CASES, ev.CONSENT_CHANGED, row.case_id),
        (topics.INTAKE_CASES, ev.CASE_HANDED_OVER, row.case_id),
        (topics.INTAKE_DISCLOSURES, ev.CASE_DATA_SEALED, row.case_id),
    ]
    changed = _body(unit, 0)
    assert (changed["case_id"], ev.Consent.model_validate(changed["consent"])) == (
        row.case_id,
        carried,
    )
    moved = store.cases[row.case_id]
    assert (moved.consent, moved.consent_version, moved.agency_id) == (carried, 2, MINISTRY)
    assert store.consent_records[-1] == (row.case_id, 2, "changed", carried, HANDOVER_EVENT)
    sealed = _body(unit, 2)
    assert datetime.fromisoformat(sealed["consent_recorded_at"]) == carried.recorded_at
    assert store.handover_log[accepted.handover_id].consent_version == 2
    assert store.history[-1][4]["consent_version"] == 2


async def test_a_consent_recorded_after_the_one_the_handover_carries_stands() -> None:
    store = FakeIntakeStore()
    row = await _register(store)
    await _ministry(store)
    await _submit(store, _withdrawal(row.agency_case_ref))  # the returnee withdrew meanwhile
    withdrawn = store.cases[row.case_id]
    carried = ev.Consent.model_validate(f.consent(recorded_at="2026-11-01T10:00:00Z"))
    assert carried.recorded_at < withdrawn.consent.recorded_at

    unit = await _accept(store, _accepted(row, consent=carried.model_dump(mode="json")))

    assert [t for _, t, _ in _sent(unit)] == [ev.HANDOVER_FAILED]
    assert _body(unit, 0)["reason"] == "no_consent"
    assert store.cases[row.case_id] == withdrawn, "the older record is not applied"


async def _closed_case(store: FakeIntakeStore, row: CaseRow) -> dict[str, Any]:
    await _closed(store, row)
    return {}


async def _erased_case(store: FakeIntakeStore, row: CaseRow) -> dict[str, Any]:
    await _erased(store, row)
    return {}


async def _withdrawn_consent(store: FakeIntakeStore, row: CaseRow) -> dict[str, Any]:
    await _submit(store, _withdrawal(row.agency_case_ref))
    return {}


async def _another_owner(store: FakeIntakeStore, row: CaseRow) -> dict[str, Any]:
    return {"owner_agency_id": "caritas-sn"}  # the case is not (or no longer) theirs


async def _unknown_case(store: FakeIntakeStore, row: CaseRow) -> dict[str, Any]:
    return {"case_id": str(uuid.uuid4())}


async def _unknown_receiver(store: FakeIntakeStore, row: CaseRow) -> dict[str, Any]:
    return {"receiving_agency_id": "not-registered"}


async def _reference_taken(store: FakeIntakeStore, row: CaseRow) -> dict[str, Any]:
    own = f.submission(MINISTRY)  # the ministry's own case under that reference
    await _submit(store, InboundEvent.from_record(f.record_of(messages.submission_message(own))))
    return {"receiving_case_ref": own.agency_case_ref}


async def _reference_once_another_case(store: FakeIntakeStore, row: CaseRow) -> dict[str, Any]:
    # the ministry's reference named another case it has since handed over to the programme
    own = f.submission(MINISTRY)
    await _submit(store, InboundEvent.from_record(f.record_of(messages.submission_message(own))))
    theirs = store.case(own.agency_case_ref, MINISTRY)
    await _provider(store, agency_id=PROGRAMME)
    moved = await _accept(
        store,
        _accepted(theirs, receiving_agency_id=PROGRAMME, receiving_case_ref=f.unique("P")),
    )
    assert [t for _, t, _ in _sent(moved)] == [ev.CASE_HANDED_OVER, ev.CASE_DATA_SEALED]
    return {"receiving_case_ref": own.agency_case_ref}


@pytest.mark.parametrize(
    ("consent", "with_key", "receiver_type", "setup", "reason"),
    [
        ({}, True, ev.AgencyType.GOVERNMENT, _unknown_case, "unknown_case"),
        ({}, True, ev.AgencyType.GOVERNMENT, _closed_case, "case_not_open"),
        ({}, True, ev.AgencyType.GOVERNMENT, _erased_case, "case_not_open"),
        ({}, True, ev.AgencyType.GOVERNMENT, _another_owner, "owner_changed"),
        ({}, True, ev.AgencyType.GOVERNMENT, _unknown_receiver, "unknown_agency"),
        ({}, True, ev.AgencyType.GOVERNMENT, _reference_taken, "reference_taken"),
        ({}, True, ev.AgencyType.GOVERNMENT, _reference_once_another_case, "reference_taken"),
        ({"given": False, "scope": None}, True, ev.AgencyType.GOVERNMENT, None, "no_consent"),
        ({}, True, ev.AgencyType.GOVERNMENT, _withdrawn_consent, "no_consent"),
        (
            {"scope": {"purposes": ["follow_up"]}},
            True,
            ev.AgencyType.GOVERNMENT,
            None,
            "purpose_not_covered",
        ),
        (
            {"scope": {"purposes": ["referral"], "expires_on": "2026-11-01"}},
            True,
            ev.AgencyType.GOVERNMENT,
            None,
            "consent_expired",
        ),
        (
            {"scope": {"purposes": ["referral"], "agency_ids": [PROGRAMME]}},
            True,
            ev.AgencyType.GOVERNMENT,
            None,
            "agency_not_covered",
        ),
        (
            {"scope": {"purposes": ["referral"], "agency_types": ["ngo"]}},
            True,
            ev.AgencyType.GOVERNMENT,
            None,
            "agency_type_not_covered",
        ),
        ({}, False, ev.AgencyType.GOVERNMENT, None, "no_public_key"),
    ],
    ids=[
        "unknown-case",
        "case-closed",
        "case-erased",
        "owner-changed",
        "unknown-agency",
        "reference-taken",
        "reference-of-a-case-handed-on",
        "consent-refused",
        "consent-withdrawn",
        "purpose-not-covered",
        "consent-expired",
        "agency-not-covered",
        "agency-type-not-covered",
        "no-public-key",
    ],
)
async def test_a_handover_intake_cannot_carry_out_fails_with_its_reason_and_moves_nothing(
    consent: dict[str, Any],
    with_key: bool,
    receiver_type: ev.AgencyType,
    setup: Any,
    reason: str,
) -> None:
    store = FakeIntakeStore()
    row = await _register(store, personal=_person(), consent=f.consent(**consent))
    await _ministry(store, type_=receiver_type, with_key=with_key)
    overrides = await setup(store, row) if setup is not None else {}
    accepted = _accepted(row, **overrides)
    snapshot, history = _snapshot(store), list(store.history)

    unit = await _accept(store, accepted)

    assert _sent(unit) == [(topics.INTAKE_CASES, ev.HANDOVER_FAILED, accepted.case_id)]
    assert unit.emitted[0].headers["ce_subject"] == accepted.case_id
    assert _body(unit, 0) == {
        "handover_id": accepted.handover_id,
        "case_id": accepted.case_id,
        "from_agency_id": accepted.owner_agency_id,
        "to_agency_id": accepted.receiving_agency_id,
        "reason": reason,
    }
    cases, personal, former, consents, handover_log, disclosures = snapshot
    assert (dict(store.cases), dict(store.personal), dict(store.former)) == (
        cases,
        personal,
        former,
    ), "nothing moved"
    assert (store.consent_records, store.disclosures) == (consents, disclosures)
    if reason == "unknown_case":  # the logs are a case's: an unknown case has none
        assert store.history == history and store.handover_log == handover_log
        return
    assert store.history == [
        *history,
        (
            row.case_id,
            "handover_failed",
            HANDOVER_EVENT,
            accepted.receiving_agency_id,
            {"handover_id": accepted.handover_id, "reason": reason},
        ),
    ]
    entry = store.handover_log[accepted.handover_id]
    assert (entry.kind, entry.outcome, entry.reason, entry.recipient_key_sha256) == (
        "handover",
        "refused",
        reason,
        None,
    )
    assert entry.consent_version == store.cases[row.case_id].consent_version


async def test_a_carried_consent_that_does_not_cover_the_new_owner_fails_and_is_not_applied() -> (
    None
):
    store = FakeIntakeStore()
    row = await _register(store)
    await _ministry(store)
    carried = f.consent(
        scope={"purposes": ["referral"], "agency_ids": [PROGRAMME]},
        recorded_at="2026-11-20T10:00:00Z",
    )

    unit = await _accept(store, _accepted(row, consent=carried))

    assert [t for _, t, _ in _sent(unit)] == [ev.HANDOVER_FAILED]
    assert _body(unit, 0)["reason"] == "agency_not_covered"
    assert store.cases[row.case_id] == row, "a failed handover changes nothing, consent included"
    assert [kind for _, _, kind, _, _ in store.consent_records] == ["given"]


@pytest.mark.parametrize("moves", [True, False], ids=["moved", "failed"])
async def test_a_handover_is_decided_once(moves: bool) -> None:
    store = FakeIntakeStore()
    row = await _register(store)
    await _ministry(store, with_key=moves)
    accepted = _accepted(row)
    first = await _accept(store, accepted)
    assert next(t for _, t, _ in _sent(first)) == (
        ev.CASE_HANDED_OVER if moves else ev.HANDOVER_FAILED
    )
    await _ministry(store)  # a failure is not decided again once it would succeed
    snapshot, history = _snapshot(store), list(store.history)

    again = await _accept(store, accepted)

    assert again.emitted == []
    assert _snapshot(store) == snapshot and store.history == history


# ----- after the move: who writes the case -----


async def _handed_over(store: FakeIntakeStore, **overrides: Any) -> tuple[CaseRow, str]:
    row = await _register(store, personal=_person(), **overrides)
    await _ministry(store)
    accepted = _accepted(row)
    unit = await _accept(store, accepted)
    assert [t for _, t, _ in _sent(unit)] == [ev.CASE_HANDED_OVER, ev.CASE_DATA_SEALED]
    return row, accepted.receiving_case_ref


@pytest.mark.parametrize(
    "message",
    [
        lambda ref: _update(ref, needs=f.needs("social.housing")),
        _withdrawal,
        _erasure,
        _closure,
        _end,
        _resubmitted,
    ],
    ids=["update", "consent-withdrawal", "erasure", "closure", "assistance-end", "resubmission"],
)
async def test_the_former_owner_is_told_the_case_was_handed_over_and_changes_nothing(
    message: Any,
) -> None:
    store = FakeIntakeStore()
    row, _ = await _handed_over(store)
    snapshot, history = _snapshot(store), list(store.history)
    event = message(row.agency_case_ref)

    unit = await _submit(store, event)

    _refused_with(unit, f"the case was handed over to {MINISTRY}; its new owner writes it")
    assert unit.emitted[0].key == AGENCY, "to the former owner's own inbox"
    assert _snapshot(store) == snapshot and store.history == history
    assert len(store.cases) == 1, "a whole case again is no new case under the old reference"
    assert store.submissions[event.event_id] == (AGENCY, None, "rejected")


async def test_the_new_owner_writes_the_case_under_its_own_reference() -> None:
    store = FakeIntakeStore()
    row, ref = await _handed_over(store)

    update = await _submit(
        store,
        _update(
            ref,
            MINISTRY,
            needs=[
                {"need_id": "n1", "category": "psychosocial.counselling"},
                {"need_id": "n2", "category": "economic.job_placement"},
            ],
        ),
    )
    assert _sent(update) == [
        (topics.INTAKE_CASES, ev.CASE_UPDATED, row.case_id),
        (topics.INTAKE_CASES, ev.SUBMISSION_ACCEPTED, row.case_id),
    ]
    updated = _body(update, 0)
    assert updated["submitting_agency_id"] == MINISTRY, "new needs are referred by it"
    assert [n["need_id"] for n in updated["needs"]] == ["n1", "n2"]
    answer = _body(update, 1)
    assert (answer["agency_id"], answer["agency_case_ref"], answer["case_id"]) == (
        MINISTRY,
        ref,
        row.case_id,
    )
    assert store.history[-1][3] == MINISTRY
    assert store.personal[row.case_id] == ev.PersonalData.model_validate(_person())

    # its own assistance runs: it can end it (the former owner's end does not count)
    ended = await _submit(store, _end(ref, MINISTRY))
    assert [t for _, t, _ in _sent(ended)] == [ev.ASSISTANCE_ENDED, ev.SUBMISSION_ACCEPTED]
    assert _body(ended, 0)["owner_agency_id"] == MINISTRY
    withdrawn = await _submit(store, _withdrawal(ref, MINISTRY))
    assert [t for _, t, _ in _sent(withdrawn)] == [ev.CONSENT_CHANGED, ev.SUBMISSION_ACCEPTED]
    closed = await _submit(store, _closure(ref, MINISTRY))
    assert [t for _, t, _ in _sent(closed)] == [ev.CASE_CLOSED, ev.SUBMISSION_ACCEPTED]
    erased = await _submit(store, _erasure(ref, MINISTRY))
    assert _sent(erased) == [
        (topics.INTAKE_CASES, ev.CASE_ERASED, row.case_id),
        (topics.INTAKE_CASES, ev.SUBMISSION_ACCEPTED, row.case_id),
    ]
    assert (_body(erased, 0)["submitting_agency_id"], _body(erased, 0)["agency_case_ref"]) == (
        MINISTRY,
        ref,
    )
    assert store.cases[row.case_id].status == "erased"


async def test_a_new_owner_whose_predecessor_ended_its_assistance_starts_with_its_own_running() -> (
    None
):
    store = FakeIntakeStore()
    row = await _register(store)
    await _ended(store, row)
    await _ministry(store)
    accepted = _accepted(row)
    await _accept(store, accepted)

    unit = await _submit(store, _end(accepted.receiving_case_ref, MINISTRY))

    assert [t for _, t, _ in _sent(unit)] == [ev.ASSISTANCE_ENDED, ev.SUBMISSION_ACCEPTED]


async def test_a_case_handed_back_to_a_former_owner_is_its_own_again() -> None:
    store = FakeIntakeStore()
    row, ref = await _handed_over(store)
    back = _accepted(
        store.cases[row.case_id],
        receiving_agency_id=AGENCY,
        receiving_case_ref=row.agency_case_ref,  # its old reference names this very case
    )
    await _provider(store, agency_id=AGENCY)

    unit = await _accept(store, back)

    assert [t for _, t, _ in _sent(unit)] == [ev.CASE_HANDED_OVER, ev.CASE_DATA_SEALED]
    assert store.former == {(MINISTRY, ref): FormerOwner(row.case_id, AGENCY)}
    again = await _submit(store, _update(row.agency_case_ref, needs=f.needs("social.housing")))
    assert [t for _, t, _ in _sent(again)] == [ev.CASE_UPDATED, ev.SUBMISSION_ACCEPTED]
    refused = await _submit(store, _update(ref, MINISTRY, needs=f.needs()))
    assert _body(refused, 0)["reason"] == (
        f"the case was handed over to {AGENCY}; its new owner writes it"
    )


# ----- the lifecycle's other steps, in the case history -----


def _proposed(case_id: str, direction: ev.HandoverDirection) -> ev.HandoverProposed:
    return ev.HandoverProposed(
        handover_id=str(uuid.uuid4()),
        case_id=case_id,
        direction=direction,
        owner_agency_id=AGENCY,
        receiving_agency_id=MINISTRY,
        answering_agency_id=MINISTRY if direction is ev.HandoverDirection.OFFER else AGENCY,
        reason=ev.HandoverReason.GOVERNMENT_SERVICE,
        respond_by=datetime.now(UTC) + timedelta(days=7),
        message_id="proposal-1",
    )


def _ended_handover(
    case_id: str, state: ev.HandoverState, reason: ev.HandoverDeclineReason | None = None
) -> ev.HandoverEnded:
    return ev.HandoverEnded(
        handover_id=str(uuid.uuid4()),
        case_id=case_id,
        owner_agency_id=AGENCY,
        receiving_agency_id=MINISTRY,
        state=state,
        reason=reason,
        occurred_at=datetime.now(UTC),
    )


@pytest.mark.parametrize("direction", list(ev.HandoverDirection))
async def test_a_proposed_handover_is_in_the_case_history(direction: ev.HandoverDirection) -> None:
    store = FakeIntakeStore()
    row = await _register(store)
    proposed = _proposed(row.case_id, direction)
    unit = _unit(store, ev.HANDOVER_PROPOSED)

    await HANDLERS.on_handover_proposed(proposed, unit)

    assert unit.emitted == []
    assert store.history[-1] == (
        row.case_id,
        "handover_proposed",
        HANDOVER_EVENT,
        MINISTRY,
        {"handover_id": proposed.handover_id, "direction": direction.value, "to": MINISTRY},
    )
    assert store.cases[row.case_id] == row, "a proposal moves nothing"


@pytest.mark.parametrize(
    ("state", "reason", "details"),
    [
        (
            ev.HandoverState.REJECTED,
            ev.HandoverDeclineReason.NO_CAPACITY,
            {"reason": "no_capacity"},
        ),
        (ev.HandoverState.EXPIRED, None, {}),
    ],
    ids=["rejected", "expired"],
)
async def test_a_handover_that_ended_without_a_move_is_in_the_case_history(
    state: ev.HandoverState, reason: ev.HandoverDeclineReason | None, details: dict[str, Any]
) -> None:
    store = FakeIntakeStore()
    row = await _register(store)
    ended = _ended_handover(row.case_id, state, reason)
    unit = _unit(store, ev.HANDOVER_ENDED)

    await HANDLERS.on_handover_ended(ended, unit)

    assert unit.emitted == []
    assert store.history[-1] == (
        row.case_id,
        f"handover_{state.value}",
        HANDOVER_EVENT,
        MINISTRY,
        {"handover_id": ended.handover_id, **details},
    )
    assert store.cases[row.case_id] == row


async def test_the_steps_of_a_handover_of_an_unknown_case_record_nothing() -> None:
    store = FakeIntakeStore()
    await _register(store)
    history = list(store.history)
    unknown = str(uuid.uuid4())
    for ce_type, payload, handler in (
        (
            ev.HANDOVER_PROPOSED,
            _proposed(unknown, ev.HandoverDirection.OFFER),
            HANDLERS.on_handover_proposed,
        ),
        (
            ev.HANDOVER_ENDED,
            _ended_handover(unknown, ev.HandoverState.EXPIRED),
            HANDLERS.on_handover_ended,
        ),
    ):
        unit = _unit(store, ce_type)
        await handler(payload, unit)  # type: ignore[arg-type]
        assert unit.emitted == []
    assert store.history == history


# ----- the decision itself, pure -----


def _case(**overrides: Any) -> CaseRow:
    submission = f.submission(AGENCY)
    fields: dict[str, Any] = {
        "case_id": str(uuid.uuid4()),
        "agency_id": AGENCY,
        "agency_case_ref": submission.agency_case_ref,
        "status": "open",
        "profile": submission.profile,
        "needs": submission.needs,
        "consent": submission.consent,
        "consent_version": 1,
        **overrides,
    }
    return CaseRow(**fields)


GOVERNMENT_WITH_KEY = Recipient(ev.AgencyType.GOVERNMENT, base64.b64encode(b"k" * 32).decode())


def test_the_first_reason_a_handover_cannot_move_is_the_one_given() -> None:
    today = date(2026, 12, 1)
    case = _case(status="closed")
    accepted = _accepted(case, receiving_agency_id="gone")
    # a closed case, an unknown receiver, a reference of another case: the case comes first
    assert (
        handovers.refusal(accepted, case, None, str(uuid.uuid4()), today)
        is ev.HandoverFailureReason.CASE_NOT_OPEN
    )
    open_case = _case()
    assert (
        handovers.refusal(_accepted(open_case), open_case, GOVERNMENT_WITH_KEY, None, today) is None
    )
    # the receiver's reference naming this very case is no conflict (a case coming back)
    assert (
        handovers.refusal(
            _accepted(open_case), open_case, GOVERNMENT_WITH_KEY, open_case.case_id, today
        )
        is None
    )
    # a handover to the agency that owns it now: it changed hands meanwhile
    to_owner = _accepted(open_case, receiving_agency_id=AGENCY)
    assert (
        handovers.refusal(to_owner, open_case, GOVERNMENT_WITH_KEY, None, today)
        is ev.HandoverFailureReason.OWNER_CHANGED
    )
    # the consent reasons come before the key: an agency without a key is told what matters
    refused = _case(consent=ev.Consent(given=False, recorded_at=_past(), method="verbal"))
    assert (
        handovers.refusal(
            _accepted(refused), refused, Recipient(ev.AgencyType.GOVERNMENT, None), None, today
        )
        is ev.HandoverFailureReason.NO_CONSENT
    )


def test_the_consent_a_handover_relies_on_is_the_latest_record() -> None:
    current = ev.Consent.model_validate(f.consent(recorded_at="2026-11-10T10:00:00Z"))
    newer = ev.Consent.model_validate(
        f.consent(scope={"purposes": ["referral"]}, recorded_at="2026-11-11T10:00:00Z")
    )
    older = ev.Consent.model_validate(
        f.consent(scope={"purposes": ["referral"]}, recorded_at="2026-11-09T10:00:00Z")
    )
    assert handovers.consent_for(current, None) == current
    assert handovers.consent_for(current, newer) == newer
    assert handovers.consent_for(current, older) == current
    assert handovers.consent_for(current, current) == current


def test_a_sealed_case_opens_to_the_whole_personal_data_with_the_new_owners_key() -> None:
    private = PrivateKey.generate()
    public = base64.b64encode(bytes(private.public_key)).decode()
    case = _case()
    personal = ev.PersonalData.model_validate(_person())
    sealed = handovers.sealed(_accepted(case), case, public, personal, "d-1")
    opened = json.loads(SealedBox(private).decrypt(base64.b64decode(sealed.sealed_box)))
    assert ev.PersonalData.model_validate(opened) == personal
    assert (sealed.disclosure_id, sealed.case_id, sealed.recipient_agency_id) == (
        "d-1",
        case.case_id,
        MINISTRY,
    )
