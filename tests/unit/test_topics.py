import re

import pytest

from shared.contracts import topics
from shared.contracts.topics import CATALOGUE, CleanupPolicy, Owner

NAME = re.compile(r"^[a-z]+\.[a-z]+\.v[1-9][0-9]*$")


def test_every_topic_name_is_owner_stream_version() -> None:
    for spec in CATALOGUE:
        assert NAME.fullmatch(spec.name), spec.name


def test_names_are_unique() -> None:
    names = [t.name for t in CATALOGUE]
    assert len(names) == len(set(names))


def test_directory_topics_are_compacted_and_keep_tombstones() -> None:
    for name in (topics.DIRECTORY_SERVICES, topics.DIRECTORY_AGENCIES):
        spec = topics.spec(name)
        assert spec.cleanup_policy is CleanupPolicy.COMPACT
        assert spec.config()["cleanup.policy"] == "compact"
        assert int(spec.config()["delete.retention.ms"]) > 0


def test_inbound_topics_are_written_by_agencies_only() -> None:
    inbound = {t.name for t in CATALOGUE if t.owner is Owner.AGENCIES}
    assert inbound == {
        topics.INTAKE_SUBMISSIONS,
        topics.DIRECTORY_SERVICES,
        topics.REFERRAL_RESPONSES,
    }


def test_every_service_has_a_dead_letter_topic() -> None:
    for service in ("intake", "referral", "notification"):
        assert topics.spec(topics.dead_letter_topic(service)).owner.value == service


def test_agency_inbox_name_and_spec() -> None:
    name = topics.agency_inbox("ngo-jamm")
    assert name == "agency.ngo-jamm.inbox.v1"
    spec = topics.spec(name)
    assert spec.owner is Owner.NOTIFICATION
    assert spec.partitions == topics.AGENCY_INBOX_PARTITIONS


@pytest.mark.parametrize("bad", ["", "A", "x", "ngo jamm", "ngo.jamm", "../etc", "-ngo"])
def test_agency_inbox_refuses_odd_ids(bad: str) -> None:
    with pytest.raises(ValueError):
        topics.agency_inbox(bad)


def test_unknown_topic_is_not_in_catalogue() -> None:
    with pytest.raises(KeyError):
        topics.spec("someone.elses.v1")


def test_consumers_of_each_service() -> None:
    assert topics.INTAKE_SUBMISSIONS in topics.consumed_by(Owner.INTAKE)
    assert topics.INTAKE_CASES in topics.consumed_by(Owner.REFERRAL)
    assert topics.REFERRAL_EVENTS in topics.consumed_by(Owner.NOTIFICATION)
