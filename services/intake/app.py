"""Intake service ASGI app: ``uvicorn services.intake.app:app`` or ``python -m services.intake``."""

from pathlib import Path

from shared.contracts import topics
from shared.keys import decode_key
from shared.service import ServiceRuntime

from .handlers import IntakeHandlers, IntakeKeys
from .settings import IntakeSettings

settings = IntakeSettings()  # database_url and the keys come from the environment
runtime = ServiceRuntime("intake", settings, Path(__file__).parent / "migrations")
handlers = IntakeHandlers(
    IntakeKeys(
        master_key=decode_key(settings.master_key),
        duplicate_key=decode_key(settings.duplicate_key),
        duplicate_key_id=settings.duplicate_key_id,
    )
)
runtime.consume(
    {
        topics.AGENCY_SUBMISSIONS: handlers.on_submission,
        topics.REFERRAL_EVENTS: handlers.on_referral_event,
        topics.DIRECTORY_AGENCIES: handlers.on_agency,
    }
)
app = runtime.asgi_app(
    "Validates agency submissions, keeps the case registry and its personal "
    "data (encrypted), publishes pseudonymous case events and sealed "
    "disclosures."
)
