"""Selecting dead letters to replay and restoring their original records (no broker)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from ops import dead_letter_replay as dlq
from shared.contracts import topics
from shared.kafka.consumer import UNREADABLE
from shared.kafka.dead_letters import DeadLetterPublisher
from shared.kafka.inbound import InboundEvent, PermanentError
from tests import factories as f

HEADERS = [("ce_id", b"e-1"), ("ce_type", b"t"), ("x-odd", b"\xff\x00")]
PUBLISHER = DeadLetterPublisher("unused:9092", "referral")


def _letter(
    dlq_offset: int,
    *,
    topic: str = topics.INTAKE_CASES,
    original_offset: int = 0,
    value: bytes | None = b'{"a": 1}',
    headers: list[tuple[str, bytes]] | None = None,
    key: bytes | None = b"k",
    error: Exception | None = None,
) -> dlq.DeadLetter:
    """A dead letter exactly as the consumer writes it."""
    record = f.record(
        topic, value, HEADERS if headers is None else headers, key=key, offset=original_offset
    )
    k, v, h = PUBLISHER.letter(InboundEvent.from_record(record), error or PermanentError("bad"))
    return dlq.DeadLetter(dlq_offset, k, v, tuple(h))


def _failed_at(letter: dlq.DeadLetter, at: datetime) -> dlq.DeadLetter:
    headers = [(k, v) for k, v in letter.headers if k != "dlq_failed_at"]
    return replace(letter, headers=(*headers, ("dlq_failed_at", at.isoformat().encode())))


def test_stripping_gives_back_the_original_headers_byte_for_byte() -> None:
    letter = _letter(0)
    assert any(k.startswith("dlq_") for k, _ in letter.headers)
    assert dlq.original_headers(letter.headers) == HEADERS
    assert (letter.key, letter.value) == (b"k", b'{"a": 1}')


def test_every_dlq_header_is_stripped_wherever_it_is() -> None:
    headers = [("dlq_error", b"old"), ("ce_id", b"e"), ("dlq_omitted", b"x"), ("b", b"")]
    assert dlq.original_headers(headers) == [("ce_id", b"e"), ("b", b"")]


def test_a_dead_letter_tells_where_it_came_from() -> None:
    letter = _letter(7, topic=topics.REFERRAL_EVENTS, original_offset=42)
    assert letter.original_topic == topics.REFERRAL_EVENTS
    assert (letter.original_partition, letter.original_offset) == (0, 42)
    assert letter.error_type == "PermanentError" and letter.error == "PermanentError: bad"
    assert letter.failed_at is not None and letter.failed_at.tzinfo is not None
    assert letter.event_id == "e-1" and letter.omitted is None


def test_selection_restores_the_original_order_per_partition() -> None:
    late = _letter(0, original_offset=9)
    early = _letter(1, original_offset=3)
    other = _letter(2, topic=topics.REFERRAL_EVENTS, original_offset=1)
    chosen = dlq.select([late, early, other]).replay
    assert [(d.original_topic, d.original_offset) for d in chosen] == [
        (topics.INTAKE_CASES, 3),
        (topics.INTAKE_CASES, 9),
        (topics.REFERRAL_EVENTS, 1),
    ]


def test_filters_by_original_topic_and_time() -> None:
    now = datetime.now(UTC)
    old = _failed_at(_letter(0, original_offset=1), now - timedelta(days=2))
    new = _failed_at(_letter(1, original_offset=2), now)
    elsewhere = _failed_at(_letter(2, topic=topics.REFERRAL_EVENTS), now)
    by_topic = dlq.select([old, new, elsewhere], original_topic=topics.INTAKE_CASES)
    assert by_topic.replay == [old, new] and by_topic.not_selected == 1
    by_time = dlq.select([old, new, elsewhere], since=now - timedelta(hours=1))
    assert by_time.replay == [new, elsewhere] and by_time.not_selected == 1
    at_the_second = dlq.select([new], since=new.failed_at)
    assert at_the_second.replay == [new], "since is inclusive"


def test_a_dead_letter_without_a_readable_time_is_not_selected_by_since() -> None:
    letter = replace(_letter(0), headers=(("dlq_original_topic", b"t"),))
    assert dlq.select([letter], since=datetime(2020, 1, 1, tzinfo=UTC)).not_selected == 1


def test_a_record_dead_lettered_twice_is_replayed_once() -> None:
    first, again = _letter(0, original_offset=5), _letter(3, original_offset=5)
    selection = dlq.select([first, again])
    assert selection.replay == [first]
    assert [(s.letter, s.reason) for s in selection.skipped] == [
        (again, "same record as the dead letter at offset 0")
    ]


def test_a_record_that_is_no_dead_letter_is_skipped() -> None:
    stray = dlq.DeadLetter(4, b"k", b"{}", (("ce_id", b"x"),))
    selection = dlq.select([stray])
    assert selection.replay == [] and "not a dead letter" in selection.skipped[0].reason


def test_dead_letters_missing_their_original_are_refused() -> None:
    limit = PUBLISHER.max_letter_bytes
    too_large = _letter(0, value=b"x" * limit)  # the value is left out of the dead letter
    assert too_large.omitted is not None and too_large.omitted.startswith("original value (")
    unreadable = _letter(
        1,
        original_offset=2,
        value=b"",
        headers=[],
        key=None,
        error=PermanentError(f"record unreadable: {UNREADABLE}"),
    )
    assert unreadable.omitted is not None
    fine = _letter(2, original_offset=1)
    selection = dlq.select([too_large, unreadable, fine])
    assert selection.refused == [too_large, unreadable]
    assert selection.replay == [fine]


def test_targets_that_no_longer_exist_are_skipped() -> None:
    kept = _letter(0)
    gone = _letter(1, topic="agency.gone.submissions.v1")
    far = dlq.DeadLetter(
        2,
        b"k",
        b"{}",
        (
            ("dlq_original_topic", topics.INTAKE_CASES.encode()),
            ("dlq_original_partition", b"7"),
            ("dlq_original_offset", b"0"),
        ),
    )
    selection = dlq.with_existing_targets(dlq.select([kept, gone, far]), {topics.INTAKE_CASES: 6})
    assert selection.replay == [kept]
    assert [s.reason for s in selection.skipped] == [
        "original topic agency.gone.submissions.v1 no longer exists",
        f"{topics.INTAKE_CASES} has no partition 7",
    ]


def test_times_without_a_zone_are_utc_and_garbage_is_none() -> None:
    assert dlq.parse_time("2026-03-01T10:00:00") == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert dlq.parse_time("2026-03-01T10:00:00+02:00") == datetime(2026, 3, 1, 8, tzinfo=UTC)
    assert dlq.parse_time("yesterday") is None and dlq.parse_time(None) is None


def test_tables_show_positions_and_errors_never_keys_values_or_headers() -> None:
    from rich.console import Console

    letter = _letter(0, value=b'{"name": "Aissatou"}', key=b"secret-key")
    out = Console(record=True, width=200)
    out.print(dlq.replay_table([letter], "t"))
    out.print(*dlq.refused_lines([letter]))
    text = out.export_text()
    assert "PermanentError" in text and topics.INTAKE_CASES in text
    assert "Aissatou" not in text and "secret-key" not in text and "ce_type" not in text
