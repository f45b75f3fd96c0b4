"""Evidence service ASGI app: ``uvicorn services.evidence.app:app`` or
``python -m services.evidence``."""

from pathlib import Path

from shared.contracts import events as ev
from shared.contracts import topics
from shared.service import ServiceRuntime
from shared.unit import typed_handler

from . import handlers as h
from .publishing import publish_changed
from .settings import EvidenceSettings
from .source import report_source
from .store import EvidenceStore
from .web import dashboard_app
from .web.account_store import AccountStore

DASHBOARD_PATH = "/dashboard"

settings = EvidenceSettings()  # database_url comes from the environment
runtime = ServiceRuntime("evidence", settings, Path(__file__).parent / "migrations")
# Typed dispatch: CloudEvents type → handler(payload, unit). What the read model counts.
typed = typed_handler(
    {
        ev.CASE_REGISTERED: h.on_case,
        ev.CASE_UPDATED: h.on_case,
        ev.CONSENT_CHANGED: h.on_consent_changed,
        ev.CASE_CLOSED: h.on_case_closed,
        ev.CASE_ERASED: h.on_case_erased,
        ev.CASE_HANDED_OVER: h.on_case_handed_over,
        ev.HANDOVER_FAILED: h.on_handover_failed,
        ev.COMMUNITY_NEED_REGISTERED: h.on_community_need,
        ev.ASSESSMENT_RECORDED: h.on_assessment,
        ev.FOLLOW_UP_DUE: h.on_follow_up,
        ev.FOLLOW_UP_MISSED: h.on_follow_up,
        ev.REFERRAL_REQUESTED: h.on_referral_requested,
        ev.REFERRAL_TRANSITIONED: h.on_referral_transitioned,
        ev.NEED_UNMATCHED: h.on_need_unmatched,
        ev.HANDOVER_PROPOSED: h.on_handover_proposed,
        ev.HANDOVER_ACCEPTED: h.on_handover_accepted,
        ev.HANDOVER_ENDED: h.on_handover_ended,
    },
    EvidenceStore,
    h.SOURCE,
    # Answers to agencies, reminders and listings: nothing the evidence counts. Ends of
    # assistance and continuity: counted by referral's own continuity report for now.
    ignored=h.IGNORED,
)
consumer = runtime.consume({topics.INTAKE_CASES: typed, topics.REFERRAL_EVENTS: typed})
units = runtime.units(EvidenceStore, h.SOURCE)
# The aggregates, published on evidence.aggregates.v1 when their figures changed.
runtime.every(
    settings.publish_interval_s, "evidence-aggregates", lambda: publish_changed(units, settings.k)
)
# What the dashboard and the CSV export read: the report for some filters.
reports = report_source(lambda: runtime.pool, settings.k)
# The dashboard: the same reports as pages, behind a login (accounts in this database).
dashboard = dashboard_app(
    settings.dashboard_config(), reports, runtime.units(AccountStore, h.SOURCE)
)
app = runtime.asgi_app(
    "Reads cases, referrals and follow-ups into a pseudonymous read model and publishes its "
    "aggregates, cells of fewer than k cases suppressed; serves the dashboard under /dashboard.",
    mounts={DASHBOARD_PATH: dashboard},
)
