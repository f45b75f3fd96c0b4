"""Intake's handlers on an in-memory store: submissions, consent, erasure, closure, rejections
and disclosures in milliseconds (ends of assistance and handovers, on the same fake:
tests/unit/test_intake_continuity.py). The same rules run on the real broker and database in
tests/integration/test_intake_batches.py and the e2e tests; here the store is a fake that keeps
what it is given (personal data in clear, it is the store that encrypts), while the decisions,
the identity hashes, the consent rules and the sealing of disclosures are the service's own."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox

from services.intake import crypto
from services.intake.cases import CaseRow
from services.intake.community import CommunityNeedRow
from services.intake.disclosures import Recipient
from services.intake.handlers import SOURCE, IntakeHandlers, IntakeKeys
from services.intake.sealing import SubmissionKeys
from services.intake.store import (
    MAX_SIGNALLED_DUPLICATES,
    DisclosedFacts,
    DisclosureEntry,
    FormerOwner,
)
from shared.contracts import events as ev
from shared.contracts import messages, topics
from shared.contracts.envelope import build_event
from shared.kafka.inbound import InboundEvent
from shared.unit import Cause, Unit
from tests import factories as f

AGENCY, OTHER_AGENCY, PROVIDER = "iom-sn", "caritas-sn", "ngo-provider"
MASTER_KEY = bytes(range(32))
KEYS = IntakeKeys(master_key=MASTER_KEY, duplicate_key=b"d" * 32, duplicate_key_id="dup-1")
HANDLERS = IntakeHandlers(KEYS)
REFERRAL_EVENT = "referral-event-1"  # the ce_id of the referral-requested a disclosure follows

History = tuple[str, str, str, str | None, dict[str, Any]]


class FakeFollowUpStore:
    """FollowUpStore in memory: each case's plan (None: none followed), assessments by case
    and wave."""

    def __init__(self) -> None:
        self.plans: dict[str, tuple[str, tuple[str, ...] | None]] = {}
        self.assessments: dict[tuple[str, str], tuple[ev.AssessmentSubmission, ev.OutcomeScores]]
        self.assessments = {}

    async def plan(self, case_id: str, owner: str, plan: Any, reminder_days: int) -> None:
        self.plans[case_id] = (owner, None if plan is None else tuple(w.name for w in plan))

    async def save_assessment(
        self, assessment: ev.AssessmentSubmission, scores: ev.OutcomeScores, _: str
    ) -> None:
        self.assessments[(assessment.case_id, assessment.wave)] = (assessment, scores)

    async def erase_assessments(self, case_id: str) -> None:
        self.assessments = {k: v for k, v in self.assessments.items() if k[0] != case_id}


class FakeIntakeStore:
    """IntakeStore in memory: cases, personal data, identity hashes, the logs and the agency
    registry as dicts and lists. It keeps what it is given, as the real store does (a changed
    consent gets the next version; the cases of *other* agencies sharing an identity hash are
    possible duplicates); the handlers decide."""

    def __init__(self) -> None:
        self.cases: dict[str, CaseRow] = {}
        self.closed_reasons: dict[str, str | None] = {}
        self.personal: dict[str, ev.PersonalData | None] = {}  # None: erased
        self.hashes: dict[str, tuple[str, set[bytes]]] = {}
        self.consent_records: list[tuple[str, int, str, ev.Consent, str]] = []
        self.history: list[History] = []
        self.submissions: dict[str, tuple[str | None, str | None, str]] = {}
        self.disclosures: dict[str, DisclosureEntry] = {}  # a referral's, by referral
        self.handover_log: dict[str, DisclosureEntry] = {}  # a handover's, by handover
        self.agencies: dict[str, Recipient] = {}
        self.former: dict[tuple[str, str], FormerOwner] = {}
        # issue 18: community needs and their descriptions (None: erased)
        self.community: dict[str, CommunityNeedRow] = {}
        self.descriptions: dict[str, str | None] = {}
        # issue 18: erasures confirmed (disclosure id → (erased_at, ce_id)), duplicate pairs
        self.erasures: dict[str, tuple[datetime, str]] = {}
        self.duplicates: dict[tuple[str, str], str | None] = {}  # pair → why not told
        self.follow_ups = FakeFollowUpStore()  # issue 19

    @staticmethod
    def _check(master_key: bytes) -> None:
        # The real store wraps and unwraps the data keys with it: another key opens nothing.
        assert master_key == MASTER_KEY, "not intake's master key"

    def _others(self, row: CaseRow, key_id: str, hashes: list[bytes]) -> list[str]:
        others = [
            case_id
            for case_id, (kid, theirs) in self.hashes.items()
            if case_id != row.case_id
            and kid == key_id
            and theirs & set(hashes)
            and self.cases[case_id].agency_id != row.agency_id
            and self.cases[case_id].status != "erased"
        ]
        return sorted(others)[:MAX_SIGNALLED_DUPLICATES]

    # ----- the case registry -----

    async def find_case(self, agency_id: str, agency_case_ref: str) -> CaseRow | None:
        return next(
            (
                row
                for row in self.cases.values()
                if (row.agency_id, row.agency_case_ref) == (agency_id, agency_case_ref)
            ),
            None,
        )

    async def load_case(self, case_id: str) -> CaseRow | None:
        return self.cases.get(case_id)

    async def lock_case(self, case_id: str) -> CaseRow | None:
        return self.cases.get(case_id)

    async def preload_submissions(
        self, events: Any, key_id: str | None = None, hashes: Any = ()
    ) -> None:
        self.preloaded_hashes = list(hashes)  # what a batch would load: nothing else to do

    async def create_case(
        self, submission: ev.CaseSubmission, master_key: bytes, key_id: str, hashes: list[bytes]
    ) -> tuple[CaseRow, list[str]]:
        self._check(master_key)
        row = CaseRow(
            case_id=str(uuid.uuid4()),
            agency_id=submission.agency_id,
            agency_case_ref=submission.agency_case_ref,
            status="open",
            profile=submission.profile,
            needs=submission.needs,
            consent=submission.consent,
            consent_version=1,
        )
        self.cases[row.case_id] = row
        self.personal[row.case_id] = submission.personal
        self.hashes[row.case_id] = (key_id, set(hashes))
        return row, self._others(row, key_id, hashes)

    async def update_case(
        self,
        row: CaseRow,
        *,
        profile: ev.Profile | None = None,
        needs: list[ev.Need] | None = None,
        consent: ev.Consent | None = None,
    ) -> CaseRow:
        stored = self.cases[row.case_id]
        changed = consent is not None and consent != row.consent
        updated = replace(
            stored,
            profile=profile or row.profile,
            needs=needs if needs is not None else row.needs,
            consent=consent or row.consent,
            consent_version=stored.consent_version + (1 if changed else 0),
        )
        self.cases[row.case_id] = updated
        return updated

    async def set_status(self, case_id: str, status: str, reason: str | None) -> None:
        self.cases[case_id] = replace(self.cases[case_id], status=status)
        self.closed_reasons[case_id] = reason

    async def end_assistance(self, row: CaseRow, ended_at: datetime, reason: str) -> CaseRow:
        ended = replace(
            self.cases[row.case_id], assistance_ended_at=ended_at, assistance_end_reason=reason
        )
        self.cases[row.case_id] = ended
        return ended

    async def former_owner(self, agency_id: str, agency_case_ref: str) -> FormerOwner | None:
        return self.former.get((agency_id, agency_case_ref))

    async def reference_holder(self, agency_id: str, agency_case_ref: str) -> str | None:
        row = await self.find_case(agency_id, agency_case_ref)
        if row is not None:
            return row.case_id
        former = self.former.get((agency_id, agency_case_ref))
        return former.case_id if former is not None else None

    async def hand_over(
        self, row: CaseRow, agency_id: str, agency_case_ref: str, handover_id: str
    ) -> CaseRow:
        stored = self.cases[row.case_id]
        moved = replace(
            stored,
            agency_id=agency_id,
            agency_case_ref=agency_case_ref,
            assistance_ended_at=None,
            assistance_end_reason=None,
        )
        self.cases[row.case_id] = moved
        self.former.pop((agency_id, agency_case_ref), None)
        self.former[(stored.agency_id, stored.agency_case_ref)] = FormerOwner(
            row.case_id, agency_id
        )
        return moved

    async def handover_decided(self, handover_id: str) -> bool:
        return handover_id in self.handover_log

    async def erase(self, case_id: str) -> None:
        self.cases[case_id] = replace(self.cases[case_id], status="erased")
        self.closed_reasons[case_id] = None
        self.personal[case_id] = None
        self.hashes.pop(case_id, None)

    async def replace_personal(
        self, case_id: str, master_key: bytes, personal: ev.PersonalData
    ) -> None:
        self._check(master_key)
        if self.personal.get(case_id) is None:
            raise crypto.KeyDestroyed("the case's data key was destroyed")
        self.personal[case_id] = personal

    async def read_personal(self, case_id: str, master_key: bytes) -> ev.PersonalData:
        self._check(master_key)
        personal = self.personal.get(case_id)
        if personal is None:
            raise crypto.KeyDestroyed("no personal data stored")
        return personal

    async def record_identity(self, row: CaseRow, key_id: str, hashes: list[bytes]) -> list[str]:
        self.hashes[row.case_id] = (key_id, set(hashes))
        return self._others(row, key_id, hashes)

    # ----- the logs -----

    async def add_consent_record(self, row: CaseRow, kind: str, source_event_id: str) -> None:
        self.consent_records.append(
            (row.case_id, row.consent_version, kind, row.consent, source_event_id)
        )

    async def add_history(
        self,
        case_id: str,
        action: str,
        source_event_id: str,
        agency_id: str | None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.history.append((case_id, action, source_event_id, agency_id, details or {}))

    async def record_submission(
        self, submission_id: str, agency_id: str | None, case_id: str | None, outcome: str
    ) -> None:
        self.submissions.setdefault(submission_id, (agency_id, case_id, outcome))

    # ----- disclosures -----

    async def disclosure_decided(self, referral_id: str) -> bool:
        return referral_id in self.disclosures

    async def recipient(self, agency_id: str) -> Recipient | None:
        return self.agencies.get(agency_id)

    async def log_disclosure(self, entry: DisclosureEntry) -> None:
        if entry.kind == "handover":
            assert entry.handover_id is not None and entry.referral_id is None
            assert entry.handover_id not in self.handover_log, "one decision per handover"
            self.handover_log[entry.handover_id] = entry
            return
        assert entry.referral_id is not None and entry.handover_id is None
        assert entry.referral_id not in self.disclosures, "the log is keyed by referral"
        self.disclosures[entry.referral_id] = entry

    # ----- community needs (issue 18) -----

    async def find_community_need(
        self, agency_id: str, agency_case_ref: str
    ) -> CommunityNeedRow | None:
        return next(
            (
                n
                for n in self.community.values()
                if (n.agency_id, n.agency_case_ref) == (agency_id, agency_case_ref)
            ),
            None,
        )

    async def load_community_need(self, need_id: str) -> CommunityNeedRow | None:
        return self.community.get(need_id)

    async def save_community_need(
        self,
        submission: ev.CommunityNeedSubmission,
        master_key: bytes,
        existing: CommunityNeedRow | None,
    ) -> CommunityNeedRow:
        self._check(master_key)
        row = CommunityNeedRow(
            need_id=existing.need_id if existing else str(uuid.uuid4()),
            agency_id=submission.agency_id,
            agency_case_ref=submission.agency_case_ref,
            status="open",
            area=submission.area,
            category=submission.category,
            urgency=submission.urgency,
            people_affected=submission.people_affected,
            returnee_share=submission.returnee_share,
            submitted_at=datetime.now(UTC),
        )
        self.community[row.need_id] = row
        self.descriptions[row.need_id] = submission.description
        return row

    async def close_community_need(self, need_id: str, reason: str) -> None:
        self.community[need_id] = replace(self.community[need_id], status="closed")

    async def erase_community_need(self, need_id: str) -> None:
        self.community[need_id] = replace(self.community[need_id], status="erased")
        self.descriptions[need_id] = None

    async def read_community_description(self, need_id: str, master_key: bytes) -> str:
        self._check(master_key)
        description = self.descriptions.get(need_id)
        if description is None:
            raise crypto.KeyDestroyed("no description stored")
        return description

    # ----- consent that follows through -----

    async def disclosed_to(self, referral_id: str, agency_id: str) -> DisclosedFacts | None:
        entry = self.disclosures.get(referral_id)
        if entry is None or entry.recipient_agency_id != agency_id:
            return None
        if entry.outcome != "disclosed":
            return None
        erased = self.erasures.get(entry.disclosure_id)
        return DisclosedFacts(
            entry.disclosure_id,
            entry.case_id,
            self.cases[entry.case_id].agency_id,
            erased[0] if erased else None,
        )

    async def record_erasure(self, disclosure_id: str, erased_at: datetime, ce_id: str) -> None:
        self.erasures.setdefault(disclosure_id, (erased_at, ce_id))

    async def record_duplicates(
        self, case_id: str, found: list[tuple[str, str | None]]
    ) -> set[str]:
        told = set()
        for other, why in found:
            pair = (min(case_id, other), max(case_id, other))
            if pair in self.duplicates and self.duplicates[pair] is None:
                continue  # told once
            if pair not in self.duplicates or why is None:
                self.duplicates[pair] = why
            if why is None:
                told.add(other)
        return told

    # ----- the agency registry -----

    async def save_agency(self, agency: ev.AgencyRecord) -> None:
        self.agencies[agency.agency_id] = Recipient(agency.type, agency.public_key)

    async def remove_agency(self, agency_id: str) -> None:
        self.agencies.pop(agency_id, None)

    # ----- for the tests -----

    def case(self, agency_case_ref: str, agency_id: str = AGENCY) -> CaseRow:
        [row] = [
            r
            for r in self.cases.values()
            if (r.agency_id, r.agency_case_ref) == (agency_id, agency_case_ref)
        ]
        return row


# ----- messages as an agency's client sends them -----


def _past(seconds: int = 60) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


def _submitted(submission: ev.CaseSubmission) -> InboundEvent:
    return InboundEvent.from_record(f.record_of(messages.submission_message(submission)))


def _message(
    type_: str, payload: Any, *, agency: str = AGENCY, key: str | None = None
) -> InboundEvent:
    """Any other submission type, on the agency's own topic keyed by the agency_case_ref."""
    ref = payload.agency_case_ref
    return InboundEvent.from_record(
        f.record_of(
            build_event(
                topic=topics.AGENCY_SUBMISSIONS.name(agency),
                key=key or ref,
                type_=type_,
                source=messages.agency_source(agency),
                subject=ref,
                data=payload,
                agency_id=agency,
            )
        )
    )


def _update(ref: str, **blocks: Any) -> InboundEvent:
    update = ev.CaseUpdate.model_validate({"agency_id": AGENCY, "agency_case_ref": ref, **blocks})
    return _message(ev.CASE_UPDATE_SUBMITTED, update)


def _withdrawal(ref: str, purposes: list[str] | None = None) -> InboundEvent:
    withdrawal = ev.ConsentWithdrawal.model_validate(
        {"agency_id": AGENCY, "agency_case_ref": ref, "withdrawn_at": _past(), "purposes": purposes}
    )
    return _message(ev.CONSENT_WITHDRAWN, withdrawal)


def _erasure(ref: str) -> InboundEvent:
    erasure = ev.ErasureRequest(
        agency_id=AGENCY,
        agency_case_ref=ref,
        requested_at=_past(),
        basis="data_subject_request",
    )
    return _message(ev.ERASURE_REQUESTED, erasure)


def _closure(ref: str, reason: ev.ClosureReason = ev.ClosureReason.RELOCATED) -> InboundEvent:
    closure = ev.CaseClosure(
        agency_id=AGENCY, agency_case_ref=ref, closed_at=_past(), reason=reason
    )
    return _message(ev.CASE_CLOSURE_SUBMITTED, closure)


def _person(**overrides: Any) -> dict[str, Any]:
    return {
        "given_name": "Awa",
        "family_name": "Diop",
        "date_of_birth": "1990-05-01",
        "contacts": [{"kind": "phone", "value": "+221700000000"}],
        "documents": [{"kind": "passport", "number": "A1234567", "issuing_country": "SN"}],
        "preferred_language": "fr",
        **overrides,
    }


# ----- running the handlers -----


async def _submit(store: FakeIntakeStore, event: InboundEvent) -> Unit[Any]:
    unit: Unit[Any] = Unit(None, store, SOURCE, Cause.of(event))  # type: ignore[arg-type]
    await HANDLERS.on_submission(event, unit)
    return unit


async def _register(store: FakeIntakeStore, **overrides: Any) -> CaseRow:
    submission = f.submission(AGENCY, **overrides)
    await _submit(store, _submitted(submission))
    return store.case(submission.agency_case_ref)


def _sent(unit: Unit[Any]) -> list[tuple[str, str, str]]:
    return [(e.topic, e.headers["ce_type"], e.key) for e in unit.emitted]


def _body(unit: Unit[Any], index: int) -> dict[str, Any]:
    """The event's data, without the schema_version every contract carries."""
    document: dict[str, Any] = json.loads(unit.emitted[index].body)
    assert document.pop("schema_version") == "1"
    return document


def _consent(**overrides: Any) -> ev.Consent:
    return ev.Consent.model_validate(f.consent(**overrides))


# ----- new cases -----


async def test_a_new_case_is_registered_and_answered_on_the_cases_topic_keyed_by_the_case() -> None:
    store = FakeIntakeStore()
    submission = f.submission(AGENCY, personal=_person())
    event = _submitted(submission)

    unit = await _submit(store, event)

    row = store.case(submission.agency_case_ref)
    assert _sent(unit) == [
        (topics.INTAKE_CASES, ev.CASE_REGISTERED, row.case_id),
        (topics.INTAKE_CASES, ev.SUBMISSION_ACCEPTED, row.case_id),
    ]
    for emitted in unit.emitted:
        assert emitted.headers["ce_source"] == SOURCE
        assert emitted.headers["ce_subject"] == row.case_id
        assert emitted.headers["ce_causationid"] == event.event_id
        assert emitted.headers["ce_correlationid"] == event.correlation_id
    registered = _body(unit, 0)
    assert registered["case_id"] == row.case_id
    assert registered["submitting_agency_id"] == AGENCY
    assert [n["need_id"] for n in registered["needs"]] == ["n1"]
    assert registered["possible_duplicate_of"] == []
    assert ev.Consent.model_validate(registered["consent"]) == submission.consent
    raw = unit.emitted[0].body.decode()
    assert "personal" not in registered
    for identifying in ("Awa", "Diop", "1990-05-01", "+221700000000", "A1234567"):
        assert identifying not in raw, "personal data on a pseudonymous topic"
    assert _body(unit, 1) == {
        "submission_id": event.event_id,
        "agency_id": AGENCY,
        "agency_case_ref": submission.agency_case_ref,
        "case_id": row.case_id,
        "outcome": "registered",
    }
    # what was stored
    assert (row.status, row.consent_version, row.needs) == ("open", 1, submission.needs)
    assert store.personal[row.case_id] == submission.personal
    assert store.hashes[row.case_id][0] == "dup-1"
    assert len(store.hashes[row.case_id][1]) == 2, "name+dob and the passport"
    assert store.consent_records == [(row.case_id, 1, "given", submission.consent, event.event_id)]
    assert store.history == [
        (
            row.case_id,
            "registered",
            event.event_id,
            AGENCY,
            {"needs": ["n1"], "consent_version": 1, "possible_duplicate_of": []},
        )
    ]
    assert store.submissions == {event.event_id: (AGENCY, row.case_id, "registered")}


async def test_a_new_case_with_refused_consent_is_registered_with_a_refused_consent_record() -> (
    None
):
    store = FakeIntakeStore()
    row = await _register(store, consent=f.consent(given=False, scope=None))
    [(case_id, version, kind, consent, _)] = store.consent_records
    assert (case_id, version, kind, consent.given) == (row.case_id, 1, "refused", False)


async def test_possible_duplicates_of_other_agencies_appear_in_the_case_events() -> None:
    store = FakeIntakeStore()
    first = await _register(store, personal=_person())
    # the same person at another agency: names swapped and accented, same date of birth
    theirs = f.submission(
        OTHER_AGENCY, personal=_person(given_name="DIOP", family_name="Awà", documents=[])
    )
    unit = await _submit(store, _submitted(theirs))

    second = store.case(theirs.agency_case_ref, OTHER_AGENCY)
    assert _body(unit, 0)["possible_duplicate_of"] == [first.case_id]
    assert store.history[-1][4]["possible_duplicate_of"] == [first.case_id]

    # an update of the first case (needs only) recomputes its identity from the stored data
    update = await _submit(store, _update(first.agency_case_ref, needs=f.needs("social.housing")))
    assert _sent(update)[0] == (topics.INTAKE_CASES, ev.CASE_UPDATED, first.case_id)
    assert _body(update, 0)["possible_duplicate_of"] == [second.case_id]


# ----- the same case again -----


async def test_the_same_ref_again_updates_the_case_without_a_new_consent_version() -> None:
    store = FakeIntakeStore()
    first = f.submission(AGENCY)
    await _submit(store, _submitted(first))
    row = store.case(first.agency_case_ref)
    again = f.submission(
        AGENCY,
        agency_case_ref=first.agency_case_ref,
        personal=_person(given_name="Aïssatou"),
        needs=[
            {"need_id": "n1", "category": "psychosocial.counselling"},
            {"need_id": "n2", "category": "social.housing"},
        ],
    )
    event = _submitted(again)

    unit = await _submit(store, event)

    assert _sent(unit) == [
        (topics.INTAKE_CASES, ev.CASE_UPDATED, row.case_id),
        (topics.INTAKE_CASES, ev.SUBMISSION_ACCEPTED, row.case_id),
    ]
    assert [n["need_id"] for n in _body(unit, 0)["needs"]] == ["n1", "n2"]
    assert (_body(unit, 1)["outcome"], _body(unit, 1)["case_id"]) == ("updated", row.case_id)
    assert list(store.cases) == [row.case_id], "the same case, not a second one"
    updated = store.cases[row.case_id]
    assert (updated.needs, updated.consent_version) == (again.needs, 1)
    assert store.personal[row.case_id] == again.personal
    assert [kind for _, _, kind, _, _ in store.consent_records] == ["given"]
    assert store.history[-1] == (
        row.case_id,
        "updated",
        event.event_id,
        AGENCY,
        {"needs": ["n1", "n2"], "consent_version": 1, "possible_duplicate_of": []},
    )
    assert store.submissions[event.event_id] == (AGENCY, row.case_id, "updated")


async def test_the_same_ref_with_another_consent_makes_a_new_version_and_tells_it() -> None:
    store = FakeIntakeStore()
    first = f.submission(AGENCY)
    await _submit(store, _submitted(first))
    row = store.case(first.agency_case_ref)
    narrower = f.consent(scope={"purposes": ["referral"]}, recorded_at="2026-11-02T10:00:00Z")
    event = _submitted(
        f.submission(AGENCY, agency_case_ref=first.agency_case_ref, consent=narrower)
    )

    unit = await _submit(store, event)

    assert _sent(unit) == [
        (topics.INTAKE_CASES, ev.CASE_UPDATED, row.case_id),
        (topics.INTAKE_CASES, ev.CONSENT_CHANGED, row.case_id),
        (topics.INTAKE_CASES, ev.SUBMISSION_ACCEPTED, row.case_id),
    ]
    changed = _body(unit, 1)
    assert changed["case_id"] == row.case_id
    assert changed["consent"]["scope"]["purposes"] == ["referral"]
    assert store.cases[row.case_id].consent_version == 2
    assert store.consent_records[-1] == (
        row.case_id,
        2,
        "changed",
        _consent(**narrower),
        event.event_id,
    )
    assert store.history[-1][4]["consent_version"] == 2


async def test_a_partial_update_replaces_only_its_blocks_and_keeps_the_personal_data() -> None:
    store = FakeIntakeStore()
    row = await _register(store, personal=_person())
    event = _update(row.agency_case_ref, needs=f.needs("social.housing"))

    unit = await _submit(store, event)

    assert [t for _, t, _ in _sent(unit)] == [ev.CASE_UPDATED, ev.SUBMISSION_ACCEPTED]
    updated = store.cases[row.case_id]
    assert [n.category for n in updated.needs] == ["social.housing"]
    assert (updated.profile, updated.consent, updated.consent_version) == (
        row.profile,
        row.consent,
        1,
    )
    assert store.personal[row.case_id] == ev.PersonalData.model_validate(_person())


async def test_a_new_personal_block_in_an_update_replaces_the_stored_one() -> None:
    store = FakeIntakeStore()
    row = await _register(store, personal=_person())
    await _submit(store, _update(row.agency_case_ref, personal=_person(family_name="Ndiaye")))
    personal = store.personal[row.case_id]
    assert personal is not None and personal.family_name == "Ndiaye"


# ----- consent withdrawal, erasure, closure -----


async def test_withdrawing_all_consent_makes_a_withdrawn_version_and_tells_it() -> None:
    store = FakeIntakeStore()
    row = await _register(store)
    event = _withdrawal(row.agency_case_ref)

    unit = await _submit(store, event)

    assert _sent(unit) == [
        (topics.INTAKE_CASES, ev.CONSENT_CHANGED, row.case_id),
        (topics.INTAKE_CASES, ev.SUBMISSION_ACCEPTED, row.case_id),
    ]
    assert _body(unit, 0)["consent"]["given"] is False
    assert "scope" not in _body(unit, 0)["consent"]
    assert (_body(unit, 1)["outcome"], _body(unit, 1)["submission_id"]) == (
        "consent_withdrawn",
        event.event_id,
    )
    stored = store.cases[row.case_id]
    assert (stored.consent.given, stored.consent_version) == (False, 2)
    assert store.consent_records[-1][:3] == (row.case_id, 2, "withdrawn")
    assert store.consent_records[-1][4] == event.event_id
    assert store.history[-1] == (
        row.case_id,
        "consent_withdrawn",
        event.event_id,
        AGENCY,
        {"consent_version": 2},
    )
    assert store.submissions[event.event_id] == (AGENCY, row.case_id, "consent_withdrawn")


async def test_withdrawing_some_purposes_keeps_the_others() -> None:
    store = FakeIntakeStore()
    row = await _register(store)  # referral and follow_up
    unit = await _submit(store, _withdrawal(row.agency_case_ref, ["follow_up"]))
    consent = _body(unit, 0)["consent"]
    assert (consent["given"], consent["scope"]["purposes"]) == (True, ["referral"])
    assert store.cases[row.case_id].consent.scope == ev.ConsentScope(
        purposes=[ev.ConsentPurpose.REFERRAL]
    )


async def test_an_erasure_destroys_the_personal_data_and_tells_who_asked() -> None:
    store = FakeIntakeStore()
    row = await _register(store)
    event = _erasure(row.agency_case_ref)

    unit = await _submit(store, event)

    assert _sent(unit) == [
        (topics.INTAKE_CASES, ev.CASE_ERASED, row.case_id),
        (topics.INTAKE_CASES, ev.SUBMISSION_ACCEPTED, row.case_id),
    ]
    erased = _body(unit, 0)
    assert (erased["case_id"], erased["submitting_agency_id"], erased["agency_case_ref"]) == (
        row.case_id,
        AGENCY,
        row.agency_case_ref,
    )
    assert "erased_at" in erased
    assert _body(unit, 1)["outcome"] == "erased"
    assert store.cases[row.case_id].status == "erased"
    assert store.personal[row.case_id] is None
    assert store.history[-1] == (row.case_id, "erased", event.event_id, AGENCY, {})
    assert store.submissions[event.event_id] == (AGENCY, row.case_id, "erased")


async def test_an_erased_case_is_unknown_to_later_messages() -> None:
    store = FakeIntakeStore()
    row = await _register(store)
    await _submit(store, _erasure(row.agency_case_ref))

    update = await _submit(store, _update(row.agency_case_ref, needs=f.needs()))
    assert _sent(update) == [(topics.INTAKE_REJECTIONS, ev.SUBMISSION_REJECTED, AGENCY)]
    assert [e["field"] for e in _body(update, 0)["errors"]] == ["agency_case_ref"]

    again = await _submit(store, _submitted(f.submission(agency_case_ref=row.agency_case_ref)))
    assert _sent(again) == [(topics.INTAKE_REJECTIONS, ev.SUBMISSION_REJECTED, AGENCY)]
    assert "erased" in _body(again, 0)["reason"]
    assert store.cases[row.case_id].status == "erased"
    assert list(store.cases) == [row.case_id]


async def test_a_closure_closes_the_case_with_its_reason() -> None:
    store = FakeIntakeStore()
    row = await _register(store)
    event = _closure(row.agency_case_ref, ev.ClosureReason.RELOCATED)

    unit = await _submit(store, event)

    assert _sent(unit) == [
        (topics.INTAKE_CASES, ev.CASE_CLOSED, row.case_id),
        (topics.INTAKE_CASES, ev.SUBMISSION_ACCEPTED, row.case_id),
    ]
    closed = _body(unit, 0)
    assert (closed["case_id"], closed["reason"]) == (row.case_id, "relocated")
    assert closed["open_referrals"] == "cancel", "the default, as before"
    sent = ev.CaseClosure.model_validate_json(event.value or b"")
    assert datetime.fromisoformat(closed["closed_at"]) == sent.closed_at
    assert _body(unit, 1)["outcome"] == "closed"
    assert store.cases[row.case_id].status == "closed"
    assert store.closed_reasons[row.case_id] == "relocated"
    assert store.history[-1] == (
        row.case_id,
        "closed",
        event.event_id,
        AGENCY,
        {"reason": "relocated", "open_referrals": "cancel"},
    )
    assert store.submissions[event.event_id] == (AGENCY, row.case_id, "closed")


# ----- rejections -----


@pytest.mark.parametrize(
    "message",
    [
        lambda ref: _update(ref, needs=f.needs()),
        _withdrawal,
        _erasure,
        _closure,
    ],
    ids=["update", "consent-withdrawal", "erasure", "closure"],
)
async def test_a_message_about_an_unknown_ref_is_rejected_to_the_agency(message: Any) -> None:
    store = FakeIntakeStore()
    await _register(store)  # another case of the agency
    before = (dict(store.cases), list(store.history), list(store.consent_records))
    event = message("NO-SUCH-CASE")

    unit = await _submit(store, event)

    assert _sent(unit) == [(topics.INTAKE_REJECTIONS, ev.SUBMISSION_REJECTED, AGENCY)]
    assert unit.emitted[0].headers["ce_subject"] == event.event_id
    assert unit.emitted[0].headers["ce_causationid"] == event.event_id
    rejected = _body(unit, 0)
    assert (rejected["submission_id"], rejected["agency_id"], rejected["topic"]) == (
        event.event_id,
        AGENCY,
        topics.AGENCY_SUBMISSIONS.name(AGENCY),
    )
    assert [e["field"] for e in rejected["errors"]] == ["agency_case_ref"]
    assert "NO-SUCH-CASE" not in unit.emitted[0].body.decode(), "a refusal echoes no value"
    assert store.submissions[event.event_id] == (AGENCY, None, "rejected")
    assert (dict(store.cases), store.history, store.consent_records) == before


async def test_a_submission_for_a_closed_case_is_rejected_and_changes_nothing() -> None:
    store = FakeIntakeStore()
    row = await _register(store)
    await _submit(store, _closure(row.agency_case_ref))
    closed, history = store.cases[row.case_id], list(store.history)
    event = _submitted(
        f.submission(AGENCY, agency_case_ref=row.agency_case_ref, needs=f.needs("social.housing"))
    )

    unit = await _submit(store, event)

    assert _sent(unit) == [(topics.INTAKE_REJECTIONS, ev.SUBMISSION_REJECTED, AGENCY)]
    rejected = _body(unit, 0)
    assert "closed" in rejected["reason"]
    assert [e["field"] for e in rejected["errors"]] == ["agency_case_ref"]
    assert store.cases[row.case_id] == closed
    assert store.history == history
    assert store.submissions[event.event_id] == (AGENCY, None, "rejected")


async def test_an_update_for_a_closed_case_is_rejected_like_a_resubmission() -> None:
    store = FakeIntakeStore()
    row = await _register(store)
    await _submit(store, _closure(row.agency_case_ref))
    closed = store.cases[row.case_id]

    unit = await _submit(store, _update(row.agency_case_ref, needs=f.needs("social.housing")))

    assert _sent(unit) == [(topics.INTAKE_REJECTIONS, ev.SUBMISSION_REJECTED, AGENCY)]
    assert store.cases[row.case_id] == closed

    again = await _submit(store, _closure(row.agency_case_ref))  # nor is it closed twice
    assert _sent(again) == [(topics.INTAKE_REJECTIONS, ev.SUBMISSION_REJECTED, AGENCY)]
    assert store.cases[row.case_id] == closed


async def test_a_message_not_keyed_by_its_ref_is_rejected_before_any_case_is_touched() -> None:
    store = FakeIntakeStore()
    submission = f.submission(AGENCY)
    event = InboundEvent.from_record(
        f.record_of(replace(messages.submission_message(submission), key="another-key"))
    )

    unit = await _submit(store, event)

    assert _sent(unit) == [(topics.INTAKE_REJECTIONS, ev.SUBMISSION_REJECTED, AGENCY)]
    assert [e["field"] for e in _body(unit, 0)["errors"]] == ["(key)"]
    assert store.cases == {} and store.history == [] and store.consent_records == []
    assert store.submissions == {event.event_id: (AGENCY, None, "rejected")}


# ----- personal blocks sealed for intake (issue 22, decision 32) -----

SUBMISSION_KEY = PrivateKey(bytes(range(7, 39)))
SEALING = IntakeHandlers(
    replace(KEYS, submission=SubmissionKeys(SUBMISSION_KEY)), require_sealed_personal=True
)


async def _submit_sealing(store: FakeIntakeStore, event: InboundEvent) -> Unit[Any]:
    unit: Unit[Any] = Unit(None, store, SOURCE, Cause.of(event))  # type: ignore[arg-type]
    await SEALING.preload_submissions(store, [event])  # type: ignore[arg-type]
    await SEALING.on_submission(event, unit)
    return unit


def _sealed(personal: dict[str, Any]) -> dict[str, str]:
    return f.sealed_personal(personal, bytes(SUBMISSION_KEY.public_key))


async def test_a_sealed_personal_block_registers_the_case_as_a_clear_one_would() -> None:
    store = FakeIntakeStore()
    submission = f.submission(AGENCY, personal=_sealed(_person()))
    unit = await _submit_sealing(store, _submitted(submission))

    row = store.case(submission.agency_case_ref)
    assert [t for _, t, _ in _sent(unit)] == [ev.CASE_REGISTERED, ev.SUBMISSION_ACCEPTED]
    # stored opened (the store encrypts it under the case's key), hashed for duplicates
    assert store.personal[row.case_id] == ev.PersonalData.model_validate(_person())
    assert len(store.hashes[row.case_id][1]) == 2, "name+dob and the passport"
    assert set(store.preloaded_hashes) == store.hashes[row.case_id][1]  # opened there too
    assert "sealed_box" not in unit.emitted[0].body.decode()


async def test_a_sealed_block_in_an_update_replaces_the_stored_one() -> None:
    store = FakeIntakeStore()
    await _submit_sealing(store, _submitted(f.submission(AGENCY, personal=_sealed(_person()))))
    [row] = store.cases.values()
    await _submit_sealing(
        store, _update(row.agency_case_ref, personal=_sealed(_person(family_name="Ndiaye")))
    )
    personal = store.personal[row.case_id]
    assert personal is not None and personal.family_name == "Ndiaye"


@pytest.mark.parametrize(
    ("personal", "code", "field"),
    [
        (_person(), "personal_not_sealed", "personal"),
        (
            f.sealed_personal(_person(), bytes(PrivateKey.generate().public_key)),
            "sealed_key_unknown",
            "personal.key_sha256",
        ),
        (
            {**_sealed(_person()), "sealed_box": base64.b64encode(b"x" * 80).decode()},
            "sealed_box_unopenable",
            "personal.sealed_box",
        ),
        (_sealed({"given_name": "Awa"}), "sealed_personal_invalid", "personal.family_name"),
    ],
    ids=["clear", "unknown key", "unopenable", "invalid content"],
)
async def test_a_block_intake_cannot_use_is_rejected_with_its_code_and_nothing_is_kept(
    personal: dict[str, Any], code: str, field: str
) -> None:
    store = FakeIntakeStore()
    event = _submitted(f.submission(AGENCY, personal=personal))

    unit = await _submit_sealing(store, event)

    assert _sent(unit) == [(topics.INTAKE_REJECTIONS, ev.SUBMISSION_REJECTED, AGENCY)]
    rejected = _body(unit, 0)
    assert (rejected["submission_id"], rejected["error"]) == (event.event_id, code)
    assert [e["field"] for e in rejected["errors"]] == [field]
    assert "Awa" not in unit.emitted[0].body.decode()
    assert store.cases == {} and store.history == [] and store.consent_records == []
    assert store.submissions == {event.event_id: (AGENCY, None, "rejected")}


# ----- disclosures -----


async def _provider(
    store: FakeIntakeStore,
    type_: ev.AgencyType = ev.AgencyType.NGO,
    *,
    with_key: bool = True,
    agency_id: str = PROVIDER,
) -> PrivateKey:
    private = PrivateKey.generate()
    public_key = base64.b64encode(bytes(private.public_key)).decode() if with_key else None
    agency = ev.AgencyRecord(
        agency_id=agency_id, name=agency_id, type=type_, countries=["SN"], public_key=public_key
    )
    cause = Cause(None, "agency-event", ev.AGENCY_REGISTERED)
    unit: Unit[Any] = Unit(None, store, SOURCE, cause)  # type: ignore[arg-type]
    await HANDLERS.on_agency(agency, unit)
    assert unit.emitted == []
    return private


def _referral(case_id: str, **overrides: Any) -> ev.ReferralRequested:
    return ev.ReferralRequested.model_validate(
        {
            "referral_id": str(uuid.uuid4()),
            "case_id": case_id,
            "need_id": "n1",
            "category": "psychosocial.counselling",
            "urgency": "normal",
            "referring_agency_id": AGENCY,
            "recipient_agency_id": PROVIDER,
            "service_id": "svc-1",
            "explanation": {"matched": ["category"], "score": 0.9, "components": {}},
            **overrides,
        }
    )


async def _refer(store: FakeIntakeStore, referral: ev.ReferralRequested) -> Unit[Any]:
    cause = Cause("conversation-1", REFERRAL_EVENT, ev.REFERRAL_REQUESTED)
    unit: Unit[Any] = Unit(None, store, SOURCE, cause)  # type: ignore[arg-type]
    await HANDLERS.on_referral_requested(referral, unit)
    return unit


async def test_a_covered_disclosure_is_sealed_for_the_recipient_with_the_minimum_only() -> None:
    store = FakeIntakeStore()
    row = await _register(store, personal=_person())
    private = await _provider(store)
    referral = _referral(row.case_id)

    unit = await _refer(store, referral)

    assert _sent(unit) == [(topics.INTAKE_DISCLOSURES, ev.DISCLOSURE_SEALED, row.case_id)]
    headers = unit.emitted[0].headers
    assert headers["ce_subject"] == referral.referral_id
    assert headers["ce_causationid"] == REFERRAL_EVENT
    assert headers["ce_correlationid"] == "conversation-1"
    sealed = _body(unit, 0)
    key_sha256 = hashlib.sha256(bytes(private.public_key)).hexdigest()
    assert (sealed["referral_id"], sealed["case_id"], sealed["recipient_agency_id"]) == (
        referral.referral_id,
        row.case_id,
        PROVIDER,
    )
    assert sealed["recipient_key_sha256"] == key_sha256
    assert datetime.fromisoformat(sealed["consent_recorded_at"]) == row.consent.recorded_at
    opened = json.loads(SealedBox(private).decrypt(base64.b64decode(sealed["sealed_box"])))
    assert set(opened) == {
        "schema_version",
        "given_name",
        "family_name",
        "contacts",
        "preferred_language",
    }, "the minimum to contact the returnee: no date of birth, no documents"
    personal = ev.PersonalData.model_validate(_person())
    assert ev.DisclosedContact.model_validate(opened) == ev.DisclosedContact(
        given_name="Awa",
        family_name="Diop",
        contacts=personal.contacts,
        preferred_language="fr",
    )
    raw = unit.emitted[0].body.decode()
    assert "Awa" not in raw and "Diop" not in raw, "only sealed"
    with pytest.raises(CryptoError):  # sealed for its key only
        SealedBox(PrivateKey.generate()).decrypt(base64.b64decode(sealed["sealed_box"]))
    assert store.disclosures == {
        referral.referral_id: DisclosureEntry(
            disclosure_id=sealed["disclosure_id"],
            referral_id=referral.referral_id,
            case_id=row.case_id,
            recipient_agency_id=PROVIDER,
            outcome="disclosed",
            reason=None,
            consent_version=1,
            recipient_key_sha256=key_sha256,
            source_event_id=REFERRAL_EVENT,
        )
    }
    assert store.history[-1] == (
        row.case_id,
        "disclosed",
        REFERRAL_EVENT,
        PROVIDER,
        {"referral_id": referral.referral_id, "consent_version": 1},
    )


async def _withdraw_all(store: FakeIntakeStore, row: CaseRow) -> None:
    await _submit(store, _withdrawal(row.agency_case_ref))


async def _close(store: FakeIntakeStore, row: CaseRow) -> None:
    await _submit(store, _closure(row.agency_case_ref))


async def _erase(store: FakeIntakeStore, row: CaseRow) -> None:
    await _submit(store, _erasure(row.agency_case_ref))


@pytest.mark.parametrize(
    ("consent", "with_key", "then", "reason"),
    [
        ({"given": False, "scope": None}, True, None, ev.DisclosureRefusalReason.NO_CONSENT),
        ({}, True, _withdraw_all, ev.DisclosureRefusalReason.NO_CONSENT),
        (
            {"scope": {"purposes": ["referral"], "agency_types": ["government"]}},
            True,
            None,
            ev.DisclosureRefusalReason.AGENCY_TYPE_NOT_COVERED,
        ),
        (
            {"scope": {"purposes": ["referral"], "agency_ids": ["someone-else"]}},
            True,
            None,
            ev.DisclosureRefusalReason.AGENCY_NOT_COVERED,
        ),
        (
            {"scope": {"purposes": ["follow_up"]}},
            True,
            None,
            ev.DisclosureRefusalReason.PURPOSE_NOT_COVERED,
        ),
        ({}, False, None, ev.DisclosureRefusalReason.NO_PUBLIC_KEY),
        ({}, True, _close, ev.DisclosureRefusalReason.CASE_NOT_OPEN),
        ({}, True, _erase, ev.DisclosureRefusalReason.CASE_NOT_OPEN),
    ],
    ids=[
        "consent-refused",
        "consent-withdrawn",
        "agency-type-not-covered",
        "agency-not-covered",
        "purpose-not-covered",
        "no-public-key",
        "case-closed",
        "case-erased",
    ],
)
async def test_an_uncovered_disclosure_is_refused_with_its_reason_and_logged(
    consent: dict[str, Any], with_key: bool, then: Any, reason: ev.DisclosureRefusalReason
) -> None:
    store = FakeIntakeStore()
    row = await _register(store, personal=_person(), consent=f.consent(**consent))
    await _provider(store, ev.AgencyType.NGO, with_key=with_key)
    if then is not None:
        await then(store, row)
    referral = _referral(row.case_id)

    unit = await _refer(store, referral)

    assert _sent(unit) == [(topics.INTAKE_DISCLOSURES, ev.DISCLOSURE_REFUSED, row.case_id)]
    assert unit.emitted[0].headers["ce_subject"] == referral.referral_id
    refused = _body(unit, 0)
    assert refused == {
        "disclosure_id": refused["disclosure_id"],
        "referral_id": referral.referral_id,
        "case_id": row.case_id,
        "recipient_agency_id": PROVIDER,
        "reason": reason.value,
    }
    assert "Awa" not in unit.emitted[0].body.decode()
    entry = store.disclosures[referral.referral_id]
    assert (entry.disclosure_id, entry.outcome, entry.reason, entry.recipient_key_sha256) == (
        refused["disclosure_id"],
        "refused",
        reason.value,
        None,
    )
    assert entry.consent_version == store.cases[row.case_id].consent_version
    assert entry.source_event_id == REFERRAL_EVENT
    assert store.history[-1] == (
        row.case_id,
        "disclosure_refused",
        REFERRAL_EVENT,
        PROVIDER,
        {"referral_id": referral.referral_id, "reason": reason.value},
    )


@pytest.mark.parametrize("recipient_known", [True, False], ids=["known", "unknown-recipient"])
async def test_a_referral_of_an_unknown_case_is_refused_and_nothing_is_logged(
    recipient_known: bool,
) -> None:
    store = FakeIntakeStore()
    await _register(store)
    if recipient_known:
        await _provider(store)
    history = list(store.history)
    referral = _referral(str(uuid.uuid4()))

    unit = await _refer(store, referral)

    assert _sent(unit) == [(topics.INTAKE_DISCLOSURES, ev.DISCLOSURE_REFUSED, referral.case_id)]
    assert _body(unit, 0)["reason"] == "unknown_case"
    assert store.disclosures == {}, "the logs are a case's: an unknown case has none"
    assert store.history == history


async def test_a_referral_decided_before_emits_and_logs_nothing_again() -> None:
    store = FakeIntakeStore()
    row = await _register(store)
    await _provider(store)
    referral = _referral(row.case_id)
    first = await _refer(store, referral)
    assert [t for _, t, _ in _sent(first)] == [ev.DISCLOSURE_SEALED]
    logged, history = dict(store.disclosures), list(store.history)

    again = await _refer(store, referral)  # a redelivery

    assert again.emitted == []
    assert store.disclosures == logged and store.history == history


async def test_a_decision_logged_as_refused_is_not_redecided_once_it_would_be_covered() -> None:
    store = FakeIntakeStore()
    row = await _register(store)
    await _provider(store, with_key=False)
    referral = _referral(row.case_id)
    assert _body(await _refer(store, referral), 0)["reason"] == "no_public_key"
    await _provider(store)  # the agency's key arrives later

    assert (await _refer(store, referral)).emitted == []
    assert store.disclosures[referral.referral_id].outcome == "refused"


async def test_an_unknown_recipient_of_a_known_case_is_transient() -> None:
    store = FakeIntakeStore()
    row = await _register(store)
    history = list(store.history)
    referral = _referral(row.case_id, recipient_agency_id="not-read-yet")
    cause = Cause("conversation-1", REFERRAL_EVENT, ev.REFERRAL_REQUESTED)
    unit: Unit[Any] = Unit(None, store, SOURCE, cause)  # type: ignore[arg-type]

    with pytest.raises(LookupError, match="not-read-yet"):
        await HANDLERS.on_referral_requested(referral, unit)

    assert unit.emitted == []
    assert store.disclosures == {} and store.history == history


# ----- the agency registry -----


async def test_an_agency_record_is_kept_replaced_and_removed() -> None:
    store = FakeIntakeStore()
    await _provider(store, ev.AgencyType.NGO, with_key=False)
    assert store.agencies == {PROVIDER: Recipient(ev.AgencyType.NGO, None)}

    private = await _provider(store, ev.AgencyType.GOVERNMENT)
    key = base64.b64encode(bytes(private.public_key)).decode()
    assert store.agencies == {PROVIDER: Recipient(ev.AgencyType.GOVERNMENT, key)}

    removal = Cause(None, "tombstone", None)
    unit: Unit[Any] = Unit(None, store, SOURCE, removal)  # type: ignore[arg-type]
    await HANDLERS.on_agency_removed(PROVIDER, unit)
    assert store.agencies == {} and unit.emitted == []

    # a referral to it is now the unknown-recipient case: transient, nothing emitted
    row = await _register(store)
    with pytest.raises(LookupError):
        await _refer(store, _referral(row.case_id))
    assert store.disclosures == {}
