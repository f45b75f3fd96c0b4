"""Referral service ASGI app: ``uvicorn services.referral.app:app`` or
``python -m services.referral``."""

from pathlib import Path

from shared.contracts import events as ev
from shared.contracts import topics
from shared.service import ServiceRuntime
from shared.unit import raw_handler, typed_handler

from . import metrics, status
from .decisions import RoutingPolicy
from .handlers import SOURCE, ReferralHandlers
from .settings import ReferralSettings
from .store import ReferralStore
from .structural import GapRule
from .timers import (
    answer_stale_waiting,
    expire_consents,
    expire_due,
    expire_due_handovers,
    report_structural_gaps,
)

settings = ReferralSettings()  # database_url comes from the environment
runtime = ServiceRuntime("referral", settings, Path(__file__).parent / "migrations")
policy = RoutingPolicy(
    max_attempts=settings.max_attempts,
    sla_seconds_override=settings.sla_seconds_override,
    reminder_at_fraction=settings.reminder_at_fraction,
)
handlers = ReferralHandlers(policy)
# Typed dispatch for the service topics: CloudEvents type → handler(payload, unit).
typed = typed_handler(
    {
        ev.AGENCY_REGISTERED: handlers.on_agency,
        ev.CASE_REGISTERED: handlers.on_case,
        ev.CASE_UPDATED: handlers.on_case,
        ev.CONSENT_CHANGED: handlers.on_consent_changed,
        ev.CASE_CLOSED: handlers.on_case_ended,
        ev.CASE_ERASED: handlers.on_case_ended,
        ev.ASSISTANCE_ENDED: handlers.on_assistance_ended,
        ev.CASE_HANDED_OVER: handlers.on_case_handed_over,
        ev.HANDOVER_FAILED: handlers.on_handover_failed,
        # issue 18: a community need is routed as a case's need
        ev.COMMUNITY_NEED_REGISTERED: handlers.on_community_need,
    },
    ReferralStore,
    SOURCE,
    # Intake's answer to the agency, and the owners told of a likely duplicate: notification's.
    # Follow-ups and their assessments (issue 19): intake's, for the owner and for evidence.
    ignored={
        ev.SUBMISSION_ACCEPTED,
        ev.POSSIBLE_DUPLICATE_FOUND,
        ev.ASSESSMENT_RECORDED,
        ev.FOLLOW_UP_REMINDER,
        ev.FOLLOW_UP_DUE,
        ev.FOLLOW_UP_MISSED,
    },
    on_tombstone=handlers.on_agency_removed,  # directory.agencies.v1: a deregistered agency
    # What a batch's cases will read (chains, gaps, candidates) is loaded at once (store.py).
    preload={
        ev.CASE_REGISTERED: ReferralStore.preload_cases,
        ev.CASE_UPDATED: ReferralStore.preload_cases,
    },
)
consumer = runtime.consume(
    {
        topics.DIRECTORY_AGENCIES: typed,
        topics.INTAKE_CASES: typed,
        # The agencies' own topics: raw events, bad input answered to the sender.
        topics.AGENCY_LISTINGS: raw_handler(handlers.on_listing, ReferralStore, SOURCE),
        # Answers to referrals and case handovers (agency_messages.ANSWER_MODELS: type → contract).
        topics.AGENCY_RESPONSES: raw_handler(handlers.on_response, ReferralStore, SOURCE),
    }
)
units = runtime.units(ReferralStore, SOURCE)  # timers' units of work
runtime.replay_at_start(consumer, [topics.DIRECTORY_AGENCIES, topics.AGENCY_LISTINGS])
runtime.every(settings.timer_interval_s, "referral-deadlines", lambda: expire_due(units, policy))
# Handover deadlines on the same interval (one setting for every deadline).
runtime.every(settings.timer_interval_s, "handover-deadlines", lambda: expire_due_handovers(units))
# Handover messages that waited too long for their case are answered (unknown_case).
runtime.every(
    settings.timer_interval_s,
    "handover-case-waits",
    lambda: answer_stale_waiting(units, settings.handover_case_wait_s),
)
# Clusters of unmet needs reported as structural gaps to government agencies (decision 18).
gap_rule = GapRule(
    district_digits=settings.structural_district_digits,
    period_days=settings.structural_period_days,
    threshold=settings.structural_threshold,
)
runtime.every(
    settings.structural_interval_s,
    "structural-gaps",
    lambda: report_structural_gaps(units, gap_rule),
)
# Consents whose expires_on passed cancel what they no longer cover (decision 20).
runtime.every(settings.timer_interval_s, "consent-expiry", lambda: expire_consents(units))
# Open referrals by state and unmet needs by reason, for /metrics.
runtime.gauges("referral-gauges", lambda: metrics.measure(units))
# Referrals waiting and deadlines missed per agency, for `refex platform status`.
runtime.report_by_agency(lambda: status.by_agency(units))
app = runtime.asgi_app(
    "Matches case needs to directory services and tracks each referral "
    "through its lifecycle, deadlines and re-routing."
)
