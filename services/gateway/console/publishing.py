"""What a console form becomes on the wire: a CloudEvent on the session's agency's own topic,
written as its own user, after the very checks the HTTP API and the agency's consumer apply
(ingress.check). A refusal comes back to the page that sent it, field by field. A new case's
personal block is sealed for intake here, after those checks (decision 33): the caseworker's
browser sends the form over HTTPS as any form, and the broker receives only the box."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from shared.contracts.envelope import CONTENT_TYPE, SPEC_VERSION
from shared.kafka.agency_input import Refusal
from shared.logging import get_logger

from ..agency_kafka import KafkaRefused, ProducerPool
from ..ingress import Family, check
from ..intake_keys import IntakeKeys, KeysUnavailable, sealed_for_intake
from ..sessions import Session

log = get_logger(__name__)

SOURCE = "urn:org:referralexchange:gateway"
KEYS_UNAVAILABLE = (
    "Intake's key to seal the personal data for cannot be read right now: nothing was sent. "
    "Try again in a moment."
)


def now() -> datetime:
    return datetime.now(UTC)


class ConsolePublisher:
    def __init__(self, producers: ProducerPool, intake_keys: IntakeKeys) -> None:
        self.producers = producers
        self.intake_keys = intake_keys

    async def publish(
        self, session: Session, family: Family, ce_type: str, data: dict[str, Any]
    ) -> Refusal | None:
        """Publish ``data`` as ``ce_type`` on the session's agency's ``family`` topic, acknowledged
        by the broker; None when written, the refusal otherwise."""
        headers = [
            ("ce_id", str(uuid.uuid4()).encode()),
            ("ce_source", f"{SOURCE}/{session.principal.name}".encode()),
            ("ce_type", ce_type.encode()),
            ("ce_specversion", SPEC_VERSION.encode()),
            ("ce_time", now().isoformat().encode()),
            ("content-type", CONTENT_TYPE.encode()),
        ]
        value = json.dumps(data, separators=(",", ":")).encode()
        agency_id = session.principal.agency_id
        clear = check(family, agency_id, headers, value)
        if isinstance(clear, Refusal):
            return clear
        try:
            checked = await sealed_for_intake(
                clear, family, agency_id, session.connection, self.intake_keys
            )
        except KeysUnavailable:
            # Not in clear on the chance that intake takes it: the form is shown again, as typed.
            topic = clear.record.topic
            return Refusal(clear.record.event_id, agency_id, topic, KEYS_UNAVAILABLE, [])
        if isinstance(checked, Refusal):
            return checked
        try:
            await self.producers.publish(session.connection, checked.record)
        except KafkaRefused as exc:
            return Refusal(
                checked.record.event_id,
                session.principal.agency_id,
                checked.record.topic,
                f"the exchange refused to publish ({exc})",
                [],
            )
        log.info(
            "console_published",
            agency_id=session.principal.agency_id,
            ce_type=ce_type,
            ce_id=checked.record.event_id,
        )
        return None
