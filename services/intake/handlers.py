"""Intake's Kafka handlers; each runs inside the consumer's transaction (shared.kafka.consumer).

Only pseudonymous data leaves in clear: case events carry the profile, needs and consent; the
personal data is stored encrypted and leaves only sealed for one recipient: a referral's
(disclosures.py) or a handed-over case's new owner (handovers.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from shared.contracts import events as ev
from shared.contracts import outcomes, topics
from shared.contracts.outcomes import INDICATOR_SETS
from shared.kafka.agency_input import Refusal, refusal
from shared.kafka.agency_messages import Submission, read_submission
from shared.kafka.inbound import InboundEvent
from shared.logging import get_logger
from shared.unit import Unit

from . import community, disclosures, handovers, identity
from .cases import CaseRow
from .community import CommunityNeedRow
from .consent import after_withdrawal, duplicate_not_told
from .follow_ups import DEFAULT_PROGRAMME, Programme, assessment_refusal, follows_up
from .sealing import SubmissionKeys, clear, open_submission
from .store import DisclosureEntry, IntakeStore

SOURCE = "urn:referralexchange:service:intake"

log = get_logger(__name__)

IntakeUnit = Unit[IntakeStore]


@dataclass(frozen=True, slots=True)
class IntakeKeys:
    master_key: bytes  # wraps the per-case data keys
    duplicate_key: bytes  # HMAC key of the identity hashes
    duplicate_key_id: str
    # Open the personal blocks agencies seal for intake (issue 22, sealing.py).
    submission: SubmissionKeys = field(default_factory=SubmissionKeys)


class IntakeHandlers:
    def __init__(
        self,
        keys: IntakeKeys,
        programme: Programme = DEFAULT_PROGRAMME,
        *,
        require_sealed_personal: bool = False,
    ) -> None:
        self._keys = keys
        self._programme = programme  # the owners' follow-up plans (issue 19)
        # INTAKE_REQUIRE_SEALED_PERSONAL: a personal block in clear is refused (issue 22).
        self._require_sealed = require_sealed_personal

    def _read(self, event: InboundEvent) -> Submission | Refusal:
        """The submission, its personal block opened (before anything else reads it), or the
        refusal for its agency."""
        result = read_submission(event)
        if isinstance(result, Refusal):
            return result
        return open_submission(
            event, result, self._keys.submission, require_sealed=self._require_sealed
        )

    # ----- agency.<id>.submissions.v1 -----

    async def preload_submissions(
        self, stores: IntakeStore, events: Sequence[InboundEvent]
    ) -> None:
        """What a batch of submissions will read, loaded at once: its cases, and the holders
        of the identity hashes its personal data gives (each message is read here once more,
        a sealed block opened once more: both are cheap beside a round trip per case)."""
        hashes = []
        for event in events:
            result = self._read(event)
            personal = (
                result.personal if isinstance(result, ev.CaseSubmission | ev.CaseUpdate) else None
            )
            if personal is not None:
                hashes += identity.identity_hashes(self._keys.duplicate_key, clear(personal))
        await stores.preload_submissions(events, self._keys.duplicate_key_id, hashes)

    async def on_submission(self, event: InboundEvent, unit: IntakeUnit) -> None:
        result = self._read(event)
        if isinstance(result, Refusal):
            await _reject(event, unit, result)
            return
        if isinstance(result, ev.ErasureConfirmation):  # a recipient's, about a referral
            await self._confirm_erasure(event, unit, result)
            return
        if isinstance(result, ev.AssessmentSubmission):  # an owner's, about a case by its id
            await self._record_assessment(event, unit, result)
            return
        row = await unit.stores.find_case(result.agency_id, result.agency_case_ref)
        if row is None:
            former = await unit.stores.former_owner(result.agency_id, result.agency_case_ref)
            if former is not None:
                # Whatever it is (even a whole case again): the reference is the new owner's
                # case now, and only the new owner writes it.
                await _reject(
                    event,
                    unit,
                    refusal(
                        event,
                        f"the case was handed over to {former.to_agency_id}; "
                        "its new owner writes it",
                        "agency_case_ref",
                    ),
                )
                return
        if isinstance(result, ev.CommunityNeedSubmission):
            await self._submit_community_need(event, unit, result, row)
            return
        if isinstance(result, ev.CaseSubmission):
            await self._submit_case(event, unit, result, row)
            return
        if row is None and await self._ends_community_need(event, unit, result):
            return
        if row is None or row.status == "erased":
            await _reject(
                event,
                unit,
                refusal(event, "no case with this agency_case_ref", "agency_case_ref"),
            )
            return
        if row.status == "closed" and isinstance(result, ev.CaseUpdate | ev.CaseClosure):
            # A closed case takes no more updates (they would route new needs) and is not
            # closed twice; a withdrawal or an erasure still applies (the returnee's rights).
            await _reject(
                event,
                unit,
                refusal(
                    event,
                    "the case is closed; submit it under a new agency_case_ref",
                    "agency_case_ref",
                ),
            )
            return
        if isinstance(result, ev.AssistanceEnd):
            await self._end_assistance(event, unit, row, result)
        elif isinstance(result, ev.CaseUpdate):
            await self._update_case(event, unit, row, result)
        elif isinstance(result, ev.ConsentWithdrawal):
            await self._withdraw_consent(event, unit, row, result)
        elif isinstance(result, ev.ErasureRequest):
            await self._erase(event, unit, row)
        else:
            await self._close(event, unit, row, result)

    async def _submit_case(
        self,
        event: InboundEvent,
        unit: IntakeUnit,
        submission: ev.CaseSubmission,
        row: CaseRow | None,
    ) -> None:
        if row is not None and row.status != "open":
            await _reject(
                event,
                unit,
                refusal(
                    event,
                    f"the case is {row.status}; submit it under a new agency_case_ref",
                    "agency_case_ref",
                ),
            )
            return
        if row is None:
            hashes = identity.identity_hashes(self._keys.duplicate_key, clear(submission.personal))
            row, duplicates = await unit.stores.create_case(
                submission, self._keys.master_key, self._keys.duplicate_key_id, hashes
            )
            await unit.stores.add_consent_record(
                row, "given" if row.consent.given else "refused", event.event_id
            )
            await self._registered(event, unit, row, duplicates, ev.CASE_REGISTERED)
            return
        update = ev.CaseUpdate(
            agency_id=submission.agency_id,
            agency_case_ref=submission.agency_case_ref,
            personal=submission.personal,
            profile=submission.profile,
            needs=submission.needs,
            consent=submission.consent,
        )
        await self._update_case(event, unit, row, update)

    async def _update_case(
        self, event: InboundEvent, unit: IntakeUnit, row: CaseRow, update: ev.CaseUpdate
    ) -> None:
        before = row
        row = await unit.stores.update_case(
            row,
            profile=update.profile,
            needs=update.needs,
            consent=update.consent,
        )
        personal = clear(update.personal) if update.personal is not None else None
        if personal is not None:
            await unit.stores.replace_personal(row.case_id, self._keys.master_key, personal)
        else:
            personal = await unit.stores.read_personal(row.case_id, self._keys.master_key)
        hashes = identity.identity_hashes(self._keys.duplicate_key, personal)
        duplicates = await unit.stores.record_identity(row, self._keys.duplicate_key_id, hashes)
        out: list[tuple[str, ev.Contract]] = []
        if row.consent_version != before.consent_version:
            await unit.stores.add_consent_record(row, "changed", event.event_id)
            out.append(
                (ev.CONSENT_CHANGED, ev.ConsentChanged(case_id=row.case_id, consent=row.consent))
            )
        await self._registered(event, unit, row, duplicates, ev.CASE_UPDATED, out)

    async def _registered(
        self,
        event: InboundEvent,
        unit: IntakeUnit,
        row: CaseRow,
        duplicates: list[str],
        type_: str,
        also: list[tuple[str, ev.Contract]] | None = None,
    ) -> None:
        """``duplicates``: the cases of other agencies sharing an identity hash with it."""
        told = await self._possible_duplicates(unit, row, duplicates)
        await self._follow_up(unit, row)
        action = "registered" if type_ == ev.CASE_REGISTERED else "updated"
        outcome = (
            ev.SubmissionOutcome.REGISTERED
            if type_ == ev.CASE_REGISTERED
            else ev.SubmissionOutcome.UPDATED
        )
        await self._applied(
            event,
            unit,
            row,
            action,
            {
                "needs": [n.need_id for n in row.needs],
                "consent_version": row.consent_version,
                "possible_duplicate_of": duplicates,
            },
            [(type_, row.pseudonymous(duplicates)), *(also or []), *told],
            outcome,
        )
        log.info(
            "case_stored",
            case_id=row.case_id,
            action=action,
            needs=len(row.needs),
            possible_duplicates=len(duplicates),
        )

    async def _possible_duplicates(
        self, unit: IntakeUnit, row: CaseRow, duplicates: list[str]
    ) -> list[tuple[str, ev.Contract]]:
        """Each likely duplicate of another agency's case is recorded once per pair; both
        owners are told (possible-duplicate-found) where both consents allow it
        (consent.duplicate_not_told), only recorded otherwise."""
        if not duplicates:
            return []
        today, now = datetime.now(UTC).date(), datetime.now(UTC)
        mine = await unit.stores.recipient(row.agency_id)
        owner = (row.agency_id, mine.type if mine else None)
        found: list[tuple[str, str | None]] = []
        owners: dict[str, str] = {}
        for other_id in duplicates:
            other = await unit.stores.load_case(other_id)
            if other is None:
                continue
            theirs = await unit.stores.recipient(other.agency_id)
            other_owner = (other.agency_id, theirs.type if theirs else None)
            why = duplicate_not_told(row.consent, owner, other.consent, other_owner, today)
            found.append((other_id, why))
            owners[other_id] = other.agency_id
        told = await unit.stores.record_duplicates(row.case_id, found)
        log.info("possible_duplicates", case_id=row.case_id, found=len(found), told=len(told))
        # One event per owner, each about (and keyed by) that owner's case.
        return [
            (
                ev.POSSIBLE_DUPLICATE_FOUND,
                ev.PossibleDuplicateFound(
                    case_id=mine_id,
                    owner_agency_id=mine_owner,
                    duplicate_case_id=theirs_id,
                    duplicate_owner_agency_id=theirs_owner,
                    found_at=now,
                ),
            )
            for other_id in sorted(told)
            for (mine_id, mine_owner), (theirs_id, theirs_owner) in (
                ((row.case_id, row.agency_id), (other_id, owners[other_id])),
                ((other_id, owners[other_id]), (row.case_id, row.agency_id)),
            )
        ]

    async def _confirm_erasure(
        self, event: InboundEvent, unit: IntakeUnit, confirmation: ev.ErasureConfirmation
    ) -> None:
        """A recipient erased what a referral's disclosure gave it: recorded on the disclosure
        log's entry and the case history, heard by the case's owner and answered to the
        recipient (disclosure-erased). Refused, nothing changed, when no contact details of
        that referral were disclosed to the sender, or when its erasure was confirmed before
        (``erased_at`` is the recipient's word, on its own clock: not compared with ours)."""
        facts = await unit.stores.disclosed_to(confirmation.referral_id, confirmation.agency_id)
        if facts is None or facts.erased_at is not None:
            reason = (
                "no personal data of this referral was disclosed to this agency"
                if facts is None
                else "the erasure of this referral's disclosed data was already confirmed"
            )
            await _reject(event, unit, refusal(event, reason, "referral_id"))
            return
        await unit.stores.record_erasure(
            facts.disclosure_id, confirmation.erased_at, event.event_id
        )
        details = {"referral_id": confirmation.referral_id, "disclosure_id": facts.disclosure_id}
        await unit.stores.add_history(
            facts.case_id, "disclosure_erased", event.event_id, confirmation.agency_id, details
        )
        await unit.stores.record_submission(
            event.event_id, confirmation.agency_id, facts.case_id, "erasure_confirmed"
        )
        erased = ev.DisclosureErased(
            disclosure_id=facts.disclosure_id,
            referral_id=confirmation.referral_id,
            case_id=facts.case_id,
            recipient_agency_id=confirmation.agency_id,
            owner_agency_id=facts.owner_agency_id,
            erased_at=confirmation.erased_at,
            submission_id=event.event_id,
        )
        unit.emit(
            ev.DISCLOSURE_ERASED,
            erased,
            topic=topics.INTAKE_DISCLOSURES,
            subject=confirmation.referral_id,
        )
        log.info(
            "disclosure_erased",
            case_id=facts.case_id,
            referral_id=confirmation.referral_id,
            recipient=confirmation.agency_id,
        )

    async def _withdraw_consent(
        self, event: InboundEvent, unit: IntakeUnit, row: CaseRow, w: ev.ConsentWithdrawal
    ) -> None:
        row = await unit.stores.update_case(row, consent=after_withdrawal(row.consent, w))
        await unit.stores.add_consent_record(row, "withdrawn", event.event_id)
        await self._follow_up(unit, row)
        await self._applied(
            event,
            unit,
            row,
            "consent_withdrawn",
            {"consent_version": row.consent_version},
            [(ev.CONSENT_CHANGED, ev.ConsentChanged(case_id=row.case_id, consent=row.consent))],
            ev.SubmissionOutcome.CONSENT_WITHDRAWN,
        )
        log.info("consent_withdrawn", case_id=row.case_id, still_given=row.consent.given)

    async def _erase(self, event: InboundEvent, unit: IntakeUnit, row: CaseRow) -> None:
        await unit.stores.erase(row.case_id)
        await unit.stores.follow_ups.plan(row.case_id, row.agency_id, None, 0)
        await unit.stores.follow_ups.erase_assessments(row.case_id)
        erased = ev.CaseErased(
            case_id=row.case_id,
            erased_at=datetime.now(UTC),
            submitting_agency_id=row.agency_id,
            agency_case_ref=row.agency_case_ref,
        )
        await self._applied(
            event,
            unit,
            row,
            "erased",
            None,
            [(ev.CASE_ERASED, erased)],
            ev.SubmissionOutcome.ERASED,
        )
        log.info("case_erased", case_id=row.case_id)

    async def _end_assistance(
        self, event: InboundEvent, unit: IntakeUnit, row: CaseRow, end: ev.AssistanceEnd
    ) -> None:
        """The owner's own assistance ends; the case stays open under it (referral tells the
        providers with open referrals, and may propose next owners)."""
        if row.status == "closed":
            reason = "the case is closed; its assistance ended with it"
        elif row.assistance_ended_at is not None:
            reason = "the owner's assistance has already ended"
        else:
            reason = None
        if reason is not None:
            await _reject(event, unit, refusal(event, reason, "agency_case_ref"))
            return
        row = await unit.stores.end_assistance(row, end.ended_at, end.reason.value)
        ended = ev.AssistanceEnded(
            case_id=row.case_id,
            owner_agency_id=row.agency_id,
            reason=end.reason,
            ended_at=end.ended_at,
        )
        # The v1 outcome enum cannot grow: an end of assistance is an update of the case.
        await self._applied(
            event,
            unit,
            row,
            "assistance_ended",
            {"reason": end.reason.value},
            [(ev.ASSISTANCE_ENDED, ended)],
            ev.SubmissionOutcome.UPDATED,
        )
        log.info("assistance_ended", case_id=row.case_id, reason=end.reason.value)

    async def _close(
        self, event: InboundEvent, unit: IntakeUnit, row: CaseRow, closure: ev.CaseClosure
    ) -> None:
        await unit.stores.set_status(row.case_id, "closed", closure.reason.value)
        await unit.stores.follow_ups.plan(row.case_id, row.agency_id, None, 0)
        # What becomes of the open referrals is referral's to carry out: it reads the choice here.
        closed = ev.CaseClosed(
            case_id=row.case_id,
            reason=closure.reason,
            closed_at=closure.closed_at,
            open_referrals=closure.open_referrals,
        )
        await self._applied(
            event,
            unit,
            row,
            "closed",
            {"reason": closure.reason.value, "open_referrals": closure.open_referrals.value},
            [(ev.CASE_CLOSED, closed)],
            ev.SubmissionOutcome.CLOSED,
        )
        log.info(
            "case_closed",
            case_id=row.case_id,
            reason=closure.reason.value,
            open_referrals=closure.open_referrals.value,
        )

    # ----- community needs (issue 18, decision 17; community.py decides) -----

    async def _submit_community_need(
        self,
        event: InboundEvent,
        unit: IntakeUnit,
        submission: ev.CommunityNeedSubmission,
        case: CaseRow | None,
    ) -> None:
        """A community need registered, or updated under the same reference; announced to
        referral without its description (kept encrypted)."""
        if case is not None:
            await _reject(
                event,
                unit,
                refusal(
                    event,
                    "agency_case_ref names a case of this agency; "
                    "a community need needs a reference of its own",
                    "agency_case_ref",
                ),
            )
            return
        store = unit.stores
        existing = await store.find_community_need(submission.agency_id, submission.agency_case_ref)
        reason = community.refusal(submission, existing)
        if reason is not None:
            await _reject(event, unit, refusal(event, reason, "agency_case_ref"))
            return
        need = await store.save_community_need(submission, self._keys.master_key, existing)
        action = "updated" if existing else "registered"
        await store.record_submission(event.event_id, need.agency_id, None, action)
        outcome = ev.SubmissionOutcome.UPDATED if existing else ev.SubmissionOutcome.REGISTERED
        self._emit(
            unit,
            need.need_id,
            [
                (ev.COMMUNITY_NEED_REGISTERED, need.registered()),
                _community_accepted(event, need, outcome),
            ],
        )
        log.info("community_need_stored", case_id=need.need_id, action=action)

    async def _ends_community_need(
        self,
        event: InboundEvent,
        unit: IntakeUnit,
        message: ev.CaseUpdate
        | ev.ConsentWithdrawal
        | ev.ErasureRequest
        | ev.CaseClosure
        | ev.AssistanceEnd,
    ) -> bool:
        """A closure or erasure naming a community need of the sender applied to it (True);
        another message naming one refused; False when the reference names none."""
        store = unit.stores
        need = await store.find_community_need(message.agency_id, message.agency_case_ref)
        if need is None or need.status == "erased":
            return False
        if not isinstance(message, ev.CaseClosure | ev.ErasureRequest):
            await _reject(
                event,
                unit,
                refusal(
                    event,
                    "agency_case_ref names a community need: it takes community-need-submitted, "
                    "case-closure-submitted and erasure-requested only",
                    "agency_case_ref",
                ),
            )
            return True
        emitted: tuple[str, ev.Contract]
        if isinstance(message, ev.ErasureRequest):
            await store.erase_community_need(need.need_id)
            action, outcome = "erased", ev.SubmissionOutcome.ERASED
            emitted = (
                ev.CASE_ERASED,
                ev.CaseErased(
                    case_id=need.need_id,
                    erased_at=datetime.now(UTC),
                    submitting_agency_id=need.agency_id,
                    agency_case_ref=need.agency_case_ref,
                ),
            )
        else:
            if need.status == "closed":
                await _reject(
                    event,
                    unit,
                    refusal(
                        event,
                        "the community need is closed; submit it under a new agency_case_ref",
                        "agency_case_ref",
                    ),
                )
                return True
            await store.close_community_need(need.need_id, message.reason.value)
            action, outcome = "closed", ev.SubmissionOutcome.CLOSED
            emitted = (
                ev.CASE_CLOSED,
                ev.CaseClosed(
                    case_id=need.need_id,
                    reason=message.reason,
                    closed_at=message.closed_at,
                    open_referrals=message.open_referrals,
                ),
            )
        await store.record_submission(event.event_id, need.agency_id, None, action)
        self._emit(unit, need.need_id, [emitted, _community_accepted(event, need, outcome)])
        log.info("community_need_ended", case_id=need.need_id, action=action)
        return True

    async def _disclose_community_need(
        self, referral: ev.ReferralRequested, need: CommunityNeedRow, unit: IntakeUnit
    ) -> None:
        """A referral of a community need: its brief sealed for the recipient's key (no
        consent applies: no person), or why not; logged either way."""
        recipient = await unit.stores.recipient(referral.recipient_agency_id)
        if recipient is None and need.status == "open":
            # as for a case: the registry may not be read yet (transient, retried)
            raise LookupError(f"recipient agency {referral.recipient_agency_id} not known yet")
        disclosure_id = str(uuid.uuid4())
        reason = community.disclosure_refusal(
            need, recipient.type if recipient else None, recipient.public_key if recipient else None
        )
        decided: ev.DisclosureSealed | ev.DisclosureRefused
        if reason is None and recipient is not None and recipient.public_key:
            description = await unit.stores.read_community_description(
                need.need_id, self._keys.master_key
            )
            decided = community.sealed(
                referral, need, description, recipient.public_key, disclosure_id
            )
            type_, key_sha256 = ev.DISCLOSURE_SEALED, decided.recipient_key_sha256
        else:
            reason = reason or ev.DisclosureRefusalReason.UNKNOWN_AGENCY
            decided = disclosures.refused(referral, disclosure_id, reason)
            type_, key_sha256 = ev.DISCLOSURE_REFUSED, None
        await unit.stores.log_disclosure(
            DisclosureEntry.of_referral(
                referral,
                disclosure_id,
                reason,
                key_sha256,
                case_id=need.need_id,
                consent_version=None,  # no consent applies: no person
                source_event_id=unit.cause.causation_id or "",
                kind="community_need",
            )
        )
        unit.emit(type_, decided, topic=topics.INTAKE_DISCLOSURES, subject=referral.referral_id)
        log.info(
            "community_need_disclosed" if reason is None else "disclosure_refused",
            case_id=referral.case_id,
            referral_id=referral.referral_id,
            recipient=referral.recipient_agency_id,
            reason=reason.value if reason is not None else None,
        )

    # ----- referral.events.v1: disclosures -----

    async def on_referral_requested(self, referral: ev.ReferralRequested, unit: IntakeUnit) -> None:
        """The recipient gets the minimum personal data sealed for its key, or the referral
        records why not (disclosures.py decides); either way the disclosure log says so."""
        source_event_id = unit.cause.causation_id
        assert source_event_id is not None  # a consumed event caused it
        if await unit.stores.disclosure_decided(referral.referral_id):
            return  # decided before: a redelivery
        case = await unit.stores.load_case(referral.case_id)
        if case is None:
            need = await unit.stores.load_community_need(referral.case_id)
            if need is not None:
                await self._disclose_community_need(referral, need, unit)
                return
        recipient = await unit.stores.recipient(referral.recipient_agency_id)
        if recipient is None and case is not None:
            # The registry and the referral events are separate topics: intake may simply not
            # have read the recipient's record yet. Transient: retried, then dead-lettered.
            raise LookupError(f"recipient agency {referral.recipient_agency_id} not known yet")
        disclosure_id = str(uuid.uuid4())
        reason = disclosures.refusal(referral, case, recipient, datetime.now(UTC).date())
        decided: ev.DisclosureSealed | ev.DisclosureRefused
        if reason is None and case is not None and recipient and recipient.public_key:
            personal = await unit.stores.read_personal(case.case_id, self._keys.master_key)
            decided = disclosures.sealed(
                referral, case, recipient.public_key, personal, disclosure_id
            )
            await self._log_disclosure(
                unit, referral, case, disclosure_id, None, decided.recipient_key_sha256
            )
            type_ = ev.DISCLOSURE_SEALED
        else:
            reason = reason or ev.DisclosureRefusalReason.UNKNOWN_CASE
            if case is not None:  # the logs are a case's: an unknown case has none
                await self._log_disclosure(unit, referral, case, disclosure_id, reason, None)
            decided = disclosures.refused(referral, disclosure_id, reason)
            type_ = ev.DISCLOSURE_REFUSED
        unit.emit(type_, decided, topic=topics.INTAKE_DISCLOSURES, subject=referral.referral_id)
        log.info(
            "disclosure_sealed" if reason is None else "disclosure_refused",
            case_id=referral.case_id,
            referral_id=referral.referral_id,
            recipient=referral.recipient_agency_id,
            reason=reason.value if reason is not None else None,
        )

    async def _log_disclosure(
        self,
        unit: IntakeUnit,
        referral: ev.ReferralRequested,
        case: CaseRow,
        disclosure_id: str,
        reason: ev.DisclosureRefusalReason | None,
        key_sha256: str | None,
    ) -> None:
        """The disclosure log's entry and the case history's, for a disclosure or a refusal."""
        source_event_id = unit.cause.causation_id or ""
        await unit.stores.log_disclosure(
            DisclosureEntry.of_referral(
                referral,
                disclosure_id,
                reason,
                key_sha256,
                case_id=case.case_id,
                consent_version=case.consent_version,
                source_event_id=source_event_id,
            )
        )
        details: dict[str, object] = {"referral_id": referral.referral_id}
        if reason is None:
            details["consent_version"] = case.consent_version
        else:
            details["reason"] = reason.value
        await unit.stores.add_history(
            case.case_id,
            "disclosed" if reason is None else "disclosure_refused",
            source_event_id,
            referral.recipient_agency_id,
            details,
        )

    # ----- referral.events.v1: handovers -----

    async def on_handover_proposed(self, proposed: ev.HandoverProposed, unit: IntakeUnit) -> None:
        """Referral runs the handover; intake's case history records each step of it."""
        case = await unit.stores.load_case(proposed.case_id)
        if case is None:
            return  # referral knew a case intake never had: nothing to record it on
        await unit.stores.add_history(
            case.case_id,
            "handover_proposed",
            unit.cause.causation_id or "",
            proposed.receiving_agency_id,
            {
                "handover_id": proposed.handover_id,
                "direction": proposed.direction.value,
                "to": proposed.receiving_agency_id,
            },
        )

    async def on_handover_ended(self, ended: ev.HandoverEnded, unit: IntakeUnit) -> None:
        """A handover that did not move the case: rejected or expired (the owner keeps it)."""
        if ended.state not in (ev.HandoverState.REJECTED, ev.HandoverState.EXPIRED):
            return  # the contract's other states are never an end without a move
        case = await unit.stores.load_case(ended.case_id)
        if case is None:
            return
        details: dict[str, object] = {"handover_id": ended.handover_id}
        if ended.reason is not None:
            details["reason"] = ended.reason.value  # a code: why the answering agency declined
        await unit.stores.add_history(
            case.case_id,
            f"handover_{ended.state.value}",
            unit.cause.causation_id or "",
            ended.receiving_agency_id,
            details,
        )

    async def on_handover_accepted(self, accepted: ev.HandoverAccepted, unit: IntakeUnit) -> None:
        """The case moves to its new owner with its whole personal data sealed for it, or the
        handover fails with the reason and nothing moves (handovers.py decides). Decided once
        per handover: the disclosure log keeps the decision, as it does a referral's."""
        if await unit.stores.handover_decided(accepted.handover_id):
            return  # decided before: another delivery of the same acceptance
        case = await unit.stores.lock_case(accepted.case_id)
        receiver = await unit.stores.recipient(accepted.receiving_agency_id)
        holder = None
        if case is not None:
            holder = await unit.stores.reference_holder(
                accepted.receiving_agency_id, accepted.receiving_case_ref
            )
        reason = handovers.refusal(accepted, case, receiver, holder, datetime.now(UTC).date())
        if reason is not None:
            await self._handover_failed(unit, accepted, case, reason)
            return
        # refusal() said why otherwise: a known open case, a known receiver with a key
        assert case is not None and receiver is not None and receiver.public_key
        consent = handovers.consent_for(case.consent, accepted.consent)
        await self._hand_over(unit, accepted, case, consent, receiver.public_key)

    async def _hand_over(
        self,
        unit: IntakeUnit,
        accepted: ev.HandoverAccepted,
        case: CaseRow,
        consent: ev.Consent,
        public_key: str,
    ) -> None:
        source_event_id = unit.cause.causation_id or ""
        out: list[tuple[str, ev.Contract]] = []
        if consent != case.consent:  # the newer record the handover carried
            case = await unit.stores.update_case(case, consent=consent)
            await unit.stores.add_consent_record(case, "changed", source_event_id)
            out.append(
                (ev.CONSENT_CHANGED, ev.ConsentChanged(case_id=case.case_id, consent=consent))
            )
        personal = await unit.stores.read_personal(case.case_id, self._keys.master_key)
        moved = await unit.stores.hand_over(
            case, accepted.receiving_agency_id, accepted.receiving_case_ref, accepted.handover_id
        )
        sealed = handovers.sealed(accepted, moved, public_key, personal, str(uuid.uuid4()))
        await self._follow_up(unit, moved)  # the new owner's plan from now on
        await unit.stores.log_disclosure(
            DisclosureEntry(
                disclosure_id=sealed.disclosure_id,
                referral_id=None,
                case_id=moved.case_id,
                recipient_agency_id=accepted.receiving_agency_id,
                outcome="disclosed",
                reason=None,
                consent_version=moved.consent_version,
                recipient_key_sha256=sealed.recipient_key_sha256,
                source_event_id=source_event_id,
                kind="handover",
                handover_id=accepted.handover_id,
            )
        )
        await unit.stores.add_history(
            moved.case_id,
            "handed_over",
            source_event_id,
            accepted.receiving_agency_id,
            {
                "from": case.agency_id,
                "to": moved.agency_id,
                "handover_id": accepted.handover_id,
                "consent_version": moved.consent_version,
            },
        )
        handed_over = ev.CaseHandedOver(
            handover_id=accepted.handover_id,
            case_id=moved.case_id,
            from_agency_id=case.agency_id,
            to_agency_id=moved.agency_id,
            to_agency_case_ref=moved.agency_case_ref,
            handed_over_at=datetime.now(UTC),
        )
        self._emit(unit, moved.case_id, [*out, (ev.CASE_HANDED_OVER, handed_over)])
        unit.emit(
            ev.CASE_DATA_SEALED,
            sealed,
            topic=topics.INTAKE_DISCLOSURES,
            subject=accepted.handover_id,
        )
        log.info(
            "case_handed_over",
            case_id=moved.case_id,
            handover_id=accepted.handover_id,
            from_agency=case.agency_id,
            to_agency=moved.agency_id,
        )

    async def _handover_failed(
        self,
        unit: IntakeUnit,
        accepted: ev.HandoverAccepted,
        case: CaseRow | None,
        reason: ev.HandoverFailureReason,
    ) -> None:
        """Nothing moves; the owner keeps the case. The decision is logged (the case's personal
        data was not sent to the receiver, and why), except for a case intake never had."""
        source_event_id = unit.cause.causation_id or ""
        if case is not None:
            await unit.stores.log_disclosure(
                DisclosureEntry(
                    disclosure_id=str(uuid.uuid4()),
                    referral_id=None,
                    case_id=case.case_id,
                    recipient_agency_id=accepted.receiving_agency_id,
                    outcome="refused",
                    reason=reason.value,
                    consent_version=case.consent_version,
                    recipient_key_sha256=None,
                    source_event_id=source_event_id,
                    kind="handover",
                    handover_id=accepted.handover_id,
                )
            )
            await unit.stores.add_history(
                case.case_id,
                "handover_failed",
                source_event_id,
                accepted.receiving_agency_id,
                {"handover_id": accepted.handover_id, "reason": reason.value},
            )
        failed = ev.HandoverFailed(
            handover_id=accepted.handover_id,
            case_id=accepted.case_id,
            from_agency_id=accepted.owner_agency_id,
            to_agency_id=accepted.receiving_agency_id,
            reason=reason,
        )
        self._emit(unit, accepted.case_id, [(ev.HANDOVER_FAILED, failed)])
        log.info(
            "handover_failed",
            case_id=accepted.case_id,
            handover_id=accepted.handover_id,
            reason=reason.value,
        )

    # ----- directory.agencies.v1 -----

    # ----- follow-ups and assessments (issue 19, decision 21; follow_ups.py decides) -----

    async def _follow_up(self, unit: IntakeUnit, row: CaseRow) -> None:
        """The case's follow-up waves as its owner's plan says, where its consent includes
        ``follow_up`` and it is open; none (the open ones cancelled) otherwise."""
        today = datetime.now(UTC).date()
        following = row.status not in ("closed", "erased") and follows_up(row.consent, today)
        plan = self._programme.plan_of(row.agency_id) if following else None
        await unit.stores.follow_ups.plan(
            row.case_id, row.agency_id, plan, self._programme.reminder_days
        )

    async def _record_assessment(
        self, event: InboundEvent, unit: IntakeUnit, assessment: ev.AssessmentSubmission
    ) -> None:
        """An owner's follow-up assessment: checked (the case, its owner, its consent, the
        wave, the indicator set and every answer), scored, kept (replacing an earlier one of
        the wave), its wave done, and told as assessment-recorded (scores only) to evidence
        and to the owner's inbox. Refused with the reasons otherwise, nothing kept."""
        row = await unit.stores.lock_case(assessment.case_id)
        today = datetime.now(UTC).date()
        refused = assessment_refusal(
            row.status if row else None,
            row.agency_id if row else None,
            row.consent if row else None,
            assessment,
            self._programme.plan_of(assessment.agency_id),
            today,
        )
        if refused is not None:
            await _reject(event, unit, refusal(event, refused.reason, refused.field))
            return
        assert row is not None  # assessment_refusal refuses an unknown case
        indicator_set = INDICATOR_SETS.get(assessment.indicator_set)
        if indicator_set is None:
            known = ", ".join(INDICATOR_SETS)
            await _reject(
                event,
                unit,
                refusal(event, f"unknown indicator set: one of {known}", "indicator_set"),
            )
            return
        answers = [(a.indicator, a.answer) for a in assessment.answers]
        errors = outcomes.check(indicator_set, answers)
        if errors:
            await _reject(event, unit, _answers_refused(event, errors))
            return
        scored = outcomes.score(indicator_set, answers)
        scores = ev.OutcomeScores(
            economic=scored.economic,
            social=scored.social,
            psychosocial=scored.psychosocial,
            composite=scored.composite,
        )
        await unit.stores.follow_ups.save_assessment(assessment, scores, event.event_id)
        details = {"wave": assessment.wave, "indicator_set": assessment.indicator_set}
        await unit.stores.add_history(
            row.case_id, "assessment_recorded", event.event_id, row.agency_id, details
        )
        await unit.stores.record_submission(
            event.event_id, row.agency_id, row.case_id, "assessment_recorded"
        )
        recorded = ev.AssessmentRecorded(
            case_id=row.case_id,
            owner_agency_id=row.agency_id,
            wave=assessment.wave,
            assessed_on=assessment.assessed_on,
            indicator_set=assessment.indicator_set,
            scores=scores,
            indicators_answered=scored.indicators_answered,
            submission_id=event.event_id,
        )
        self._emit(unit, row.case_id, [(ev.ASSESSMENT_RECORDED, recorded)])
        log.info(
            "assessment_recorded",
            case_id=row.case_id,
            wave=assessment.wave,
            indicators_answered=scored.indicators_answered,
        )

    async def on_agency(self, agency: ev.AgencyRecord, unit: IntakeUnit) -> None:
        await unit.stores.save_agency(agency)

    async def on_agency_removed(self, agency_id: str, unit: IntakeUnit) -> None:
        await unit.stores.remove_agency(agency_id)

    async def _applied(
        self,
        event: InboundEvent,
        unit: IntakeUnit,
        row: CaseRow,
        action: str,
        details: dict[str, object] | None,
        events: list[tuple[str, ev.Contract]],
        outcome: ev.SubmissionOutcome,
    ) -> None:
        """What every applied submission leaves: the case history's entry and the submission's
        record (both named ``action``), the case events it causes, then the answer to its
        sender."""
        await unit.stores.add_history(row.case_id, action, event.event_id, row.agency_id, details)
        await unit.stores.record_submission(event.event_id, row.agency_id, row.case_id, action)
        self._emit(unit, row.case_id, [*events, _accepted(event, row, outcome)])

    def _emit(self, unit: IntakeUnit, case_id: str, events: list[tuple[str, ev.Contract]]) -> None:
        """On intake.cases.v1, keyed by the case (the catalogue's key): the event's own case
        (a likely duplicate is told about each owner's case), else ``case_id``."""
        for type_, data in events:
            subject = str(getattr(data, "case_id", None) or case_id)
            unit.emit(type_, data, topic=topics.INTAKE_CASES, subject=subject)


def _accepted(
    event: InboundEvent, row: CaseRow, outcome: ev.SubmissionOutcome
) -> tuple[str, ev.Contract]:
    """The answer to an applied submission, for the agency that sent it (notification routes
    it to its inbox): it ties the agency's own reference to the case id."""
    return (
        ev.SUBMISSION_ACCEPTED,
        ev.SubmissionAccepted(
            submission_id=event.event_id,
            agency_id=row.agency_id,
            agency_case_ref=row.agency_case_ref,
            case_id=row.case_id,
            outcome=outcome,
        ),
    )


def _community_accepted(
    event: InboundEvent, need: CommunityNeedRow, outcome: ev.SubmissionOutcome
) -> tuple[str, ev.Contract]:
    """The answer to an applied community-need message: its reference tied to its id."""
    return (
        ev.SUBMISSION_ACCEPTED,
        ev.SubmissionAccepted(
            submission_id=event.event_id,
            agency_id=need.agency_id,
            agency_case_ref=need.agency_case_ref,
            case_id=need.need_id,
            outcome=outcome,
        ),
    )


def _answers_refused(event: InboundEvent, errors: list[outcomes.AnswerError]) -> Refusal:
    """An assessment whose answers are not the indicator set's: one error per answer."""
    first = refusal(event, "answers not on the indicator set's scales", errors[0].field)
    return replace(
        first,
        errors=[ev.FieldError(field=e.field, message=e.message) for e in errors],
    )


async def _reject(event: InboundEvent, unit: IntakeUnit, rejection: Refusal) -> None:
    await unit.stores.record_submission(rejection.message_id, rejection.agency_id, None, "rejected")
    unit.emit(
        ev.SUBMISSION_REJECTED,
        rejection.as_rejection(),
        topic=topics.INTAKE_REJECTIONS,
        key=rejection.agency_id or "unknown",  # a message of no agency has none
        subject=rejection.message_id,
    )
    log.info(
        "submission_rejected",
        reason=rejection.reason,
        fields=[e.field for e in rejection.errors],
        error=rejection.code.value if rejection.code else None,
    )
