"""Intake service ASGI app: ``uvicorn services.intake.app:app`` or ``python -m services.intake``."""

from pathlib import Path

from shared.contracts import events as ev
from shared.contracts import topics
from shared.kafka.trimming import GroupTrimmer
from shared.keys import decode_key
from shared.service import ServiceRuntime
from shared.unit import TypedHandler, raw_handler, typed_handler

from .handlers import SOURCE, IntakeHandlers, IntakeKeys
from .key_publication import publish_submission_keys
from .settings import IntakeSettings
from .store import IntakeStore
from .timers import tell_follow_ups

settings = IntakeSettings()  # database_url and the keys come from the environment
# The key pairs agencies seal a submission's personal block for (issue 22, decision 32).
submission_keys = settings.submission_keys()
runtime = ServiceRuntime("intake", settings, Path(__file__).parent / "migrations")
handlers = IntakeHandlers(
    IntakeKeys(
        master_key=decode_key(settings.master_key),
        duplicate_key=decode_key(settings.duplicate_key),
        duplicate_key_id=settings.duplicate_key_id,
        submission=submission_keys,
    ),
    settings.programme(),
    require_sealed_personal=settings.require_sealed_personal,
)
# Typed dispatch for the service topics: CloudEvents type → handler(payload, unit).
table: dict[str, TypedHandler[IntakeStore]] = {
    ev.AGENCY_REGISTERED: handlers.on_agency,
    ev.REFERRAL_REQUESTED: handlers.on_referral_requested,
    # Referral runs a handover's lifecycle; intake records its steps and moves the case.
    ev.HANDOVER_PROPOSED: handlers.on_handover_proposed,
    ev.HANDOVER_ACCEPTED: handlers.on_handover_accepted,
    ev.HANDOVER_ENDED: handlers.on_handover_ended,
}
typed = typed_handler(
    table,
    IntakeStore,
    SOURCE,
    # The rest of the lifecycle concerns the agencies, not the registry of personal data.
    ignored=set(topics.spec(topics.REFERRAL_EVENTS).payloads) - set(table),
    on_tombstone=handlers.on_agency_removed,  # a deregistered agency
    # What a batch's referrals and submissions will read is loaded at once (store.py).
    preload={ev.REFERRAL_REQUESTED: IntakeStore.preload_disclosures},
)
runtime.consume(
    {
        topics.DIRECTORY_AGENCIES: typed,
        topics.REFERRAL_EVENTS: typed,
        # The agencies' own topics: raw events, bad input answered to the sender.
        topics.AGENCY_SUBMISSIONS: raw_handler(
            handlers.on_submission, IntakeStore, SOURCE, preload=handlers.preload_submissions
        ),
    }
)
units = runtime.units(IntakeStore, SOURCE)
# Their public keys on intake.keys.v1, where every agency can read them.
runtime.at_start("submission-keys", lambda: publish_submission_keys(units, submission_keys))
# What intake applied and committed of each agency's submissions is deleted from the broker,
# so personal data sent in clear stays there minutes, not the topic's 30 days (issue 22).
if settings.trim_submissions:
    trimmer = GroupTrimmer(settings.kafka, runtime.name, topics.AGENCY_SUBMISSIONS)
    runtime.every(settings.trim_interval_s, "trim-submissions", trimmer.trim)
# Follow-up waves that come due: reminders, due dates, missed ones (issue 19, decision 21).
programme = settings.programme()
runtime.every(
    settings.follow_up_interval_s, "follow-ups", lambda: tell_follow_ups(units, programme)
)
app = runtime.asgi_app(
    "Validates agency submissions, keeps the case registry and its personal "
    "data (encrypted), publishes pseudonymous case events and sealed "
    "disclosures."
)
