"""KafkaBroker factory with the project's safe defaults.

- Producer: ``acks=all`` and idempotence on, so a retried send is never written twice and per
  partition order holds.
- No topic auto-creation: topics come from the catalogue only (FastStream's notice saying so at
  every subscriber start is filtered out, see below).
- Subscribers (see :mod:`shared.kafka.consumer`) use manual acknowledgement: the offset is
  committed only after the handler's database transaction committed. FastStream's default Kafka
  policy (ACK_FIRST = auto-commit) is at-most-once and is never used here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus.provider import (
    BatchKafkaMetricsSettingsProvider,
    KafkaMetricsSettingsProvider,
)
from faststream.prometheus import ConsumeAttrs, PrometheusMiddleware

from shared.kafka.connection import KafkaConnection
from shared.metrics import REGISTRY, topic_label

# Logged by FastStream (faststream/kafka/subscriber/usecase.py) at WARNING level each time a
# subscriber starts with allow_auto_create_topics=False, whether or not a topic is missing.
AUTO_CREATE_DISABLED_NOTICE = "Auto create topics is disabled. Make sure the topics exist."


class _NoAutoCreateNotice(logging.Filter):
    """Drops exactly that notice. Here it is the intended set-up, not a problem: every topic comes
    from the catalogue, provisioned before the services start (and subscriptions are patterns,
    which FastStream could not create anyway). A warning on every start would teach newcomers to
    ignore warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != AUTO_CREATE_DISABLED_NOTICE


class _BatchLabels(BatchKafkaMetricsSettingsProvider):
    """FastStream's batch metrics labels, with an agency's topic named by its family (the
    number of agencies is not a label's to carry)."""

    def get_consume_attrs_from_message(self, msg: Any) -> ConsumeAttrs:
        attrs = super().get_consume_attrs_from_message(msg)
        return {**attrs, "destination_name": topic_label(attrs["destination_name"])}

    def get_publish_destination_name_from_cmd(self, cmd: Any) -> str:
        return topic_label(super().get_publish_destination_name_from_cmd(cmd))


class _RecordLabels(KafkaMetricsSettingsProvider):
    def get_consume_attrs_from_message(self, msg: Any) -> ConsumeAttrs:
        attrs = super().get_consume_attrs_from_message(msg)
        return {**attrs, "destination_name": topic_label(attrs["destination_name"])}

    def get_publish_destination_name_from_cmd(self, cmd: Any) -> str:
        return topic_label(super().get_publish_destination_name_from_cmd(cmd))


_BATCH_LABELS, _RECORD_LABELS = _BatchLabels(), _RecordLabels()  # stateless: made once


def metrics_labels(msg: object) -> _BatchLabels | _RecordLabels | None:
    """FastStream's metrics of what is consumed (one set per batch: cheap), not of what is
    published: those are measured per record, and the outbox relay publishes several records
    per submission; with them the metrics took about a fifth of the pipeline's throughput
    (docs/performance.md). refex_outbox_published_total counts what the relays published."""
    if msg is None:  # FastStream's publish scope
        return None
    return _BATCH_LABELS if isinstance(msg, Sequence) else _RECORD_LABELS


def create_broker(
    kafka: KafkaConnection,
    client_id: str,
    *,
    topic_discovery_interval_s: float = 5.0,
    metrics: bool = True,
) -> KafkaBroker:
    logger = logging.getLogger(f"faststream.{client_id}")
    if not any(isinstance(f, _NoAutoCreateNotice) for f in logger.filters):
        logger.addFilter(_NoAutoCreateNotice())
    return KafkaBroker(
        bootstrap_servers=kafka.servers,
        security=kafka.faststream_security(),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        allow_auto_create_topics=False,
        # Metadata refresh is also how a pattern subscription sees a newly registered agency's
        # topics; aiokafka's default (5 min) would leave its first messages waiting that long.
        metadata_max_age_ms=int(topic_discovery_interval_s * 1000),
        # A stdlib logger: records then go through the JSON formatter set up in shared.logging.
        logger=logger,
        graceful_timeout=30.0,
        # faststream_received_messages_total, _processing_time_seconds, published messages…
        # per handler and topic pattern, on the process's /metrics.
        middlewares=(
            (
                PrometheusMiddleware(
                    settings_provider_factory=metrics_labels,
                    registry=REGISTRY,
                    app_name=client_id,
                ),
            )
            if metrics
            else ()
        ),
    )
