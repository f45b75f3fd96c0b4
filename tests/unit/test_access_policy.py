"""The ACLs derived from the topic catalogue: least privilege, checked rule by rule."""

from __future__ import annotations

import pytest

from ops.access_policy import (
    ADMIN_USER,
    SERVICES,
    AclRule,
    InvalidMemberName,
    Operation,
    Pattern,
    Resource,
    agency_group_prefix,
    agency_member_of,
    agency_member_rules,
    agency_member_user,
    agency_rules,
    agency_user,
    evidence_reader_rules,
    registered_principal_rules,
    service_rules,
    service_user,
)
from shared.contracts import topics
from shared.contracts.topics import Owner


def _of(rules: list[AclRule], user: str) -> set[tuple[str, str, str]]:
    return {(r.operation, r.resource, r.name) for r in rules if r.user == user}


def test_an_agency_writes_its_inbound_topics_and_reads_its_inbox_and_listings_only() -> None:
    rules = agency_rules("ngo-jamm")
    assert _of(rules, agency_user("ngo-jamm")) == {
        (Operation.WRITE, Resource.TOPIC, "agency.ngo-jamm.submissions.v1"),
        (Operation.WRITE, Resource.TOPIC, "agency.ngo-jamm.listings.v1"),
        (Operation.WRITE, Resource.TOPIC, "agency.ngo-jamm.responses.v1"),
        (Operation.READ, Resource.TOPIC, "agency.ngo-jamm.inbox.v1"),
        # its own listings read back (the console shows and changes them, issue 20)
        (Operation.READ, Resource.TOPIC, "agency.ngo-jamm.listings.v1"),
        # intake's public submission keys, to seal a personal block for (issue 22)
        (Operation.READ, Resource.TOPIC, topics.INTAKE_KEYS),
        (Operation.READ, Resource.GROUP, "agency.ngo-jamm."),
    }


def test_every_agency_and_member_reads_intake_keys_and_nobody_writes_them_but_intake() -> None:
    read = (Operation.READ, Resource.TOPIC, topics.INTAKE_KEYS)
    for agency in ("iom-sn", "gov-fp"):
        assert read in _of(agency_rules(agency), agency_user(agency))
    member = agency_member_user("iom-sn", "amina")
    assert read in _of(agency_member_rules("iom-sn", "amina"), member)
    writers = {
        r.user
        for r in [*agency_rules("iom-sn"), *(r for s in SERVICES for r in service_rules(s))]
        if r.name == topics.INTAKE_KEYS and r.operation is Operation.WRITE
    }
    assert writers == {"intake"}


def test_agency_rules_are_literal_except_its_group_prefix() -> None:
    for rule in agency_rules("iom-sn"):
        if rule.resource is Resource.GROUP:
            assert rule.pattern is Pattern.PREFIXED
            # the trailing dot: agency "iom" must not match groups of agency "iom-sn"
            assert rule.name == agency_group_prefix("iom-sn") == "agency.iom-sn."
        else:
            assert rule.pattern is Pattern.LITERAL
            assert rule.name.startswith("agency.iom-sn.") or rule.name == topics.INTAKE_KEYS, rule


def test_services_get_exactly_their_part_of_an_agency() -> None:
    rules = agency_rules("gov-fp")
    assert _of(rules, "intake") == {
        (Operation.READ, Resource.TOPIC, "agency.gov-fp.submissions.v1"),
        # trimming what it applied (issue 22): DeleteRecords on the submissions, nothing else
        (Operation.DELETE, Resource.TOPIC, "agency.gov-fp.submissions.v1"),
    }
    assert _of(rules, "referral") == {
        (Operation.READ, Resource.TOPIC, "agency.gov-fp.listings.v1"),
        (Operation.READ, Resource.TOPIC, "agency.gov-fp.responses.v1"),
    }
    assert _of(rules, "notification") == {
        (Operation.WRITE, Resource.TOPIC, "agency.gov-fp.inbox.v1")
    }


def test_no_rule_is_a_wildcard_or_a_deny() -> None:
    everything = [r for s in SERVICES for r in service_rules(s)] + agency_rules("a1")
    for rule in everything:
        assert "*" not in rule.name and rule.name, rule
        assert rule.operation in (Operation.READ, Operation.WRITE, Operation.DELETE)


def test_only_intake_deletes_and_only_on_the_agencies_submissions() -> None:
    everything = [r for s in SERVICES for r in service_rules(s)] + agency_rules("a1")
    deletes = [r for r in everything if r.operation is Operation.DELETE]
    assert [(r.user, r.resource, r.name, r.pattern) for r in deletes] == [
        ("intake", Resource.TOPIC, "agency.a1.submissions.v1", Pattern.LITERAL)
    ]
    member = agency_member_rules("a1", "desk")
    assert not [r for r in member if r.operation is Operation.DELETE]


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_writes_what_it_owns_and_reads_what_it_consumes(service: Owner) -> None:
    rules = service_rules(service)
    user = service_user(service)
    writes = {r.name for r in rules if r.operation is Operation.WRITE}
    reads = {
        r.name for r in rules if r.operation is Operation.READ and r.resource is Resource.TOPIC
    }
    assert writes == {t.name for t in topics.CATALOGUE if t.owner is service}
    assert reads == {t.name for t in topics.CATALOGUE if service in t.consumers}
    assert topics.dead_letter_topic(service.value) in writes
    groups = [r for r in rules if r.resource is Resource.GROUP]
    assert [(g.name, g.pattern) for g in groups] == [(service.value, Pattern.LITERAL)]
    assert all(r.user == user for r in rules)


def test_only_operators_write_the_agency_registry() -> None:
    for service in SERVICES:
        assert (Operation.WRITE, Resource.TOPIC, topics.DIRECTORY_AGENCIES) not in _of(
            service_rules(service), service.value
        )


def test_agency_principals_cannot_collide_with_service_principals() -> None:
    # agency ids match [a-z0-9][a-z0-9-]+, so "agency.<id>" is never a bare service name
    assert {service_user(s) for s in SERVICES}.isdisjoint({agency_user("intake")})
    with pytest.raises(ValueError):
        service_user(Owner.AGENCY)


def test_the_evidence_service_reads_cases_and_referrals_and_writes_its_aggregates() -> None:
    assert _of(service_rules(Owner.EVIDENCE), "evidence") == {
        (Operation.READ, Resource.TOPIC, topics.INTAKE_CASES),
        (Operation.READ, Resource.TOPIC, topics.REFERRAL_EVENTS),
        (Operation.WRITE, Resource.TOPIC, topics.EVIDENCE_AGGREGATES),
        (Operation.WRITE, Resource.TOPIC, "evidence.dlq.v1"),
        (Operation.READ, Resource.GROUP, "evidence"),
    }


def test_no_agency_reads_the_aggregates_unless_granted() -> None:
    everything = [r for s in SERVICES for r in service_rules(s)] + agency_rules("gov-sn")
    readers = {
        r.user
        for r in everything
        if r.name == topics.EVIDENCE_AGGREGATES and r.operation is Operation.READ
    }
    assert readers == set(), "only the grant-evidence command adds a reader"
    assert evidence_reader_rules("gov-sn") == [
        AclRule(
            agency_user("gov-sn"),
            Resource.TOPIC,
            topics.EVIDENCE_AGGREGATES,
            Pattern.LITERAL,
            Operation.READ,
        )
    ]


# ----- members of an agency (decision 24) -----


def test_a_member_is_named_under_its_agency() -> None:
    assert agency_member_user("ngo-jamm", "amina-2") == "agency.ngo-jamm.amina-2"
    assert agency_member_of("ngo-jamm", "agency.ngo-jamm.amina-2") == "amina-2"


@pytest.mark.parametrize(
    "user",
    ["", "Amina", "amina.sow", "-amina", "amina_sow", "a" * 33, "amina sow", "*", "amina\n"],
)
def test_a_user_name_that_could_not_be_one_member_is_refused(user: str) -> None:
    with pytest.raises(InvalidMemberName, match="invalid user name"):
        agency_member_user("ngo-jamm", user)


def test_a_bad_agency_id_is_refused_too() -> None:
    with pytest.raises(InvalidMemberName, match="invalid agency id"):
        agency_member_user("ngo.jamm", "amina")
    with pytest.raises(InvalidMemberName, match="invalid agency id"):
        agency_member_of("ngo.jamm", "agency.ngo.jamm.amina")


def test_a_member_principal_belongs_to_one_agency_only() -> None:
    # Neither the agency id nor the user name has a dot, so "agency.<id>.<user>" splits one way
    # only: no other agency's member, no agency principal, no service or operator.
    member = agency_member_user("ngo", "jamm")
    assert agency_member_of("ngo", member) == "jamm"
    assert agency_member_of("ngo-jamm", member) is None
    assert agency_member_of("ngo", agency_user("ngo")) is None
    assert agency_member_of("ngo", "agency.ngo-jamm.amina") is None, "a prefix is not a member"
    assert agency_member_of("ngo", "agency.ngo.jamm.x") is None
    names = {agency_user("ngo"), agency_user("ngo-jamm"), ADMIN_USER}
    names |= {service_user(s) for s in SERVICES}
    assert member not in names


def test_a_member_has_the_agency_own_rights_under_its_name_and_nothing_more() -> None:
    rules = agency_member_rules("ngo-jamm", "amina")
    member = agency_member_user("ngo-jamm", "amina")
    assert {r.user for r in rules} == {member}
    everything = {(r.resource, r.name, r.pattern, r.operation) for r in agency_rules("ngo-jamm")}
    own_of_agency = {
        (r.resource, r.name, r.pattern, r.operation)
        for r in agency_rules("ngo-jamm")
        if r.user == agency_user("ngo-jamm")
    }
    assert {(r.resource, r.name, r.pattern, r.operation) for r in rules} == own_of_agency
    assert len(everything) > len(own_of_agency), "the services' rules are not the member's"


def test_a_member_uses_the_agency_groups_and_reads_no_aggregates() -> None:
    rules = agency_member_rules("gov-sn", "ops-desk")
    groups = [(r.name, r.pattern) for r in rules if r.resource is Resource.GROUP]
    assert groups == [(agency_group_prefix("gov-sn"), Pattern.PREFIXED)]
    assert topics.EVIDENCE_AGGREGATES not in {r.name for r in rules}


def test_the_registered_principals_get_the_policy_s_rules_again() -> None:
    rules = registered_principal_rules(
        ["admin", "intake", "agency.iom-sn", "agency.iom-sn.amina", "agency.BAD", "agency.x.y.z"]
    )
    assert set(rules) == set(agency_rules("iom-sn")) | set(agency_member_rules("iom-sn", "amina"))
    assert registered_principal_rules(["admin", "referral"]) == []
