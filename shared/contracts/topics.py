"""The topic catalogue: the one place that says which topics exist, who writes them, how they are
keyed, partitioned and retained, and which payloads they carry.

Two kinds of entries:
- fixed topics (:data:`CATALOGUE`), each written by one service or by operator tooling;
- per-agency topic families (:data:`AGENCY_FAMILIES`): ``agency.<agency_id>.<stream>.v1``.
  An agency writes only its own inbound topics (submissions, listings, responses) and reads only
  its own inbox. The agency id in the topic name is the **proof of sender**: with Kafka ACLs on
  the ``agency.<id>.`` names, only that agency's credentials can write there, so a message
  claiming another agency is rejected (docs/decisions/0007-proof-of-sender.md).

Topic creation (``refex platform create-topics`` / ``register-agency``), the compose init, the
consumers' subscriptions, the docs and the Kafka ACLs (ops/access_policy.py) are all driven from
here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum

AGENCY_ID_PATTERN = r"[a-z0-9][a-z0-9-]{1,62}"
# One person's (or machine's) name under an agency: its Kafka principal is
# ``agency.<agency_id>.<name>``. No dot, as in agency ids, so the principal splits one way only
# and never equals an agency's ``agency.<id>`` (decision 24).
AGENCY_MEMBER_NAME_PATTERN = r"[a-z0-9][a-z0-9-]{0,31}"
_DAY_MS = 24 * 3600 * 1000


class Owner(StrEnum):
    """Who writes a topic (single writer per topic)."""

    INTAKE = "intake"
    REFERRAL = "referral"
    NOTIFICATION = "notification"
    EVIDENCE = "evidence"  # issue 19: the read model of outcomes and pathways
    AGENCY = "agency"  # the agency named in the topic, and nobody else
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
    retention_days: int | None = 30  # None: keep forever (compacted registries)
    # The one size limit of the topic: the broker's max.message.bytes and the consuming
    # service's check (key, value and headers, before any parsing) are both this number.
    max_message_bytes: int = 1024 * 1024
    payloads: tuple[str, ...] = ()  # CloudEvents types carried (see events.PAYLOADS)
    description: str = ""
    consumers: tuple[Owner, ...] = ()
    # The consumer that deletes each partition's records up to what it has applied and
    # committed (Kafka's DeleteRecords), so they do not wait for the retention: the agencies'
    # submissions, which carry personal data (issue 22, decision 32). It needs DELETE on them.
    trimmed_by: Owner | None = None
    # The broker rolls a partition's segment file (at its next record) once it is this old, and
    # deletes a rolled segment that lies wholly below the log start: how long the bytes of
    # trimmed records stay on its disk (None: the broker's default, 7 days).
    segment_ms: int | None = None

    def config(self) -> dict[str, str]:
        """Broker-side topic configuration."""
        cfg = {
            "cleanup.policy": self.cleanup_policy.value,
            # The broker refuses a larger record batch (compressed, framing included) with
            # MESSAGE_TOO_LARGE to the producer; a compressed one it let through is refused by
            # the consumer's check of the same number, on the sender's inbox.
            "max.message.bytes": str(self.max_message_bytes),
        }
        cfg["retention.ms"] = (
            "-1" if self.retention_days is None else str(self.retention_days * _DAY_MS)
        )
        if self.segment_ms is not None:
            cfg["segment.ms"] = str(self.segment_ms)
        if self.cleanup_policy is CleanupPolicy.COMPACT:
            # Keep tombstones a day so a rebuilding consumer still sees a withdrawal.
            cfg["delete.retention.ms"] = str(_DAY_MS)
        return cfg


@dataclass(frozen=True, slots=True)
class TopicFamily:
    """One topic per agency: ``agency.<agency_id>.<stream>.v<major>``."""

    stream: str
    major: int
    template: TopicSpec  # its name is the family's display name

    def name(self, agency_id: str) -> str:
        name = f"agency.{agency_id}.{self.stream}.v{self.major}"
        if not re.fullmatch(AGENCY_ID_PATTERN, agency_id):
            raise ValueError(f"invalid agency id {agency_id!r}: must match {AGENCY_ID_PATTERN}")
        return name

    def spec(self, agency_id: str) -> TopicSpec:
        return replace(self.template, name=self.name(agency_id))

    @property
    def regex(self) -> str:
        return rf"agency\.{AGENCY_ID_PATTERN}\.{re.escape(self.stream)}\.v{self.major}"

    def agency_of(self, topic: str) -> str | None:
        """The agency a topic of this family belongs to, or None if it is not of this family."""
        match = re.fullmatch(
            rf"agency\.({AGENCY_ID_PATTERN})\.{re.escape(self.stream)}"
            rf"\.v{self.major}",
            topic,
        )
        return match.group(1) if match else None


# ----- payload type names (kept here as strings so this module has no model imports) -----
_T = "org.referralexchange."

# ----- fixed topics -----
OPERATORS_AUDIT = "operators.audit.v1"
INTAKE_CASES = "intake.cases.v1"
INTAKE_REJECTIONS = "intake.rejections.v1"
INTAKE_DISCLOSURES = "intake.disclosures.v1"
INTAKE_KEYS = "intake.keys.v1"
DIRECTORY_AGENCIES = "directory.agencies.v1"
REFERRAL_EVENTS = "referral.events.v1"
NOTIFICATION_DELIVERIES = "notification.deliveries.v1"
EVIDENCE_AGGREGATES = "evidence.aggregates.v1"

_I, _R, _N, _E = Owner.INTAKE, Owner.REFERRAL, Owner.NOTIFICATION, Owner.EVIDENCE

CATALOGUE: tuple[TopicSpec, ...] = (
    TopicSpec(
        INTAKE_CASES,
        _I,
        "case_id",
        6,
        consumers=(_R, _N, _E),
        payloads=tuple(
            f"{_T}intake.{e}.v1"
            for e in (
                "case-registered",
                "case-updated",
                "consent-changed",
                "case-closed",
                "case-erased",
                "submission-accepted",
                "assistance-ended",
                "case-handed-over",
                "handover-failed",
                "community-need-registered",
                "possible-duplicate-found",
                "assessment-recorded",
                "follow-up-reminder",
                "follow-up-due",
                "follow-up-missed",
            )
        ),
        description="Pseudonymous case events: never names, contacts or documents; the "
        "answer to each submission intake applied; ends of assistance and changes of owner.",
    ),
    TopicSpec(
        INTAKE_REJECTIONS,
        _I,
        "agency_id",
        3,
        consumers=(_N,),
        payloads=(f"{_T}intake.submission-rejected.v1",),
        description="Inbound messages intake refused, with a machine-readable error per field.",
    ),
    TopicSpec(
        INTAKE_DISCLOSURES,
        _I,
        "case_id",
        3,
        consumers=(_N,),
        payloads=(
            f"{_T}intake.disclosure-sealed.v1",
            f"{_T}intake.disclosure-refused.v1",
            f"{_T}intake.case-data-sealed.v1",
            f"{_T}intake.disclosure-erased.v1",
        ),
        description="Minimum personal data sealed for one recipient agency's public key, or "
        "why none was sent; a handed-over case's personal data sealed for its new owner.",
    ),
    TopicSpec(
        INTAKE_KEYS,
        _I,
        "key_sha256",
        1,
        CleanupPolicy.COMPACT,
        None,
        # Every agency reads it with its own principal (ops/access_policy.py): the keys are
        # public, and an agency needs the current one to seal a submission's personal block.
        consumers=(Owner.AGENCY,),
        payloads=(f"{_T}intake.submission-key-published.v1",),
        description="Intake's X25519 submission keys (compacted, one record per key): the "
        "current one, for which an agency seals a submission's personal block, the previous "
        "ones still opened during a rotation, and the retired ones (issue 22).",
    ),
    TopicSpec(
        DIRECTORY_AGENCIES,
        Owner.OPERATORS,
        "agency_id",
        1,
        CleanupPolicy.COMPACT,
        None,
        consumers=(_I, _R, _N),
        payloads=(f"{_T}directory.agency-registered.v1",),
        description="Agency registry; a tombstone deregisters an agency.",
    ),
    TopicSpec(
        REFERRAL_EVENTS,
        _R,
        "case_id",
        6,
        consumers=(_I, _N, _E),
        payloads=tuple(
            f"{_T}referral.{e}.v1"
            for e in (
                "referral-requested",
                "referral-transitioned",
                "need-unmatched",
                "response-refused",
                "reminder-due",
                "response-applied",
                "listing-published",
                "listing-withdrawn",
                "listing-rejected",
                "handover-proposed",
                "handover-accepted",
                "handover-ended",
                "handover-refused",
                "support-continues",
                "continuity-proposed",
                "structural-gap-reported",
                "structural-commitment-applied",
                "structural-commitment-refused",
                "alternatives-listed",
                "instruction-applied",
                "instruction-refused",
            )
        ),
        description="Every referral lifecycle transition; the answer to each response and each "
        "listing message an agency sent (keyed by case_id; listing answers by the provider's "
        "agency_id; a refused handover message about no known case by its sender); each "
        "handover's lifecycle; providers told their referral continues; next owners proposed; "
        "structural-gap reports to government agencies and the answers to their commitments "
        "(keyed by report_id; a refused commitment about no known report by its sender).",
    ),
    TopicSpec(
        NOTIFICATION_DELIVERIES,
        _N,
        "agency_id",
        3,
        payloads=(f"{_T}notification.delivery-attempted.v1",),
        description="Outcome of each delivery attempt to an agency channel.",
    ),
    TopicSpec(
        OPERATORS_AUDIT,
        Owner.OPERATORS,
        "target_id",
        1,  # one partition: one total order of what operators did
        retention_days=5 * 365,
        payloads=(f"{_T}operators.command-audited.v1",),
        description="Audit log of operator commands (who changed which agency, channel or key, "
        "when, with what outcome); operators only.",
    ),
    TopicSpec(
        EVIDENCE_AGGREGATES,
        _E,
        "table",
        1,
        retention_days=365,
        payloads=(f"{_T}evidence.aggregates-published.v1",),
        description="Pseudonymous aggregates of the evidence read model, one table and period "
        "per event, cells of fewer than k cases suppressed; published when the figures change. "
        "No case id, no person: readers granted by an operator (docs/integrators.md §14).",
    ),
    # Dead letters: <consumer-group>.dlq.v1, written by the consuming service.
    TopicSpec("intake.dlq.v1", _I, "original key", 1, description="Dead letters of intake."),
    TopicSpec("referral.dlq.v1", _R, "original key", 1, description="Dead letters of referral."),
    TopicSpec(
        "notification.dlq.v1", _N, "original key", 1, description="Dead letters of notification."
    ),
    TopicSpec("evidence.dlq.v1", _E, "original key", 1, description="Dead letters of evidence."),
)

# ----- per-agency families -----
AGENCY_SUBMISSIONS = TopicFamily(
    "submissions",
    1,
    TopicSpec(
        "agency.<agency_id>.submissions.v1",
        Owner.AGENCY,
        "agency_case_ref",
        3,
        consumers=(_I,),
        trimmed_by=_I,
        # An hour: a trimmed record's bytes leave the disk about an hour after it, not a week
        # (a partition that receives nothing more keeps its last segment to the retention).
        segment_ms=3600 * 1000,
        max_message_bytes=256 * 1024,
        payloads=tuple(
            f"{_T}intake.{e}.v1"
            for e in (
                "case-submitted",
                "case-update-submitted",
                "consent-withdrawn",
                "erasure-requested",
                "case-closure-submitted",
                "assistance-end-submitted",
                "community-need-submitted",
                "erasure-confirmation-submitted",
                "assessment-submitted",
            )
        ),
        description="The agency's case submissions, updates, consent withdrawals, erasure "
        "requests, ends of its assistance and closures; its confirmations that it erased what "
        "a referral disclosed to it (keyed by referral_id).",
    ),
)
AGENCY_LISTINGS = TopicFamily(
    "listings",
    1,
    TopicSpec(
        "agency.<agency_id>.listings.v1",
        Owner.AGENCY,
        "service_id",
        1,
        CleanupPolicy.COMPACT,
        None,
        consumers=(_R,),
        max_message_bytes=64 * 1024,
        payloads=(f"{_T}directory.service-listed.v1",),
        description="The agency's service listings; a tombstone withdraws a listing.",
    ),
)
AGENCY_RESPONSES = TopicFamily(
    "responses",
    1,
    TopicSpec(
        "agency.<agency_id>.responses.v1",
        Owner.AGENCY,
        "case_id",
        1,
        consumers=(_R,),
        max_message_bytes=16 * 1024,
        payloads=(
            f"{_T}referral.response-submitted.v1",
            f"{_T}referral.handover-proposal-submitted.v1",
            f"{_T}referral.handover-request-submitted.v1",
            f"{_T}referral.handover-answer-submitted.v1",
            f"{_T}referral.structural-commitment-submitted.v1",
            f"{_T}referral.referrer-instruction-submitted.v1",
        ),
        description="The agency's answers to referrals it received; its case handovers: "
        "proposals of cases it owns, requests for cases, answers to handovers waiting on it; "
        "its instructions on the routing of its cases' needs; a government agency's "
        "commitments on structural gaps (keyed by report_id).",
    ),
)
AGENCY_INBOX = TopicFamily(
    "inbox",
    1,
    TopicSpec(
        "agency.<agency_id>.inbox.v1",
        _N,
        # What the event is about, as its ce_subject: a referral, need, case, service or the
        # message answered (per type: docs/integrators.md §7).
        "ce_subject",
        3,
        consumers=(Owner.AGENCY,),  # the agency named in the topic, and nobody else
        payloads=tuple(
            f"{_T}notification.{e}.v1"
            for e in (
                "referral-received",
                "referral-status-changed",
                "need-unmatched",
                "submission-rejected",
                "disclosure-received",
                "referral-cancelled",
                "erasure-confirmed",
                "response-refused",
                "referral-reminder",
                "referral-rerouted",
                "submission-accepted",
                "listing-published",
                "listing-withdrawn",
                "listing-rejected",
                "response-applied",
                "handover-proposed",
                "handover-ended",
                "handover-refused",
                "case-handed-over",
                "handover-failed",
                "case-data-received",
                "support-continues",
                "continuity-proposed",
                "structural-gap-reported",
                "structural-commitment-applied",
                "structural-commitment-refused",
                "alternatives-listed",
                "instruction-applied",
                "instruction-refused",
                "possible-duplicate",
                "disclosure-erased",
                "erasure-confirmation-recorded",
                "follow-up-reminder",
                "follow-up-due",
                "follow-up-missed",
                "assessment-recorded",
            )
        ),
        description="What concerns the agency; only it may read.",
    ),
)

AGENCY_FAMILIES: tuple[TopicFamily, ...] = (
    AGENCY_SUBMISSIONS,
    AGENCY_LISTINGS,
    AGENCY_RESPONSES,
    AGENCY_INBOX,
)

_BY_NAME = {t.name: t for t in CATALOGUE}


def spec(name: str) -> TopicSpec:
    """The catalogue entry of a fixed topic or of one agency's topic."""
    if name in _BY_NAME:
        return _BY_NAME[name]
    for family in AGENCY_FAMILIES:
        agency = family.agency_of(name)
        if agency is not None:
            return family.spec(agency)
    raise KeyError(f"{name!r} is not in the topic catalogue")


def family_of(name: str) -> TopicFamily | None:
    return next((f for f in AGENCY_FAMILIES if f.agency_of(name) is not None), None)


def agency_topics(agency_id: str) -> list[TopicSpec]:
    """Every topic an agency has: its inbound topics and its inbox."""
    return [family.spec(agency_id) for family in AGENCY_FAMILIES]


def agency_inbox(agency_id: str) -> str:
    return AGENCY_INBOX.name(agency_id)


def dead_letter_topic(consumer_group: str) -> str:
    return f"{consumer_group}.dlq.v1"


def consumed_by(owner: Owner) -> tuple[str, ...]:
    """Names (fixed topics) and family display names that a service consumes."""
    fixed = [t.name for t in CATALOGUE if owner in t.consumers]
    families = [f.template.name for f in AGENCY_FAMILIES if owner in f.template.consumers]
    return (*fixed, *families)
