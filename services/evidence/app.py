"""Evidence service ASGI app: ``uvicorn services.evidence.app:app`` or
``python -m services.evidence``."""

from pathlib import Path

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
# Typed dispatch: CloudEvents type → handler(payload, unit), the table in handlers.py (what
# the read model counts); the types of the topics it reads that it leaves alone are IGNORED.
typed = typed_handler(h.HANDLERS, EvidenceStore, h.SOURCE, ignored=h.IGNORED)
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
