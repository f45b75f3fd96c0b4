"""Referral service ASGI app: ``uvicorn services.referral.app:app`` or
``python -m services.referral``."""

from pathlib import Path

from shared.contracts import topics
from shared.service import ServiceRuntime

from .handlers import on_agency, on_case, on_listing
from .settings import ReferralSettings

settings = ReferralSettings()  # database_url comes from the environment
runtime = ServiceRuntime("referral", settings, Path(__file__).parent / "migrations")
runtime.consume(
    {
        topics.AGENCY_LISTINGS: on_listing,
        topics.DIRECTORY_AGENCIES: on_agency,
        topics.INTAKE_CASES: on_case,
    }
)
app = runtime.asgi_app("Matches case needs to directory services and tracks each referral.")
