"""Intake service ASGI app: ``uvicorn services.intake.app:app`` or ``python -m services.intake``."""

from pathlib import Path

from shared.contracts import topics
from shared.service import ServiceRuntime

from .handlers import on_submission
from .settings import IntakeSettings

settings = IntakeSettings()  # database_url comes from the environment
runtime = ServiceRuntime("intake", settings, Path(__file__).parent / "migrations")
runtime.consume({topics.AGENCY_SUBMISSIONS: on_submission})
app = runtime.asgi_app("Validates agency case submissions and publishes pseudonymous case events.")
