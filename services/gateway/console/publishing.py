"""What a console form becomes on the wire: a CloudEvent on the session's agency's own topic,
written as its own user, after the very checks the HTTP API and the agency's consumer apply
(ingress.check). A refusal comes back to the page that sent it, field by field."""

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
from ..sessions import Session

log = get_logger(__name__)

SOURCE = "urn:org:referralexchange:gateway"


def now() -> datetime:
    return datetime.now(UTC)


class ConsolePublisher:
    def __init__(self, producers: ProducerPool) -> None:
        self.producers = producers

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
        checked = check(family, session.principal.agency_id, headers, value)
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
