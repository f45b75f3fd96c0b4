"""How long inbox claims are kept: computed from the topic catalogue, never shorter than a
redelivery can come (decision 29)."""

import re
from dataclasses import replace
from datetime import timedelta

import pytest
from pydantic import ValidationError

from services.evidence.settings import EvidenceSettings
from services.referral.settings import ReferralSettings
from shared.contracts import topics
from shared.contracts.topics import Owner
from shared.retention import (
    SEGMENT_ROLL,
    claims_kept_forever,
    consumed_topics,
    inbox_floor,
    inbox_keep,
)

CONSUMERS = (Owner.INTAKE, Owner.REFERRAL, Owner.NOTIFICATION, Owner.EVIDENCE)


@pytest.mark.parametrize("service", CONSUMERS)
def test_floor_is_longest_consumed_retention_plus_dead_letters_plus_two_rolls(
    service: Owner,
) -> None:
    # Today every consumed topic of finite retention keeps 30 days, and so do the dead letters.
    assert inbox_floor(service).window == timedelta(days=30 + 30) + 2 * SEGMENT_ROLL
    assert inbox_keep(service, None) == timedelta(days=74)


def test_floor_follows_the_catalogue(monkeypatch: pytest.MonkeyPatch) -> None:
    """A consumed topic retained longer raises the floor: it is read, not typed in."""
    longer = tuple(
        replace(t, retention_days=90) if t.name == topics.REFERRAL_EVENTS else t
        for t in topics.CATALOGUE
    )
    monkeypatch.setattr("shared.retention.CATALOGUE", longer)
    floor = inbox_floor(Owner.EVIDENCE)
    assert floor.longest_topic == topics.REFERRAL_EVENTS
    assert floor.window == timedelta(days=90 + 30 + 14)
    assert "90 d retention of referral.events.v1" in floor.explain()


def test_registries_kept_forever_are_not_the_floor_and_their_claims_are_never_pruned() -> None:
    consumed = {t.name for t in consumed_topics(Owner.REFERRAL)}
    assert topics.DIRECTORY_AGENCIES in consumed  # compacted, retention forever
    patterns = claims_kept_forever(Owner.REFERRAL)

    def kept(topic: str) -> bool:
        return any(re.match(p, topic) for p in patterns)

    assert kept("directory.agencies.v1")
    assert kept("agency.ngo-jamm.listings.v1")
    assert not kept("agency.ngo-jamm.responses.v1")
    assert not kept("intake.cases.v1")
    assert not kept("xdirectory.agencies.v1x")  # anchored
    assert claims_kept_forever(Owner.EVIDENCE) == ()  # consumes no registry


def test_a_longer_window_is_taken_a_shorter_one_refused_with_the_reason() -> None:
    assert inbox_keep(Owner.INTAKE, 100) == timedelta(days=100)
    assert inbox_keep(Owner.INTAKE, 74) == timedelta(days=74)
    with pytest.raises(ValueError) as info:
        inbox_keep(Owner.INTAKE, 73.5)
    message = str(info.value)
    assert "INTAKE_INBOX_KEEP_DAYS=73.5" in message
    assert "74 days" in message and "intake.dlq.v1" in message


def test_settings_refuse_an_inbox_window_below_the_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFERRAL_DATABASE_URL", "postgresql://r:p@h:1/d")
    monkeypatch.setenv("REFERRAL_INBOX_KEEP_DAYS", "7")
    with pytest.raises(ValidationError, match="REFERRAL_INBOX_KEEP_DAYS=7 is shorter"):
        ReferralSettings()  # type: ignore[call-arg]
    monkeypatch.setenv("REFERRAL_INBOX_KEEP_DAYS", "120")
    assert ReferralSettings().inbox_keep_days == 120  # type: ignore[call-arg]


def test_evidence_settings_are_checked_against_evidence_s_floor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVIDENCE_DATABASE_URL", "postgresql://e:p@h:1/d")
    monkeypatch.setenv("EVIDENCE_DASHBOARD_SESSION_KEY", "x" * 44)
    monkeypatch.setenv("EVIDENCE_INBOX_KEEP_DAYS", "30")
    with pytest.raises(ValidationError, match=r"evidence\.dlq\.v1"):
        EvidenceSettings()  # type: ignore[call-arg]


def test_outbox_retention_defaults_to_a_week_and_may_be_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REFERRAL_DATABASE_URL", "postgresql://r:p@h:1/d")
    assert ReferralSettings().outbox_keep_sent_days == 7  # type: ignore[call-arg]
    monkeypatch.setenv("REFERRAL_OUTBOX_KEEP_SENT_DAYS", "0")
    assert ReferralSettings().outbox_keep_sent_days == 0  # type: ignore[call-arg]
    monkeypatch.setenv("REFERRAL_OUTBOX_KEEP_SENT_DAYS", "-1")
    with pytest.raises(ValidationError):
        ReferralSettings()  # type: ignore[call-arg]
