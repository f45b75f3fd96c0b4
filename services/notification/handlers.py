"""Notification's Kafka handlers: route each event to the agencies it concerns."""

from __future__ import annotations

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import build_event
from shared.contracts.taxonomy import ReasonCode
from shared.db import DbConnection, outbox
from shared.kafka.inbound import InboundEvent
from shared.logging import get_logger

from .email import enqueue_email
from .inbox_topics import InboxTopics
from .webhooks import enqueue_delivery

SOURCE = "urn:referralexchange:service:notification"

log = get_logger(__name__)


# The provider's inbox type of each answer referral gives to a listing message.
_LISTING_ANSWERS = {
    ev.LISTING_PUBLISHED: ev.INBOX_LISTING_PUBLISHED,
    ev.LISTING_WITHDRAWN: ev.INBOX_LISTING_WITHDRAWN,
    ev.LISTING_REJECTED: ev.INBOX_LISTING_REJECTED,
}


class NotificationHandlers:
    def __init__(self, inbox_topics: InboxTopics) -> None:
        self._inbox_topics = inbox_topics

    async def on_agency(self, event: InboundEvent, conn: DbConnection) -> None:
        if event.is_tombstone():
            return
        agency = event.data_as(ev.AgencyRecord)
        topic = await self._inbox_topics.ensure(agency.agency_id)
        await conn.execute(
            """INSERT INTO agencies (agency_id, inbox_topic, record) VALUES ($1, $2, $3::jsonb)
               ON CONFLICT (agency_id) DO UPDATE SET record = EXCLUDED.record,
                 updated_at = now()""",
            agency.agency_id,
            topic,
            agency.model_dump_json(),
        )
        log.info("agency_inbox_ready", agency_id=agency.agency_id, topic=topic)

    async def on_referral_event(self, event: InboundEvent, conn: DbConnection) -> None:
        attributes = event.require_attributes()
        if attributes.type == ev.NEED_UNMATCHED:
            unmatched = event.data_as(ev.NeedUnmatched)
            await self._to_inbox(
                conn,
                event,
                unmatched.referring_agency_id,
                f"{unmatched.case_id}:{unmatched.need_id}",
                ev.INBOX_NEED_UNMATCHED,
                unmatched,
            )
            return
        if attributes.type == ev.REFERRAL_TRANSITIONED:
            await self._status_changed(conn, event, event.data_as(ev.ReferralTransitioned))
            return
        if attributes.type == ev.REMINDER_DUE:
            reminder = event.data_as(ev.ReferralReminderDue)
            await self._to_inbox(
                conn,
                event,
                reminder.recipient_agency_id,
                reminder.referral_id,
                ev.INBOX_REFERRAL_REMINDER,
                reminder,
            )
            return
        if attributes.type == ev.RESPONSE_REFUSED:
            refused = event.data_as(ev.ResponseRefused)
            await self._to_inbox(
                conn,
                event,
                refused.agency_id,
                refused.response_id,
                ev.INBOX_RESPONSE_REFUSED,
                refused,
            )
            return
        if attributes.type == ev.RESPONSE_APPLIED:
            applied = event.data_as(ev.ResponseApplied)
            await self._to_inbox(
                conn,
                event,
                applied.agency_id,
                applied.referral_id,
                ev.INBOX_RESPONSE_APPLIED,
                applied,
            )
            return
        if attributes.type in _LISTING_ANSWERS:
            await self._listing_answer(conn, event, attributes.type)
            return
        if attributes.type != ev.REFERRAL_REQUESTED:
            log.info("referral_event_not_notified_yet", ce_type=attributes.type)
            return
        referral = event.data_as(ev.ReferralRequested)
        if referral.previous_referral_id is not None:
            await self._to_inbox(
                conn,
                event,
                referral.referring_agency_id,
                referral.referral_id,
                ev.INBOX_REFERRAL_REROUTED,
                ev.InboxReferralRerouted(
                    referral_id=referral.referral_id,
                    previous_referral_id=referral.previous_referral_id,
                    case_id=referral.case_id,
                    need_id=referral.need_id,
                    recipient_agency_id=referral.recipient_agency_id,
                    attempt=referral.attempt,
                ),
            )
        notice = ev.InboxReferralReceived(
            referral_id=referral.referral_id,
            case_id=referral.case_id,
            need_id=referral.need_id,
            category=referral.category,
            urgency=referral.urgency,
            service_id=referral.service_id,
            referring_agency_id=referral.referring_agency_id,
            respond_by=referral.respond_by,
            respond_on_topic=topics.AGENCY_RESPONSES.name(referral.recipient_agency_id),
        )
        await self._to_inbox(
            conn,
            event,
            referral.recipient_agency_id,
            referral.referral_id,
            ev.INBOX_REFERRAL_RECEIVED,
            notice,
        )

    async def _listing_answer(self, conn: DbConnection, event: InboundEvent, type_: str) -> None:
        """A provider hears what became of each message of its listings topic: keyed by the
        service for a publication or withdrawal, by the refused message's id for a rejection
        (as for refused submissions)."""
        if type_ == ev.LISTING_REJECTED:
            rejected = event.data_as(ev.SubmissionRejected)
            if rejected.agency_id is None:
                log.info("rejection_without_agency_not_routed")
                return
            await self._to_inbox(
                conn,
                event,
                rejected.agency_id,
                rejected.submission_id,
                ev.INBOX_LISTING_REJECTED,
                rejected,
            )
            return
        answer = event.data_as(ev.ListingPublished)
        await self._to_inbox(
            conn, event, answer.agency_id, answer.service_id, _LISTING_ANSWERS[type_], answer
        )

    async def _status_changed(
        self, conn: DbConnection, event: InboundEvent, change: ev.ReferralTransitioned
    ) -> None:
        """The referring agency hears every change; a cancelled recipient is told to stop, and
        to erase what it received when consent was withdrawn."""
        await self._to_inbox(
            conn,
            event,
            change.referring_agency_id,
            change.referral_id,
            ev.INBOX_STATUS_CHANGED,
            ev.InboxStatusChanged(
                referral_id=change.referral_id,
                case_id=change.case_id,
                need_id=change.need_id,
                from_state=change.from_state,
                to_state=change.to_state,
                reason_code=change.reason_code,
                outcome=change.outcome,
                recipient_agency_id=change.recipient_agency_id,
            ),
        )
        if change.to_state is ev.ReferralState.CANCELLED and change.reason_code is not None:
            await self._to_inbox(
                conn,
                event,
                change.recipient_agency_id,
                change.referral_id,
                ev.INBOX_REFERRAL_CANCELLED,
                ev.InboxReferralCancelled(
                    referral_id=change.referral_id,
                    case_id=change.case_id,
                    reason_code=change.reason_code,
                    erase_received_data=change.reason_code is ReasonCode.CONSENT_WITHDRAWN,
                ),
            )

    async def on_disclosure(self, event: InboundEvent, conn: DbConnection) -> None:
        """A sealed disclosure goes to its recipient only; refusals concern no agency's inbox."""
        if event.require_attributes().type != ev.DISCLOSURE_SEALED:
            return
        sealed = event.data_as(ev.DisclosureSealed)
        await self._to_inbox(
            conn,
            event,
            sealed.recipient_agency_id,
            sealed.referral_id,
            ev.INBOX_DISCLOSURE_RECEIVED,
            sealed,
        )

    async def on_case_event(self, event: InboundEvent, conn: DbConnection) -> None:
        """Each applied submission is answered to the agency that sent it; erasures are also
        confirmed to it."""
        type_ = event.require_attributes().type
        if type_ == ev.SUBMISSION_ACCEPTED:
            accepted = event.data_as(ev.SubmissionAccepted)
            await self._to_inbox(
                conn,
                event,
                accepted.agency_id,
                accepted.submission_id,
                ev.INBOX_SUBMISSION_ACCEPTED,
                accepted,
            )
            return
        if type_ != ev.CASE_ERASED:
            return
        erased = event.data_as(ev.CaseErased)
        if erased.submitting_agency_id is None:
            return
        confirmation = ev.InboxErasureConfirmed(
            case_id=erased.case_id,
            agency_case_ref=erased.agency_case_ref,
            erased_at=erased.erased_at,
        )
        await self._to_inbox(
            conn,
            event,
            erased.submitting_agency_id,
            erased.case_id,
            ev.INBOX_ERASURE_CONFIRMED,
            confirmation,
        )

    async def on_rejection(self, event: InboundEvent, conn: DbConnection) -> None:
        rejection = event.data_as(ev.SubmissionRejected)
        if rejection.agency_id is None:
            log.info("rejection_without_agency_not_routed")
            return
        await self._to_inbox(
            conn,
            event,
            rejection.agency_id,
            rejection.submission_id,
            ev.INBOX_SUBMISSION_REJECTED,
            rejection,
        )

    async def _to_inbox(
        self,
        conn: DbConnection,
        source: InboundEvent,
        agency_id: str,
        key: str,
        type_: str,
        data: ev.Contract,
    ) -> None:
        topic = await self._inbox_topics.ensure(agency_id)
        out = build_event(
            topic=topic,
            key=key,
            type_=type_,
            source=SOURCE,
            subject=key,
            data=data,
            correlation_id=source.correlation_id,
            causation_id=source.event_id,
        )
        await conn.execute(
            """INSERT INTO notifications (notification_id, agency_id, channel, source_event_id,
                                          ce_type)
               VALUES ($1, $2, 'kafka_inbox', $3, $4)""",
            out.event_id,
            agency_id,
            source.event_id,
            type_,
        )
        await outbox.enqueue(conn, [out])
        await enqueue_delivery(conn, agency_id, out)
        await enqueue_email(conn, agency_id, out)
        log.info("inbox_notification_queued", agency_id=agency_id, ce_type=type_)
