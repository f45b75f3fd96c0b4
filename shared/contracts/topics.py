"""The topic catalogue: the one place that says which topics exist, who writes them and how.

Topic creation (``refex platform create-topics``), the compose init and (later) ACL provisioning are
all driven from :data:`CATALOGUE`; no subscriber ever creates a topic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Owner(StrEnum):
    """Who is allowed to write a topic (single writer per topic)."""

    INTAKE = "intake"
    REFERRAL = "referral"
    NOTIFICATION = "notification"
    AGENCIES = "agencies"  # partner agencies write the inbound topics
    OPERATORS = "operators"  # operator tooling writes the agency registry


class CleanupPolicy(StrEnum):
    DELETE = "delete"
    COMPACT = "compact"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    owner: Owner
    key: str
    partitions: int
    cleanup_policy: CleanupPolicy = CleanupPolicy.DELETE
    description: str = ""
    consumers: tuple[Owner, ...] = ()

    def config(self) -> dict[str, str]:
        """Broker-side topic configuration."""
        cfg = {"cleanup.policy": self.cleanup_policy.value}
        if self.cleanup_policy is CleanupPolicy.COMPACT:
            # Keep tombstones a day so a rebuilding consumer still sees a withdrawal.
            cfg["delete.retention.ms"] = str(24 * 3600 * 1000)
        return cfg


INTAKE_SUBMISSIONS = "intake.submissions.v1"
INTAKE_CASES = "intake.cases.v1"
INTAKE_REJECTIONS = "intake.rejections.v1"
INTAKE_DISCLOSURES = "intake.disclosures.v1"
DIRECTORY_SERVICES = "directory.services.v1"
DIRECTORY_AGENCIES = "directory.agencies.v1"
REFERRAL_RESPONSES = "referral.responses.v1"
REFERRAL_EVENTS = "referral.events.v1"
NOTIFICATION_DELIVERIES = "notification.deliveries.v1"

_I, _R, _N = Owner.INTAKE, Owner.REFERRAL, Owner.NOTIFICATION

CATALOGUE: tuple[TopicSpec, ...] = (
    TopicSpec(
        INTAKE_SUBMISSIONS,
        Owner.AGENCIES,
        "agency_id:agency_case_ref",
        6,
        description="Case submissions, updates, consent withdrawals from agencies.",
        consumers=(_I,),
    ),
    TopicSpec(
        INTAKE_CASES, _I, "case_id", 6, description="Pseudonymous case events.", consumers=(_R,)
    ),
    TopicSpec(
        INTAKE_REJECTIONS,
        _I,
        "agency_id",
        3,
        description="Submissions intake refused, with each bad field.",
        consumers=(_N,),
    ),
    TopicSpec(
        INTAKE_DISCLOSURES,
        _I,
        "case_id",
        3,
        description="Personal data sealed for one recipient agency.",
        consumers=(_N,),
    ),
    TopicSpec(
        DIRECTORY_SERVICES,
        Owner.AGENCIES,
        "service_id",
        3,
        CleanupPolicy.COMPACT,
        description="Service listings; a tombstone withdraws a listing.",
        consumers=(_R,),
    ),
    TopicSpec(
        DIRECTORY_AGENCIES,
        Owner.OPERATORS,
        "agency_id",
        1,
        CleanupPolicy.COMPACT,
        description="Agency registry.",
        consumers=(_I, _R, _N),
    ),
    TopicSpec(
        REFERRAL_RESPONSES,
        Owner.AGENCIES,
        "case_id",
        6,
        description="Provider answers to referrals.",
        consumers=(_R,),
    ),
    TopicSpec(
        REFERRAL_EVENTS,
        _R,
        "case_id",
        6,
        description="Every referral lifecycle transition.",
        consumers=(_I, _N),
    ),
    TopicSpec(
        NOTIFICATION_DELIVERIES, _N, "agency_id", 3, description="Outcome of each delivery attempt."
    ),
    # Dead letters: <consumer-group>.dlq.v1, written by the consuming service.
    TopicSpec("intake.dlq.v1", _I, "original key", 1, description="Dead letters of intake."),
    TopicSpec("referral.dlq.v1", _R, "original key", 1, description="Dead letters of referral."),
    TopicSpec(
        "notification.dlq.v1", _N, "original key", 1, description="Dead letters of notification."
    ),
)

_BY_NAME = {t.name: t for t in CATALOGUE}

AGENCY_ID_PATTERN = r"[a-z0-9][a-z0-9-]{1,62}"
_AGENCY_INBOX = re.compile(rf"agency\.({AGENCY_ID_PATTERN})\.inbox\.v1")
AGENCY_INBOX_PARTITIONS = 3


def spec(name: str) -> TopicSpec:
    """The catalogue entry of a fixed topic or of an agency inbox."""
    if name in _BY_NAME:
        return _BY_NAME[name]
    match = _AGENCY_INBOX.fullmatch(name)
    if match is None:
        raise KeyError(f"{name!r} is not in the topic catalogue")
    return TopicSpec(
        name,
        _N,
        "referral_id",
        AGENCY_INBOX_PARTITIONS,
        description=f"Inbox of agency {match.group(1)}.",
    )


def agency_inbox(agency_id: str) -> str:
    """Name of an agency's own inbox topic; refuses ids that would make an odd topic name."""
    name = f"agency.{agency_id}.inbox.v1"
    if not _AGENCY_INBOX.fullmatch(name):
        raise ValueError(f"invalid agency id {agency_id!r}: must match {AGENCY_ID_PATTERN}")
    return name


def dead_letter_topic(consumer_group: str) -> str:
    return f"{consumer_group}.dlq.v1"


def consumed_by(owner: Owner) -> tuple[str, ...]:
    return tuple(t.name for t in CATALOGUE if owner in t.consumers)
