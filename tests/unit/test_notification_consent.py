"""Notification's fan-out of consent follow-through (decision 20): who hears a recipient's
erasure confirmation and a likely duplicate, under which inbox key (pure: fanout.notices)."""

from __future__ import annotations

from datetime import UTC, datetime

from services.notification.fanout import notices
from shared.contracts import events as ev

NOW = datetime(2026, 11, 20, 16, tzinfo=UTC)


def test_an_erasure_confirmation_reaches_the_owner_and_answers_the_recipient() -> None:
    erased = ev.DisclosureErased(
        disclosure_id="d1",
        referral_id="r1",
        case_id="c1",
        recipient_agency_id="ngo-jamm",
        owner_agency_id="iom-sn",
        erased_at=NOW,
        submission_id="ce-1",
    )
    got = [(n.agency_id, n.inbox_type, n.subject) for n in notices(ev.DISCLOSURE_ERASED, erased)]
    assert got == [
        ("iom-sn", ev.INBOX_DISCLOSURE_ERASED, "r1"),
        ("ngo-jamm", ev.INBOX_ERASURE_CONFIRMATION_RECORDED, "ce-1"),
    ]


def test_a_likely_duplicate_is_told_to_its_owner_about_its_own_case() -> None:
    found = ev.PossibleDuplicateFound(
        case_id="c1",
        owner_agency_id="iom-sn",
        duplicate_case_id="c2",
        duplicate_owner_agency_id="caritas-sn",
        found_at=NOW,
    )
    [notice] = notices(ev.POSSIBLE_DUPLICATE_FOUND, found)
    assert (notice.agency_id, notice.inbox_type, notice.subject) == (
        "iom-sn",
        ev.INBOX_POSSIBLE_DUPLICATE,
        "c1",
    )
    assert notice.data == ev.InboxPossibleDuplicate(
        case_id="c1", duplicate_case_id="c2", duplicate_owner_agency_id="caritas-sn", found_at=NOW
    )
