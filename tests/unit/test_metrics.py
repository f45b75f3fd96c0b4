"""The pure parts of /metrics: topic labels that never name an agency, and lag per topic."""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition
from prometheus_client import generate_latest

from shared.contracts import topics
from shared.kafka.lag import lag_by_topic
from shared.metrics import REGISTRY, topic_label


def test_an_agencys_topic_is_labelled_by_its_family_and_a_fixed_topic_by_its_name() -> None:
    assert topic_label(topics.AGENCY_SUBMISSIONS.name("ngo-x")) == "agency.*.submissions.v1"
    assert topic_label(topics.agency_inbox("iom-y")) == "agency.*.inbox.v1"
    assert topic_label(topics.INTAKE_CASES) == "intake.cases.v1"


def test_lag_sums_the_partitions_of_a_topic_behind_their_commit() -> None:
    a = topics.AGENCY_SUBMISSIONS.name("ngo-a")
    b = topics.AGENCY_SUBMISSIONS.name("ngo-b")
    committed = {
        TopicPartition(topics.INTAKE_CASES, 0): 10,
        TopicPartition(topics.INTAKE_CASES, 1): 5,
        TopicPartition(a, 0): 3,
        TopicPartition(b, 0): 7,
        TopicPartition(topics.REFERRAL_EVENTS, 0): -1,  # never committed: no position
        TopicPartition(topics.REFERRAL_EVENTS, 1): 4,  # its end unknown: not counted
    }
    ends = {
        TopicPartition(topics.INTAKE_CASES, 0): 12,
        TopicPartition(topics.INTAKE_CASES, 1): 5,
        TopicPartition(a, 0): 4,
        TopicPartition(b, 0): 2,  # end below the commit (topic recreated): none behind
        TopicPartition(topics.REFERRAL_EVENTS, 0): 100,
    }
    assert lag_by_topic(committed, ends) == {
        "intake.cases.v1": 2,
        "agency.*.submissions.v1": 1,
    }


def test_the_registry_exports_the_process_and_the_shared_metrics() -> None:
    text = generate_latest(REGISTRY).decode()
    for name in (
        "process_resident_memory_bytes",
        "refex_consumer_batch_records_bucket",
        "refex_outbox_unsent_rows",
        "refex_outbox_oldest_unsent_age_seconds",
    ):
        assert name in text, name


def test_faststreams_labels_name_an_agencys_topic_by_its_family() -> None:
    from types import SimpleNamespace

    from shared.kafka.broker import metrics_labels

    command = SimpleNamespace(destination=topics.agency_inbox("ngo-x"))
    for provider in (metrics_labels(object()), metrics_labels(())):
        assert provider is not None
        assert provider.get_publish_destination_name_from_cmd(command) == "agency.*.inbox.v1"


def test_faststream_measures_no_publish_record_by_record() -> None:
    """FastStream calls the factory with no message for its publish scope: None there skips
    its per-record publish metrics (a fifth of the throughput; docs/performance.md)."""
    from shared.kafka.broker import metrics_labels

    assert metrics_labels(None) is None


def test_metrics_off_leaves_the_broker_without_the_prometheus_middleware() -> None:
    """METRICS_ENABLED=false (what `make bench` compares against) really takes the per-message
    work away, not only the /metrics route."""
    from faststream.prometheus import PrometheusMiddleware

    from shared.kafka.broker import create_broker
    from shared.kafka.connection import KafkaConnection

    kafka = KafkaConnection("127.0.0.1:1", None, None)

    def prometheus(broker: Any) -> list[object]:
        return [m for m in broker.middlewares if isinstance(m, PrometheusMiddleware)]

    assert prometheus(create_broker(kafka, "on"))
    assert not prometheus(create_broker(kafka, "off", metrics=False))
