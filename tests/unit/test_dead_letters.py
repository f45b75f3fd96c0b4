"""Dead letters fit their topic: a record as large as its own topic allows still gets one."""

from shared.contracts import topics
from shared.kafka.dead_letters import DeadLetterPublisher
from shared.kafka.inbound import InboundEvent, PermanentError, record_size
from tests import factories as f

HEADERS = [("ce_id", b"e-1"), ("x-odd", b"\xff")]


def _largest_record(topic: str, headers: list[tuple[str, bytes]]) -> InboundEvent:
    """A record as large as the broker takes on ``topic`` (batch overhead aside)."""
    room = int(topics.spec(topic).config()["max.message.bytes"]) - 100
    value = b"x" * (room - record_size(b"k", b"", tuple(headers)))
    return InboundEvent.from_record(f.record(topic, value, headers))


def test_an_ordinary_dead_letter_keeps_key_value_and_headers() -> None:
    publisher = DeadLetterPublisher("unused:9092", "notification")
    event = InboundEvent.from_record(f.record(topics.INTAKE_CASES, b"{}", HEADERS))
    key, value, headers = publisher.letter(event, PermanentError("bad"))
    assert (key, value, headers[:2]) == (b"k", b"{}", HEADERS)
    assert "dlq_omitted" not in dict(headers)
    assert dict(headers)["dlq_original_topic"] == topics.INTAKE_CASES.encode()


def test_a_record_as_large_as_its_topic_allows_still_fits_the_dead_letter_topic() -> None:
    """Found by fuzzing: with the dead-letter headers added, such a record was larger than the
    dead-letter topic takes; the broker refused it at every redelivery (and the idempotent
    producer then refused everything else): the consumer never got past it."""
    publisher = DeadLetterPublisher("unused:9092", "notification")
    dlq_limit = int(topics.spec(publisher.topic).config()["max.message.bytes"])
    for topic in (topics.INTAKE_CASES, topics.DIRECTORY_AGENCIES):
        event = _largest_record(topic, HEADERS)
        key, value, headers = publisher.letter(event, PermanentError("too large"))
        assert record_size(key, value, tuple(headers)) < dlq_limit - 512
        assert key == b"k" and value == b"" and headers[:2] == HEADERS  # what still fits
        assert dict(headers)["dlq_omitted"].startswith(b"original value (")
        assert dict(headers)["dlq_original_offset"] == b"0"


def test_headers_too_large_for_the_dead_letter_topic_are_left_out_too() -> None:
    publisher = DeadLetterPublisher("unused:9092", "intake")
    limit = int(topics.spec(topics.REFERRAL_EVENTS).config()["max.message.bytes"])
    event = _largest_record(topics.REFERRAL_EVENTS, [("x-big", b"h" * (limit - 1000))])
    _, _, headers = publisher.letter(event, PermanentError("too large"))
    letter = dict(headers)
    assert letter["dlq_omitted"].startswith(b"original value and headers")
    assert "x-big" not in letter and letter["dlq_error"] == b"PermanentError: too large"


def test_a_record_without_key_and_value_gets_a_dead_letter_a_producer_can_send() -> None:
    publisher = DeadLetterPublisher("unused:9092", "intake")
    event = InboundEvent.from_record(f.record(topics.REFERRAL_EVENTS, None, HEADERS, key=None))
    key, value, headers = publisher.letter(event, PermanentError("takes no tombstones"))
    assert (key, value) == (None, b"") and headers[:2] == HEADERS
