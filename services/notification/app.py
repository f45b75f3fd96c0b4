"""Notification service ASGI app: ``uvicorn services.notification.app:app`` or
``python -m services.notification``."""

from datetime import timedelta
from pathlib import Path

from shared.contracts import events as ev
from shared.contracts import topics
from shared.service import ServiceRuntime
from shared.unit import typed_handler

from . import metrics, status
from .constants import SOURCE
from .email import SmtpSettings, send_due
from .fanout import SILENT, UPSTREAM_TYPES
from .handlers import NotificationHandlers
from .inbox_topics import InboxTopics
from .secret_store import SecretsKey, seal_carried_over
from .settings import NotificationSettings
from .store import NotificationStore
from .webhooks import DeliveryPolicy, deliver_due

settings = NotificationSettings()  # database_url and the secrets key come from the environment
runtime = ServiceRuntime("notification", settings, Path(__file__).parent / "migrations")
secrets_key = SecretsKey.from_setting(settings.secrets_key)
# Before any delivery: seal what migration 0006 carried over in clear (idempotent).
runtime.at_start("seal webhook secrets", lambda: seal_carried_over(runtime.pool, secrets_key))
handlers = NotificationHandlers(InboxTopics(settings.kafka).ensure, settings.console_url)
# Typed dispatch: CloudEvents type → handler(payload, unit), for every topic notification reads.
dispatch = typed_handler(
    {
        ev.AGENCY_REGISTERED: handlers.on_agency,
        # Who hears what: the fan-out table in fanout.py.
        **dict.fromkeys(UPSTREAM_TYPES, handlers.notify),
    },
    NotificationStore,
    SOURCE,
    ignored=SILENT,  # the case events nobody is told about
    preload=NotificationHandlers.preload,  # the channels of a batch's recipients, at once
)
runtime.consume(dict.fromkeys(topics.consumed_by(topics.Owner.NOTIFICATION), dispatch))
webhook_policy = DeliveryPolicy(
    schedule_s=settings.webhook_schedule_s,
    allow_private_targets=settings.allow_private_webhook_targets,
    disable_after=timedelta(days=settings.webhook_disable_after_days),
)
runtime.every(
    settings.webhook_interval_s,
    "webhooks",
    lambda: deliver_due(runtime.pool, webhook_policy, secrets_key),
)
smtp = SmtpSettings(
    host=settings.smtp_host,
    port=settings.smtp_port,
    sender=settings.smtp_sender,
    username=settings.smtp_username,
    password=settings.smtp_password,  # unwrapped only in the SMTP call itself
    start_tls=settings.smtp_start_tls,
)
runtime.every(
    settings.webhook_interval_s, "e-mails", lambda: send_due(runtime.pool, smtp, webhook_policy)
)
# The webhook and e-mail queues and the disabled endpoints, for /metrics.
gauge_units = runtime.units(NotificationStore, SOURCE)
runtime.gauges("delivery-gauges", lambda: metrics.measure(gauge_units))
# Disabled endpoints and deliveries per agency, for `refex platform status`.
runtime.report_by_agency(lambda: status.by_agency(gauge_units))
app = runtime.asgi_app("Delivers referral events to each agency's inbox topic.")
