"""Notification's handlers: carry out the fan-out table (fanout.py) for each upstream event.

Each handler is short orchestration over a :class:`~shared.unit.Unit`: decide (pure), read what
the decision needs in one query, write in one statement per table, emit the inbox events.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from shared.contracts import events as ev
from shared.contracts.envelope import OutgoingEvent
from shared.kafka.inbound import InboundEvent
from shared.logging import get_logger
from shared.unit import Unit

from .channels import accepts
from .email import render
from .fanout import notices
from .store import Channels, Notification, NotificationStore
from .webhooks import structured

log = get_logger(__name__)

NotificationUnit = Unit[NotificationStore]


def notification_of(
    event: OutgoingEvent,
    agency_id: str,
    source_event_id: str,
    channels: Channels,
    console_url: str | None = None,
) -> Notification:
    """The record of one inbox event, with the webhook and e-mail copies its agency's
    channels take (pure)."""
    ce_type = event.headers["ce_type"]
    payload = None
    if channels.webhook_types is not None and accepts(channels.webhook_types, ce_type):
        payload = structured(event)
    email = None
    channel = channels.email
    if channel is not None and accepts(channel.event_types, ce_type):
        rendered = render(ce_type, json.loads(event.body), channel.language, console_url)
        if rendered is not None:
            email = (channel.addresses, *rendered)
    return Notification(
        notification_id=event.event_id,
        agency_id=agency_id,
        source_event_id=source_event_id,
        ce_type=ce_type,
        webhook_payload=payload,
        email=email,
    )


class NotificationHandlers:
    def __init__(
        self, inbox_topic: Callable[[str], Awaitable[str]], console_url: str | None = None
    ) -> None:
        # The agency's inbox, checked to exist (inbox_topics.InboxTopics.ensure).
        self._inbox_topic = inbox_topic
        self._console_url = console_url  # where e-mails link to; None: no link

    async def on_agency(self, agency: ev.AgencyRecord, unit: NotificationUnit) -> None:
        topic = await self._inbox_topic(agency.agency_id)
        await unit.stores.save_agency(agency, topic)
        log.info("agency_inbox_ready", agency_id=agency.agency_id, topic=topic)

    @staticmethod
    async def preload(stores: NotificationStore, events: Sequence[InboundEvent]) -> None:
        """The channels of every agency the batch's events notify, in one query (the fan-out
        table decides who they are, as :meth:`notify` will)."""
        await stores.channels(
            {
                notice.agency_id
                for event in events
                if event.attributes is not None and event.payload is not None
                for notice in notices(event.attributes.type, event.payload)
            }
        )

    async def notify(self, payload: Any, unit: NotificationUnit) -> None:
        """The inbox events the upstream event causes, each with its webhook and e-mail."""
        assert unit.cause.ce_type is not None and unit.cause.causation_id is not None
        decided = notices(unit.cause.ce_type, payload)
        if not decided:
            log.info("nobody_to_notify", ce_type=unit.cause.ce_type)
            return
        channels = await unit.stores.channels({n.agency_id for n in decided})
        recorded = []
        for notice in decided:
            out = unit.emit(
                notice.inbox_type,
                notice.data,
                topic=await self._inbox_topic(notice.agency_id),
                subject=notice.subject,  # also its key: the inbox is keyed by ce_subject
            )
            recorded.append(
                notification_of(
                    out,
                    notice.agency_id,
                    unit.cause.causation_id,
                    channels.get(notice.agency_id, Channels()),
                    self._console_url,
                )
            )
            log.info(
                "inbox_notification_queued", agency_id=notice.agency_id, ce_type=notice.inbox_type
            )
        await unit.stores.record(recorded)
