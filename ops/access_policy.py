"""Who may do what on Kafka, derived from the topic catalogue (shared/contracts/topics.py).

Pure data: this module says which ACLs exist; :mod:`ops.kafka_access` applies them. The broker
runs the standard KRaft authorizer with ``allow.everyone.if.no.acl.found=false``, so whatever is
not listed here is denied.

- A **service** (principal ``User:<service>``) may write the fixed topics it owns (including its
  dead-letter topic), read the fixed topics it consumes, and use its one consumer group, named
  after it. Per registered agency it may also read that agency's inbound topics it consumes and
  write the agency's topics it owns (notification → the inbox).
- An **agency** (principal ``User:agency.<id>``) may write only its own inbound topics
  (submissions, listings, responses: the topic name is the proof of sender), read only its own
  inbox and its own listings, and use only consumer groups whose name starts with
  ``agency.<id>.``.
- A **member** of an agency (principal ``User:agency.<id>.<user>``: one caseworker or one
  machine, so nobody shares a password; decision 24) has exactly the agency's own rights above,
  under its own name, and nothing else.
- An agency an operator granted the **evidence aggregates** (``refex platform
  grant-evidence``: government agencies, UN agencies, programme managers; decision 22) may
  also read ``evidence.aggregates.v1``, pseudonymous aggregates only, with its own groups.
- Every agency and member may also read the fixed topics the catalogue says every agency
  reads: ``intake.keys.v1``, intake's public submission keys (issue 22).
- The service that trims a family's topics (``trimmed_by``: intake, the submissions) may
  DELETE records on each agency's topic of it: Kafka's DeleteRecords, up to what it applied.
- **Operators** (``User:admin``) are super users: they create topics, credentials and ACLs and
  publish the agency registry. Nothing else holds that power.

READ and WRITE imply DESCRIBE in Kafka, so a principal sees (in metadata) only its own topics.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from shared.contracts.topics import (
    AGENCY_FAMILIES,
    AGENCY_ID_PATTERN,
    AGENCY_LISTINGS,
    AGENCY_MEMBER_NAME_PATTERN,
    CATALOGUE,
    EVIDENCE_AGGREGATES,
    Owner,
)

SERVICES: tuple[Owner, ...] = (Owner.INTAKE, Owner.REFERRAL, Owner.NOTIFICATION, Owner.EVIDENCE)
ADMIN_USER = "admin"


class Resource(StrEnum):
    TOPIC = "topic"
    GROUP = "group"


class Pattern(StrEnum):
    LITERAL = "literal"
    PREFIXED = "prefixed"


class Operation(StrEnum):
    READ = "read"
    WRITE = "write"
    DELETE = "delete"  # DeleteRecords: a partition's records before an offset


@dataclass(frozen=True, slots=True, order=True)
class AclRule:
    """ALLOW ``operation`` on ``resource`` ``name`` (matched as ``pattern``) for ``user``."""

    user: str
    resource: Resource
    name: str
    pattern: Pattern
    operation: Operation

    @property
    def principal(self) -> str:
        return f"User:{self.user}"


def service_user(service: Owner) -> str:
    if service not in SERVICES:
        raise ValueError(f"{service} is not a service")
    return service.value


def agency_user(agency_id: str) -> str:
    return f"agency.{agency_id}"


class InvalidMemberName(ValueError):
    """An agency id or a user name that cannot name a member of an agency."""


def _checked_agency_id(agency_id: str) -> str:
    if not re.fullmatch(AGENCY_ID_PATTERN, agency_id):
        raise InvalidMemberName(f"invalid agency id {agency_id!r}: must match {AGENCY_ID_PATTERN}")
    return agency_id


def agency_member_user(agency_id: str, user: str) -> str:
    """The principal of one member of an agency: ``agency.<agency_id>.<user>``."""
    _checked_agency_id(agency_id)
    if not re.fullmatch(AGENCY_MEMBER_NAME_PATTERN, user):
        raise InvalidMemberName(
            f"invalid user name {user!r}: 1 to 32 lowercase letters, digits or dashes, "
            "starting with a letter or digit"
        )
    return f"{agency_user(agency_id)}.{user}"


def agency_member_of(agency_id: str, principal: str) -> str | None:
    """The user name if ``principal`` is a member of this agency, else None."""
    prefix = re.escape(agency_user(_checked_agency_id(agency_id)))
    match = re.fullmatch(rf"{prefix}\.({AGENCY_MEMBER_NAME_PATTERN})", principal)
    return match.group(1) if match else None


def agency_group_prefix(agency_id: str) -> str:
    """Consumer groups an agency may use: ``agency.<id>.<anything>``."""
    return f"agency.{agency_id}."


def _topic(user: str, name: str, operation: Operation) -> AclRule:
    return AclRule(user, Resource.TOPIC, name, Pattern.LITERAL, operation)


def service_rules(service: Owner) -> list[AclRule]:
    """A service's rights on the fixed topics and its consumer group."""
    user = service_user(service)
    rules = [AclRule(user, Resource.GROUP, service.value, Pattern.LITERAL, Operation.READ)]
    for spec in CATALOGUE:
        if spec.owner is service:
            rules.append(_topic(user, spec.name, Operation.WRITE))
        if service in spec.consumers:
            rules.append(_topic(user, spec.name, Operation.READ))
    return sorted(rules)


def _rules_on_agency_topics(agency_id: str, agency_principal: str) -> list[AclRule]:
    """Every right on one agency's topics and groups, its own granted to ``agency_principal``."""
    group = agency_group_prefix(agency_id)
    rules = [AclRule(agency_principal, Resource.GROUP, group, Pattern.PREFIXED, Operation.READ)]
    for family in AGENCY_FAMILIES:
        spec = family.spec(agency_id)
        writer = agency_principal if spec.owner is Owner.AGENCY else service_user(spec.owner)
        rules.append(_topic(writer, spec.name, Operation.WRITE))
        for consumer in spec.consumers:
            reader = agency_principal if consumer is Owner.AGENCY else service_user(consumer)
            rules.append(_topic(reader, spec.name, Operation.READ))
        if spec.trimmed_by is not None:
            rules.append(_topic(service_user(spec.trimmed_by), spec.name, Operation.DELETE))
    # The fixed topics every agency reads (intake's public submission keys).
    rules += [
        _topic(agency_principal, fixed.name, Operation.READ)
        for fixed in CATALOGUE
        if Owner.AGENCY in fixed.consumers
    ]
    # Its own listings too (compacted: each service as it last published it), so what it
    # listed can be shown back and changed, e.g. its capacity in the console (issue 20).
    rules.append(_topic(agency_principal, AGENCY_LISTINGS.name(agency_id), Operation.READ))
    return sorted(rules)


def agency_rules(agency_id: str) -> list[AclRule]:
    """Everything about one agency: its own rights, and the services' rights on its topics."""
    return _rules_on_agency_topics(agency_id, agency_user(agency_id))


def agency_member_rules(agency_id: str, user: str) -> list[AclRule]:
    """A member's rights: the agency's own, under the member's principal. The services' rules
    on the agency's topics are the agency's (granted at registration), not the member's:
    removing a member must never take anything from a service."""
    member = agency_member_user(agency_id, user)
    return [r for r in _rules_on_agency_topics(agency_id, member) if r.user == member]


def evidence_reader_rules(agency_id: str) -> list[AclRule]:
    """What ``refex platform grant-evidence`` adds for an agency: reading the evidence
    aggregates (its consumer groups are already its own ``agency.<id>.`` prefix). Not part of
    :func:`agency_rules`: no agency reads them unless an operator decided it should."""
    return [_topic(agency_user(agency_id), EVIDENCE_AGGREGATES, Operation.READ)]


def registered_principal_rules(principals: Iterable[str]) -> list[AclRule]:
    """The rules every registered agency and member principal among ``principals`` (the
    broker's SCRAM users) holds by this policy, services' rules on the agencies' topics
    included: what ``grant-services`` grants again at each deployment, so that a right the
    policy gained (intake's DELETE on the submissions, every agency's READ on
    ``intake.keys.v1``) reaches the agencies registered before it. Other users are left out."""
    rules: set[AclRule] = set()
    for principal in principals:
        parts = principal.split(".")
        if len(parts) < 2 or parts[0] != "agency":
            continue
        agency_id = parts[1]
        if not re.fullmatch(AGENCY_ID_PATTERN, agency_id):
            continue
        if len(parts) == 2:
            rules.update(agency_rules(agency_id))
        elif len(parts) == 3 and re.fullmatch(AGENCY_MEMBER_NAME_PATTERN, parts[2]):
            rules.update(agency_member_rules(agency_id, parts[2]))
    return sorted(rules)
