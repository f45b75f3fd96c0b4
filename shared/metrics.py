"""The Prometheus metrics every service process exports on ``/metrics``.

One registry per process (services run one per process; the scrape job names the service).
Names follow Prometheus conventions: a ``refex_`` prefix, base units in the name (``_seconds``,
``_records``), counters ending ``_total``. No label carries personal data or an unbounded value:
topics are labelled by their catalogue family (``agency.submissions``, never one agency's
topic), errors by their type, states and reasons by their contract vocabularies.

The domain metrics of one service (referrals by state, delivery queues…) are defined in that
service's own ``metrics.py`` on this same registry."""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    make_asgi_app,
)

from shared.contracts.topics import AGENCY_FAMILIES, TopicFamily

REGISTRY = CollectorRegistry(auto_describe=True)
# process_cpu_seconds_total, process_resident_memory_bytes, open fds; python_info; GC counts.
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

_BATCH_RECORDS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

CONSUMER_BATCH_RECORDS = Histogram(
    "refex_consumer_batch_records",
    "Records in each batch the consumer applied (one database transaction).",
    buckets=_BATCH_RECORDS,
    registry=REGISTRY,
)
CONSUMER_BATCH_SECONDS = Histogram(
    "refex_consumer_batch_duration_seconds",
    "Time to settle one batch: admit, apply in one transaction, retry or dead-letter.",
    buckets=_SECONDS,
    registry=REGISTRY,
)
CONSUMER_EVENTS = Counter(
    "refex_consumer_events_total",
    "Events the consumer settled, by outcome (applied, duplicate, dead_lettered).",
    ["outcome"],
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "refex_consumer_lag_records",
    "Records of the topic not yet committed by this service's consumer group (all its "
    "instances), measured every few seconds.",
    ["topic"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "refex_dead_letters_total",
    "Events written to this service's dead-letter topic, by the type of error.",
    ["error_type"],
    registry=REGISTRY,
)
OUTBOX_UNSENT = Gauge(
    "refex_outbox_unsent_rows",
    "Events committed in the outbox and not yet acknowledged by Kafka.",
    registry=REGISTRY,
)
OUTBOX_OLDEST_AGE = Gauge(
    "refex_outbox_oldest_unsent_age_seconds",
    "Age of the oldest unsent outbox row (0 when none is waiting).",
    registry=REGISTRY,
)
OUTBOX_PUBLISHED = Counter(
    "refex_outbox_published_total",
    "Outbox rows the relay published and marked sent.",
    registry=REGISTRY,
)
TRIMMED_RECORDS = Counter(
    "refex_trimmed_records_total",
    "Records this service deleted from a topic family it had applied and committed "
    "(shared.kafka.trimming: the agencies' submissions, by intake).",
    ["topic"],
    registry=REGISTRY,
)
PERIODIC_JOB_FAILURES = Counter(
    "refex_periodic_job_failures_total",
    "Runs of a periodic job (timers, deliveries, measurements) that failed.",
    ["periodic_job"],
    registry=REGISTRY,
)


def family_label(family: TopicFamily) -> str:
    """The label of every topic of a family: ``agency.*.submissions.v1``."""
    return f"agency.*.{family.stream}.v{family.major}"


def topic_label(topic: str) -> str:
    """The label of a topic: its own name for a fixed topic, its family's for an agency's
    (``agency.*.submissions.v1``: the number of agencies is not a label's to carry)."""
    for family in AGENCY_FAMILIES:
        if family.agency_of(topic) is not None:
            return family_label(family)
    return topic


def metrics_app() -> Any:
    """The ASGI app serving this registry in Prometheus' text format."""
    return make_asgi_app(registry=REGISTRY)
