import re

import pytest

from shared.contracts import topics
from shared.contracts.topics import AGENCY_FAMILIES, CATALOGUE, CleanupPolicy, Owner

NAME = re.compile(r"^[a-z]+\.[a-z]+\.v[1-9][0-9]*$")


def test_every_fixed_topic_name_is_owner_stream_version() -> None:
    for spec in CATALOGUE:
        assert NAME.fullmatch(spec.name), spec.name


def test_names_are_unique() -> None:
    names = [t.name for t in CATALOGUE] + [f.template.name for f in AGENCY_FAMILIES]
    assert len(names) == len(set(names))


def test_registries_are_compacted_kept_forever_and_keep_tombstones() -> None:
    for spec in (topics.spec(topics.DIRECTORY_AGENCIES), topics.AGENCY_LISTINGS.spec("ngo-a")):
        assert spec.cleanup_policy is CleanupPolicy.COMPACT
        config = spec.config()
        assert config["cleanup.policy"] == "compact"
        assert config["retention.ms"] == "-1"
        assert int(config["delete.retention.ms"]) > 0


def test_event_topics_expire() -> None:
    assert topics.spec(topics.INTAKE_CASES).config()["retention.ms"] == str(30 * 24 * 3600 * 1000)


def test_agencies_write_only_their_own_inbound_topics() -> None:
    written_by_agency = {f.stream for f in AGENCY_FAMILIES if f.template.owner is Owner.AGENCY}
    assert written_by_agency == {"submissions", "listings", "responses"}
    assert topics.AGENCY_INBOX.template.owner is Owner.NOTIFICATION
    assert all(t.owner is not Owner.AGENCY for t in CATALOGUE)


def test_every_service_has_a_dead_letter_topic() -> None:
    for service in ("intake", "referral", "notification"):
        assert topics.spec(topics.dead_letter_topic(service)).owner.value == service


def test_agency_topic_names_and_the_agency_they_prove() -> None:
    assert topics.agency_inbox("ngo-jamm") == "agency.ngo-jamm.inbox.v1"
    name = topics.AGENCY_SUBMISSIONS.name("iom-sn")
    assert name == "agency.iom-sn.submissions.v1"
    assert topics.AGENCY_SUBMISSIONS.agency_of(name) == "iom-sn"
    assert topics.AGENCY_LISTINGS.agency_of(name) is None
    assert topics.family_of(name) is topics.AGENCY_SUBMISSIONS
    assert topics.family_of(topics.INTAKE_CASES) is None
    assert topics.spec(name).owner is Owner.AGENCY
    assert [t.name for t in topics.agency_topics("iom-sn")] == [
        "agency.iom-sn.submissions.v1",
        "agency.iom-sn.listings.v1",
        "agency.iom-sn.responses.v1",
        "agency.iom-sn.inbox.v1",
    ]


@pytest.mark.parametrize(
    "topic",
    [
        "agency.iom-sn.submissions.v2",
        "agency.IOM.submissions.v1",
        "agency..submissions.v1",
        "xagency.iom-sn.submissions.v1",
        "agency.iom-sn.submissions.v1.x",
        "agency.a.b.submissions.v1",
    ],
)
def test_family_regex_matches_nothing_else(topic: str) -> None:
    assert not re.fullmatch(topics.AGENCY_SUBMISSIONS.regex, topic)
    assert topics.AGENCY_SUBMISSIONS.agency_of(topic) is None


@pytest.mark.parametrize("bad", ["", "A", "x", "ngo jamm", "ngo.jamm", "../etc", "-ngo"])
def test_odd_agency_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        topics.agency_inbox(bad)


def test_unknown_topic_is_not_in_catalogue() -> None:
    with pytest.raises(KeyError):
        topics.spec("someone.elses.v1")


def test_what_each_service_consumes() -> None:
    assert "agency.<agency_id>.submissions.v1" in topics.consumed_by(Owner.INTAKE)
    assert set(topics.consumed_by(Owner.REFERRAL)) == {
        topics.INTAKE_CASES,
        topics.DIRECTORY_AGENCIES,
        "agency.<agency_id>.listings.v1",
        "agency.<agency_id>.responses.v1",
    }
    assert topics.REFERRAL_EVENTS in topics.consumed_by(Owner.NOTIFICATION)


def test_every_topic_declares_its_payloads() -> None:
    for spec in CATALOGUE:
        if not spec.name.endswith(".dlq.v1"):
            assert spec.payloads, spec.name
    for family in AGENCY_FAMILIES:
        assert family.template.payloads, family.template.name
