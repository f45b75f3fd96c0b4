"""Referral service ASGI app: ``uvicorn services.referral.app:app`` or
``python -m services.referral``."""

from pathlib import Path

from shared.contracts import topics
from shared.service import ServiceRuntime

from .handlers import ReferralHandlers
from .routing import RoutingPolicy
from .settings import ReferralSettings
from .timers import expire_due

settings = ReferralSettings()  # database_url comes from the environment
runtime = ServiceRuntime("referral", settings, Path(__file__).parent / "migrations")
policy = RoutingPolicy(
    max_attempts=settings.max_attempts,
    sla_seconds_override=settings.sla_seconds_override,
    reminder_at_fraction=settings.reminder_at_fraction,
)
handlers = ReferralHandlers(policy)
consumer = runtime.consume(
    {
        topics.AGENCY_LISTINGS: handlers.on_listing,
        topics.DIRECTORY_AGENCIES: handlers.on_agency,
        topics.INTAKE_CASES: handlers.on_case,
        topics.AGENCY_RESPONSES: handlers.on_response,
    }
)
runtime.replay_at_start(consumer, [topics.DIRECTORY_AGENCIES, topics.AGENCY_LISTINGS])
runtime.every(
    settings.timer_interval_s, "referral-deadlines", lambda: expire_due(runtime.pool, policy)
)
app = runtime.asgi_app(
    "Matches case needs to directory services and tracks each referral "
    "through its lifecycle, deadlines and re-routing."
)
